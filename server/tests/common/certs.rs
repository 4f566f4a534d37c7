//! Certificates made in the test: a CA, a server certificate for localhost / 127.0.0.1 and a
//! client certificate it signs, and an SSLConfig text holding them inline.

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};

pub struct Pem {
    pub cert: String,
    pub key: String,
}

pub struct TestPki {
    pub ca: String,
    pub server: Pem,
    pub client: Pem,
}

fn leaf(issuer: &Issuer<'_, KeyPair>, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Pem {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("client"));
    params.extended_key_usages.push(usage);
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    Pem { cert: params.signed_by(&key, issuer).unwrap().pem(), key: key.serialize_pem() }
}

impl TestPki {
    pub fn new(ca_name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, ca_name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap().pem();
        let issuer = Issuer::new(params, key);
        Self {
            ca,
            server: leaf(&issuer, &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth),
            client: leaf(&issuer, &["client"], ExtendedKeyUsagePurpose::ClientAuth),
        }
    }

    /// TensorFlow Serving's SSLConfig text, PEM inline with `\n` escapes.
    pub fn ssl_config(&self, client_verify: bool) -> String {
        let quoted = |pem: &str| format!("\"{}\"", pem.replace('\n', "\\n"));
        format!(
            "server_key: {}\nserver_cert: {}\ncustom_ca: {}\nclient_verify: {client_verify}\n",
            quoted(&self.server.key),
            quoted(&self.server.cert),
            quoted(&self.ca)
        )
    }
}
