//! `--ssl_config_file`: gRPC and REST over TLS, mutual TLS with `client_verify`, certificates
//! made in the test; the plain-text health port for Kubernetes' probes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::certs::TestPki;
use common::*;
use proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A TLS channel to `addr` trusting `ca`, presenting `identity` when given.
async fn tls_channel(addr: std::net::SocketAddr, ca: &str, identity: Option<&common::certs::Pem>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert, &id.key));
    }
    let endpoint = Endpoint::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).map_err(|e| e.to_string())?;
    endpoint.connect_timeout(Duration::from_secs(5)).connect().await.map_err(|e| format!("{e:?}"))
}

/// A Predict over `channel` of one image: its class, or the error.
async fn predict_class(channel: Channel) -> Result<i64, String> {
    let mut client = PredictionServiceClient::new(channel);
    let r = client.predict(predict_request("mnist", None, float_tensor(&[1, 784], &images(1)))).await.map_err(|s| format!("{s:?}"))?;
    Ok(r.into_inner().outputs["classes"].int64_val[0])
}

async fn wait_for_tls(addr: std::net::SocketAddr, pki: &TestPki) {
    for _ in 0..400 {
        if let Ok(channel) = tls_channel(addr, &pki.ca, Some(&pki.client)).await
            && HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the TLS server did not start serving");
}

/// An HTTPS request to the REST port: Err when the handshake fails.
async fn https(addr: std::net::SocketAddr, ca: &str, identity: Option<&common::certs::Pem>, path: &str) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(id.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    // With TLS 1.3 a refused client certificate shows on the first read, not in the handshake.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    if let Err(e) = stream.read_to_end(&mut response).await
        && response.is_empty()
    {
        return Err(e.to_string());
    }
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or(format!("no HTTP response: {text:?}"))?;
    Ok((head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_string()))
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_on_grpc_and_rest() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    let net = export_version(&base, 1, 7);
    let (want, _) = expected(&net, &images(1));
    let pki = TestPki::new("test CA");
    let rogue = TestPki::new("rogue CA");
    let ssl = dir.path().join("ssl.config");
    std::fs::write(&ssl, pki.ssl_config(true)).unwrap();
    let monitoring = dir.path().join("monitoring.config");
    std::fs::write(&monitoring, "prometheus_config { enable: true }").unwrap();
    let health_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let server = TestServer::spawn(&[
        "--model_name",
        "mnist",
        "--model_base_path",
        base.to_str().unwrap(),
        "--ssl_config_file",
        ssl.to_str().unwrap(),
        "--monitoring_config_file",
        monitoring.to_str().unwrap(),
        "--host",
        "127.0.0.1",
        "--grpc_health_port",
        &health_port,
    ])
    .await;
    wait_for_tls(server.addr, &pki).await;

    // gRPC: a client certificate signed by custom_ca is served; none, or one from another CA, is refused.
    let channel = tls_channel(server.addr, &pki.ca, Some(&pki.client)).await.unwrap();
    assert_eq!(predict_class(channel).await.unwrap(), want[0]);
    let anonymous = match tls_channel(server.addr, &pki.ca, None).await {
        Ok(channel) => predict_class(channel).await,
        Err(e) => Err(e),
    };
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let rogue_client = match tls_channel(server.addr, &pki.ca, Some(&rogue.client)).await {
        Ok(channel) => predict_class(channel).await,
        Err(e) => Err(e),
    };
    assert!(rogue_client.is_err(), "a client certificate of another CA: {rogue_client:?}");
    let plain = Channel::from_shared(server.url()).unwrap().connect().await.map_err(|e| e.to_string());
    let plain = match plain {
        Ok(channel) => predict_class(channel).await,
        Err(e) => Err(e),
    };
    assert!(plain.is_err(), "plain text on the TLS port: {plain:?}");

    // REST over the same TLS, metrics included.
    let (code, body) = https(server.rest, &pki.ca, Some(&pki.client), "/v1/models/mnist").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("AVAILABLE"), "{body}");
    let (code, metrics) = https(server.rest, &pki.ca, Some(&pki.client), "/monitoring/prometheus/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(sample(&metrics, ":tensorflow:serving:request_count{model_name=\"mnist\",status=\"OK\"}"), Some(2.0), "{metrics}");
    assert!(https(server.rest, &pki.ca, None, "/v1/models/mnist").await.is_err(), "REST without a client certificate");
    assert!(https(server.rest, &rogue.ca, Some(&pki.client), "/v1/models/mnist").await.is_err(), "a server the client does not trust");

    // Kubernetes' gRPC probes dial the plain-text health port.
    let health = Channel::from_shared(format!("http://127.0.0.1:{health_port}")).unwrap().connect().await.unwrap();
    let status = HealthClient::new(health).check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner().status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_without_client_verify_serves_any_client() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    export_version(&base, 1, 7);
    let pki = TestPki::new("test CA");
    let ssl = dir.path().join("ssl.config");
    std::fs::write(&ssl, pki.ssl_config(false)).unwrap();
    let server = TestServer::spawn(&[
        "--model_name",
        "mnist",
        "--model_base_path",
        base.to_str().unwrap(),
        "--ssl_config_file",
        ssl.to_str().unwrap(),
    ])
    .await;
    wait_for_tls(server.addr, &pki).await;
    let channel = tls_channel(server.addr, &pki.ca, None).await.unwrap();
    assert!(predict_class(channel).await.is_ok());
    let (code, _) = https(server.rest, &pki.ca, None, "/v1/models/mnist").await.unwrap();
    assert_eq!(code, 200);
    server.stop().await.unwrap();
}
