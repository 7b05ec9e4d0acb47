//! `scheme: https` with `tls_config` against a local TLS exporter whose CA, server
//! and client certificates are generated here (rcgen). The server requires a
//! client certificate signed by the same CA, and its certificate names only
//! `arrowmon.test`, so reaching it as 127.0.0.1 needs `server_name`.

mod scrape_common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use scrape_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn generate() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "arrowmon test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["arrowmon.test".to_string()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(vec!["scraper".to_string()])
            .unwrap()
            .signed_by(&client_key, &ca)
            .unwrap();
        let w = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        w("ca.pem", ca.pem());
        w("server.pem", server.pem());
        w("server.key", server_key.serialize_pem());
        w("client.pem", client.pem());
        w("client.key", client_key.serialize_pem());
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// A TLS exporter requiring client certificates; returns its address.
async fn tls_exporter(pki: &Pki) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let load_certs = |p: &Path| {
        CertificateDer::pem_file_iter(p)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(&pki.dir.path().join("ca.pem")) {
        roots.add(c).unwrap();
    }
    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(
            load_certs(&pki.dir.path().join("server.pem")),
            PrivateKeyDer::from_pem_file(pki.dir.path().join("server.key")).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = "# TYPE secure_metric gauge\nsecure_metric 42\n";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn job(addr: &str, tls: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: secure\n    scheme: https\n    tls_config:\n{tls}    static_configs:\n      - targets: ['{addr}']\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_ca_client_cert_and_server_name() {
    let pki = Pki::generate();
    let addr = tls_exporter(&pki).await;
    let ok = format!(
        "      ca_file: {}\n      cert_file: {}\n      key_file: {}\n      server_name: arrowmon.test\n",
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let h = Harness::start(&job(&addr, &ok));
    let t = h.wait_scraped(Duration::from_secs(10)).await;
    assert_eq!(t.last_error, "", "{t:?}");
    assert!(t.url.starts_with("https://"), "{}", t.url);
    assert_eq!(h.last_value("secure_metric"), Some(42.0));
    assert_eq!(h.last_value("up"), Some(1.0));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_insecure_skip_verify_still_sends_the_client_cert() {
    let pki = Pki::generate();
    let addr = tls_exporter(&pki).await;
    let tls = format!(
        "      insecure_skip_verify: true\n      cert_file: {}\n      key_file: {}\n",
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let h = Harness::start(&job(&addr, &tls));
    let t = h.wait_scraped(Duration::from_secs(10)).await;
    assert_eq!(t.last_error, "", "{t:?}");
    assert_eq!(h.last_value("secure_metric"), Some(42.0));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_failures_are_one_failed_scrape_each_with_the_reason() {
    let pki = Pki::generate();
    let addr = tls_exporter(&pki).await;
    let cases = [
        // Unknown CA: the system roots do not hold the test CA.
        (
            format!(
                "      cert_file: {}\n      key_file: {}\n      server_name: arrowmon.test\n",
                pki.path("client.pem"),
                pki.path("client.key")
            ),
            "UnknownIssuer",
        ),
        // The certificate names arrowmon.test, not 127.0.0.1.
        (
            format!(
                "      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
                pki.path("ca.pem"),
                pki.path("client.pem"),
                pki.path("client.key")
            ),
            "certificate not valid for name \"127.0.0.1\"",
        ),
        // No client certificate: the server refuses the handshake.
        (
            format!(
                "      ca_file: {}\n      server_name: arrowmon.test\n",
                pki.path("ca.pem")
            ),
            "",
        ),
        // An unreadable CA file fails every scrape with the file named.
        (
            "      ca_file: /nonexistent/ca.pem\n".to_string(),
            "/nonexistent/ca.pem",
        ),
    ];
    for (tls, want) in cases {
        let h = Harness::start(&job(&addr, &tls));
        let t = h.wait_scraped(Duration::from_secs(10)).await;
        assert_eq!(t.health, arrowmon::scrape::Health::Down, "{tls}");
        assert!(
            t.last_error.contains(want) && t.last_error.contains(&addr),
            "{tls}: {}",
            t.last_error
        );
        assert_eq!(h.last_value("up"), Some(0.0));
        h.stop().await;
    }
}

#[test]
fn tls_config_validation() {
    let err = arrowmon::config::ScrapeConfig::parse(
        &job("h:1", "      cert_file: c.pem\n"),
        &arrowmon::config::SecretSource::File,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("client cert file \"c.pem\" specified without client key file"),
        "{err}"
    );
    let err = arrowmon::config::ScrapeConfig::parse(
        &job("h:1", "      ca: inline\n"),
        &arrowmon::config::SecretSource::File,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `ca`"), "{err}");
}
