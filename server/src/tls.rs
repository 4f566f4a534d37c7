//! `--ssl_config_file`: TensorFlow Serving's `SSLConfig` (inline PEM) as TLS for gRPC (tonic)
//! and for REST (rustls through axum-server). With `client_verify: true` both require a client
//! certificate signed by `custom_ca` (mutual TLS). The PEM is checked when the file is read, so
//! a bad key or certificate is a start-up error naming the field.

use std::path::Path;
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use proto::tensorflow::serving::SslConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::text_proto::{self, ConfigFileError};

/// TLS for both servers.
#[derive(Clone)]
pub struct Tls {
    pub grpc: ServerTlsConfig,
    pub rest: RustlsConfig,
    pub client_verify: bool,
}

fn certificates(field: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{field}: not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{field}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

fn rest_config(config: &SslConfig) -> Result<rustls::ServerConfig, String> {
    let certs = certificates("server_cert", &config.server_cert)?;
    let key = PrivateKeyDer::from_pem_slice(config.server_key.as_bytes()).map_err(|e| format!("server_key: not a PEM private key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if config.client_verify {
        let mut roots = rustls::RootCertStore::empty();
        for ca in certificates("custom_ca", &config.custom_ca)? {
            roots.add(ca).map_err(|e| format!("custom_ca: {e}"))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("custom_ca: cannot verify clients with it: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut server = builder.with_single_cert(certs, key).map_err(|e| format!("server_key and server_cert: {e}"))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(server)
}

impl Tls {
    /// As TensorFlow Serving: `custom_ca` is used only with `client_verify`.
    pub fn from_ssl_config(config: &SslConfig) -> Result<Self, String> {
        if config.client_verify && config.custom_ca.trim().is_empty() {
            return Err("client_verify: true needs custom_ca (the PEM of the CA that signs client certificates)".into());
        }
        let rest = RustlsConfig::from_config(Arc::new(rest_config(config)?));
        let mut grpc = ServerTlsConfig::new().identity(Identity::from_pem(&config.server_cert, &config.server_key));
        if config.client_verify {
            grpc = grpc.client_ca_root(Certificate::from_pem(&config.custom_ca));
        }
        Ok(Self { grpc, rest, client_verify: config.client_verify })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigFileError> {
        let config: SslConfig = text_proto::read(path, "tensorflow.serving.SSLConfig")?;
        Self::from_ssl_config(&config).map_err(|e| ConfigFileError::invalid(path, e))
    }
}
