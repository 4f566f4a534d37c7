//! `--tls-ca`, `--tls-cert`, `--tls-key`: TLS to the server, mutual TLS with a client
//! certificate (as a server with TensorFlow Serving's `client_verify: true` requires).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM of the CA that signed the server's certificate: connect over TLS.
    #[arg(long = "tls-ca", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients (mutual TLS); needs --tls-key.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long = "tls-key", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

fn read(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

impl TlsArgs {
    /// None: plain text.
    pub fn config(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        if self.ca.is_none() && self.cert.is_none() {
            return Ok(None);
        }
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(Certificate::from_pem(read(ca, "CA certificate (--tls-ca)")?));
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            config =
                config.identity(Identity::from_pem(read(cert, "client certificate (--tls-cert)")?, read(key, "client key (--tls-key)")?));
        }
        Ok(Some(config))
    }
}
