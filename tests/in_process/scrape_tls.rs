//! `scheme: https` with `tls_config` against a local TLS exporter whose CA, server
//! and client certificates are generated here (rcgen). The server requires a
//! client certificate signed by the same CA, and its certificate names only
//! `arrowmon.test`, so reaching it as 127.0.0.1 needs `server_name`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;

/// A CA made here; it signs server and client certificates.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn generate(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A certificate for `name` and its key, both PEM.
    fn issue(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// One CA; a server certificate for `arrowmon.test` and a client certificate,
    /// both signed by it.
    fn generate() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki { dir };
        let ca = TestCa::generate("arrowmon test CA");
        pki.write("ca.pem", &ca.issuer.pem());
        let (cert, key) = ca.issue("arrowmon.test");
        pki.write("server.pem", &cert);
        pki.write("server.key", &key);
        let (cert, key) = ca.issue("scraper");
        pki.write("client.pem", &cert);
        pki.write("client.key", &key);
        pki
    }

    /// Replaces a file as rotation tools do: a new file renamed over the old one.
    fn write(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn load_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// A server config presenting `cert`/`key` and requiring a client certificate
/// signed by `client_ca` (all PEM).
fn server_config(cert: &str, key: &str, client_ca: &str) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(client_ca) {
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
            load_certs(cert),
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    Arc::new(config)
}

/// What the exporter saw of one request.
#[derive(Clone, Debug, PartialEq)]
struct SeenRequest {
    sni: Option<String>,
    host: Option<String>,
}

/// A TLS exporter requiring client certificates. Its config can be swapped (a
/// new server certificate, a new client CA) and it records each request's SNI
/// and Host header.
struct TlsExporter {
    addr: String,
    config: Arc<Mutex<Arc<rustls::ServerConfig>>>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    /// When set, `GET /metrics` is answered with a 302 to this location.
    redirect: Arc<Mutex<Option<String>>>,
}

impl TlsExporter {
    /// Serving the files of `pki` as they are now.
    async fn start(pki: &Pki) -> TlsExporter {
        let read = |name: &str| std::fs::read_to_string(pki.dir.path().join(name)).unwrap();
        let config = server_config(&read("server.pem"), &read("server.key"), &read("ca.pem"));
        TlsExporter::start_with(config).await
    }

    async fn start_with(config: Arc<rustls::ServerConfig>) -> TlsExporter {
        let config = Arc::new(Mutex::new(config));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let redirect: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (current, record, redirects) = (config.clone(), seen.clone(), redirect.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(current.lock().unwrap().clone());
                let record = record.clone();
                let redirect = redirects.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_string);
                    let Some(head) = read_request_head(&mut tls).await else {
                        return;
                    };
                    let host = head.lines().find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("host")
                            .then(|| value.trim().to_string())
                    });
                    record.lock().unwrap().push(SeenRequest { sni, host });
                    if let (Some(location), true) =
                        (redirect, head.starts_with("GET /metrics HTTP/"))
                    {
                        let resp = format!(
                            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        let _ = tls.write_all(resp.as_bytes()).await;
                        let _ = tls.shutdown().await;
                        return;
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
        TlsExporter {
            addr,
            config,
            seen,
            redirect,
        }
    }

    fn swap(&self, config: Arc<rustls::ServerConfig>) {
        *self.config.lock().unwrap() = config;
    }

    fn redirect_to(&self, location: &str) {
        *self.redirect.lock().unwrap() = Some(location.to_string());
    }

    fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

/// A TLS exporter serving `pki`'s files; returns its address.
async fn tls_exporter(pki: &Pki) -> String {
    TlsExporter::start(pki).await.addr
}

/// Waits for a scrape that started after `since_ms` and returns its status.
async fn scrape_after(h: &Harness, since_ms: i64) -> arrowmon::scrape::TargetStatus {
    h.wait_until(Duration::from_secs(10), "a scrape after the change", |t| {
        t[0].last_scrape_ms > since_ms
    })
    .await
    .remove(0)
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

/// ca_file, cert_file and key_file with server_name, as the tests below use them.
fn full_tls(pki: &Pki) -> String {
    format!(
        "      ca_file: {}\n      cert_file: {}\n      key_file: {}\n      server_name: arrowmon.test\n",
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_ca_file_is_used_by_the_next_scrape() {
    let pki = Pki::generate();
    let exporter = TlsExporter::start(&pki).await;
    let h = Harness::start(&job(&exporter.addr, &full_tls(&pki)));
    let t = h.wait_scraped(Duration::from_secs(10)).await;
    assert_eq!(t.last_error, "", "{t:?}");

    // The target moves to a certificate of a new CA (client certificates are
    // still checked against the old one): the scraper does not trust it yet.
    let old_ca = std::fs::read_to_string(pki.path("ca.pem")).unwrap();
    let new_ca = TestCa::generate("arrowmon rotated CA");
    let (cert, key) = new_ca.issue("arrowmon.test");
    exporter.swap(server_config(&cert, &key, &old_ca));
    let t = scrape_after(&h, arrowmon::scrape::now_ms()).await;
    assert_eq!(t.health, arrowmon::scrape::Health::Down);
    assert!(t.last_error.contains("UnknownIssuer"), "{}", t.last_error);

    // A half-written CA file fails the scrape, naming the file.
    let new_ca_pem = new_ca.issuer.pem();
    pki.write("ca.pem", &new_ca_pem[..new_ca_pem.len() / 2]);
    let t = scrape_after(&h, arrowmon::scrape::now_ms()).await;
    assert_eq!(t.health, arrowmon::scrape::Health::Down);
    assert!(
        t.last_error.contains(&pki.path("ca.pem")) && t.last_error.contains(&exporter.addr),
        "{}",
        t.last_error
    );
    assert_eq!(h.last_value("up"), Some(0.0));

    // The whole new CA: the next scrape trusts the target again, no restart.
    pki.write("ca.pem", &new_ca_pem);
    let t = scrape_after(&h, arrowmon::scrape::now_ms()).await;
    assert_eq!(t.last_error, "", "{t:?}");
    assert_eq!(h.last_value("up"), Some(1.0));
    assert_eq!(h.last_value("secure_metric"), Some(42.0));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_client_certificate_is_sent_by_the_next_scrape() {
    let pki = Pki::generate();
    let exporter = TlsExporter::start(&pki).await;
    let h = Harness::start(&job(&exporter.addr, &full_tls(&pki)));
    let t = h.wait_scraped(Duration::from_secs(10)).await;
    assert_eq!(t.last_error, "", "{t:?}");

    // The target now requires client certificates of another CA.
    let client_ca = TestCa::generate("arrowmon client CA");
    let read = |name: &str| std::fs::read_to_string(pki.path(name)).unwrap();
    exporter.swap(server_config(
        &read("server.pem"),
        &read("server.key"),
        &client_ca.issuer.pem(),
    ));
    let t = scrape_after(&h, arrowmon::scrape::now_ms()).await;
    assert_eq!(t.health, arrowmon::scrape::Health::Down, "{t:?}");

    // The new certificate and key, written to the configured paths.
    let (cert, key) = client_ca.issue("scraper");
    pki.write("client.pem", &cert);
    pki.write("client.key", &key);
    let t = scrape_after(&h, arrowmon::scrape::now_ms()).await;
    assert_eq!(t.last_error, "", "{t:?}");
    assert_eq!(h.last_value("up"), Some(1.0));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_name_is_the_sni_and_host_stays_the_target() {
    let pki = Pki::generate();
    let exporter = TlsExporter::start(&pki).await;
    let port = exporter.addr.rsplit_once(':').unwrap().1.to_string();
    // An IP target and a host-name target, both reached as arrowmon.test.
    for addr in [exporter.addr.clone(), format!("localhost:{port}")] {
        let before = exporter.seen().len();
        let h = Harness::start(&job(&addr, &full_tls(&pki)));
        let t = h.wait_scraped(Duration::from_secs(10)).await;
        assert_eq!(t.last_error, "", "{t:?}");
        h.stop().await;
        assert_eq!(
            exporter.seen()[before],
            SeenRequest {
                sni: Some("arrowmon.test".to_string()),
                host: Some(addr.clone()),
            }
        );
    }
    // Without server_name an IP target gets no SNI (none is sent for an address).
    let before = exporter.seen().len();
    let tls = format!(
        "      insecure_skip_verify: true\n      cert_file: {}\n      key_file: {}\n",
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let h = Harness::start(&job(&exporter.addr, &tls));
    let t = h.wait_scraped(Duration::from_secs(10)).await;
    assert_eq!(t.last_error, "", "{t:?}");
    h.stop().await;
    assert_eq!(
        exporter.seen()[before],
        SeenRequest {
            sni: None,
            host: Some(exporter.addr.clone()),
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_server_name_redirects_are_followed_on_the_target_only() {
    let pki = Pki::generate();
    let exporter = TlsExporter::start(&pki).await;
    exporter.redirect_to("/metrics/moved");
    let h = Harness::start(&job(&exporter.addr, &full_tls(&pki)));
    let t = h.wait_scraped(Duration::from_secs(10)).await;
    assert_eq!(t.last_error, "", "{t:?}");
    assert_eq!(h.last_value("secure_metric"), Some(42.0));
    let seen = exporter.seen();
    assert!(seen.len() >= 2, "{seen:?}");
    for s in &seen[..2] {
        assert_eq!(s.sni.as_deref(), Some("arrowmon.test"));
        assert_eq!(s.host.as_deref(), Some(exporter.addr.as_str()));
    }
    h.stop().await;

    let elsewhere = format!("https://{}/metrics/moved", exporter.addr);
    exporter.redirect_to(&elsewhere);
    let h = Harness::start(&job(&exporter.addr, &full_tls(&pki)));
    let t = h.wait_scraped(Duration::from_secs(10)).await;
    assert_eq!(t.health, arrowmon::scrape::Health::Down);
    assert!(
        t.last_error
            .contains(&format!("redirect to {elsewhere} not followed")),
        "{}",
        t.last_error
    );
    h.stop().await;
}
