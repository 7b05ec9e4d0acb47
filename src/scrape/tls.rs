//! The HTTP client of a scrape target: reqwest over rustls with the `ring` provider,
//! configured from the job's `tls_config` as Prometheus's common TLSConfig is:
//! `ca_file` (otherwise the system's trusted roots), `cert_file` + `key_file`
//! (client certificate), `server_name` (the SNI sent and the name the server
//! certificate must carry) and `insecure_skip_verify` (no chain or name check;
//! handshake signatures are still verified, as in Go).
//!
//! Rotated files take effect without a restart, as in Prometheus: before each
//! scrape the files are `stat`ed ([`JobTls::current`]) and, when one changed, the
//! rustls config is rebuilt and the target's client with it (new connections,
//! idle ones dropped). A rebuild that fails (a half-written file) fails that
//! scrape with the reason naming the file; the next scrape tries again, the old
//! config is not kept. Prometheus hashes the files' contents on every request; a
//! stat notices the same rotations unless a file is rewritten in place with the
//! same size within the file system's timestamp granularity.
//!
//! reqwest takes the SNI from the URL host, so when `server_name` differs from an
//! https target's host the request goes to `https://<server_name>:<port>/...`
//! with a resolver that connects to the target's own address for that name, and
//! with the `Host` header of the target's address, which is what Prometheus sends.
//! Difference from Prometheus: in that case a redirect to another host is not
//! followed (the scrape fails saying so), since its TLS name and `Host` header
//! could not be those Prometheus would use.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::TlsConfig;

/// The only crypto provider arrowmon uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes `ring` the process-wide rustls provider, so any `reqwest::Client` built
/// without an explicit TLS config works (reqwest is built without a provider of its
/// own). Idempotent.
pub fn install_default_provider() {
    if CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Builds the rustls client config of a job's `tls_config`.
pub fn client_config(tls: &TlsConfig) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls_config: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(SkipVerify(provider.clone()))
    } else {
        let mut roots = RootCertStore::empty();
        match &tls.ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                    format!(
                        "tls_config: unable to load specified CA cert {}: {e}",
                        path.display()
                    )
                })?;
                for cert in certs {
                    let cert = cert.map_err(|e| {
                        format!(
                            "tls_config: unable to load specified CA cert {}: {e}",
                            path.display()
                        )
                    })?;
                    roots.add(cert).map_err(|e| {
                        format!(
                            "tls_config: unable to use specified CA cert {}: {e}",
                            path.display()
                        )
                    })?;
                }
                if roots.is_empty() {
                    return Err(format!(
                        "tls_config: unable to use specified CA cert {}: no certificate found",
                        path.display()
                    ));
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        match rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        {
            Ok(inner) => match &tls.server_name {
                Some(name) => Arc::new(NameOverride {
                    inner,
                    name: ServerName::try_from(name.clone())
                        .map_err(|e| format!("tls_config: server_name {name:?}: {e}"))?,
                }),
                None => inner,
            },
            // No trusted roots on this system: https targets fail with this reason,
            // plain http ones are unaffected.
            Err(e) => Arc::new(RejectAll(format!(
                "no trusted CA certificates (set tls_config.ca_file): {e}"
            ))),
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    format!(
                        "tls_config: unable to load client cert {}: {e}",
                        cert.display()
                    )
                })?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                format!(
                    "tls_config: unable to load client key {}: {e}",
                    key.display()
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls_config: client certificate: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// What `stat` says of a TLS file: a rotated file has a new modification time,
/// size or inode, so a change is noticed without reading the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    /// `None` when the file cannot be stat'ed (the build then names the problem).
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: inode(&meta),
        })
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}

/// A job's `tls_config` with the rustls config built from its files, rebuilt when
/// one of them changes. Shared by the job's targets, so a rotation is read once.
pub struct JobTls {
    tls: TlsConfig,
    state: Mutex<JobTlsState>,
}

#[derive(Default)]
struct JobTlsState {
    /// The config of the files as they were stat'ed before it was built; `None`
    /// after a failed build, so the next scrape builds again.
    current: Option<BuiltTls>,
    /// Successful builds so far: a target whose client was made from an older
    /// build makes a new one.
    builds: u64,
}

struct BuiltTls {
    stamps: Vec<Option<FileStamp>>,
    config: Arc<ClientConfig>,
    generation: u64,
}

impl JobTls {
    pub fn new(tls: TlsConfig) -> JobTls {
        JobTls {
            tls,
            state: Mutex::new(JobTlsState::default()),
        }
    }

    fn stamps(&self) -> Vec<Option<FileStamp>> {
        [&self.tls.ca_file, &self.tls.cert_file, &self.tls.key_file]
            .into_iter()
            .flatten()
            .map(|path| FileStamp::of(path))
            .collect()
    }

    /// The rustls config for the next scrape and its build number. The files are
    /// stat'ed first and read only when one changed (or the last build failed).
    pub fn current(&self) -> Result<(u64, Arc<ClientConfig>), String> {
        // Stamps taken before the files are read: a change during the build shows
        // up as a different stamp at the next scrape, which builds again.
        let stamps = self.stamps();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(built) = &state.current {
            if built.stamps == stamps {
                return Ok((built.generation, built.config.clone()));
            }
        }
        state.current = None;
        let config = Arc::new(client_config(&self.tls)?);
        state.builds += 1;
        let generation = state.builds;
        state.current = Some(BuiltTls {
            stamps,
            config: config.clone(),
            generation,
        });
        Ok((generation, config))
    }

    pub fn config(&self) -> &TlsConfig {
        &self.tls
    }
}

/// How a target is requested when `server_name` must be sent as SNI: reqwest
/// sends the URL host, so the URL names `server_name` and a resolver maps that
/// name to the target's own host.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SniRedirect {
    /// The target URL with its host replaced by `server_name`.
    request_url: reqwest::Url,
    /// `host[:port]` of the target URL, as hyper would have sent it.
    host_header: String,
    /// `server_name`, lower-cased as DNS names compare.
    server_name: String,
    /// The target URL's host, without IPv6 brackets: what `server_name` resolves to.
    target_host: String,
}

impl SniRedirect {
    /// `None` when the URL already carries the SNI to send: plain http, no
    /// `server_name`, the same name, or an IP address (no SNI is sent for one,
    /// in rustls as in Go; the verifier checks the name either way).
    fn for_target(url: &str, tls: &TlsConfig) -> Option<SniRedirect> {
        let server_name = tls.server_name.as_deref()?;
        let url = reqwest::Url::parse(url).ok()?;
        let host = url.host_str()?;
        if url.scheme() != "https"
            || server_name.parse::<IpAddr>().is_ok()
            || host.eq_ignore_ascii_case(server_name)
        {
            return None;
        }
        let host_header = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let target_host = host.trim_start_matches('[').trim_end_matches(']');
        let mut request_url = url.clone();
        request_url.set_host(Some(server_name)).ok()?;
        Some(SniRedirect {
            target_host: target_host.to_string(),
            request_url,
            host_header,
            server_name: server_name.to_ascii_lowercase(),
        })
    }
}

/// Resolves `server_name` to the target's address; any other name (a redirect's)
/// as usual.
struct TargetResolver {
    server_name: String,
    target_host: String,
}

impl reqwest::dns::Resolve for TargetResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = if name.as_str().eq_ignore_ascii_case(&self.server_name) {
            self.target_host.clone()
        } else {
            name.as_str().to_string()
        };
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port in.
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The most redirects followed, as in Go's HTTP client and reqwest's default.
const MAX_REDIRECTS: usize = 10;

/// The HTTP client of one target, made from its job's current TLS config and
/// made again when that is rebuilt.
pub struct TargetClient {
    job_tls: Arc<JobTls>,
    url: String,
    sni: Option<SniRedirect>,
    /// The client and the build of the job's TLS config it was made from.
    client: Option<(u64, reqwest::Client)>,
}

impl TargetClient {
    pub fn new(job_tls: Arc<JobTls>, url: &str) -> TargetClient {
        let sni = SniRedirect::for_target(url, job_tls.config());
        TargetClient {
            job_tls,
            url: url.to_string(),
            sni,
            client: None,
        }
    }

    /// A GET of the target, with a client that has the TLS files as they are now.
    pub fn get(&mut self) -> Result<reqwest::RequestBuilder, String> {
        self.request(reqwest::Method::GET)
    }

    /// A request to the target, with a client that has the TLS files as they are now.
    pub fn request(&mut self, method: reqwest::Method) -> Result<reqwest::RequestBuilder, String> {
        let (generation, config) = match self.job_tls.current() {
            Ok(c) => c,
            Err(e) => {
                // Connections made with the old files are not reused either.
                self.client = None;
                return Err(e);
            }
        };
        let client = match &self.client {
            Some((built_from, client)) if *built_from == generation => client,
            _ => {
                self.client = None;
                let client = self.build(&config)?;
                &self.client.insert((generation, client)).1
            }
        };
        Ok(match &self.sni {
            Some(sni) => client
                .request(method, sni.request_url.clone())
                .header(reqwest::header::HOST, &sni.host_header),
            None => client.request(method, &self.url),
        })
    }

    fn build(&self, config: &ClientConfig) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(config.clone())
            .user_agent(concat!("arrowmon/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(sni) = &self.sni {
            builder = builder
                .dns_resolver(TargetResolver {
                    server_name: sni.server_name.clone(),
                    target_host: sni.target_host.clone(),
                })
                .redirect(same_host_redirects(&sni.request_url));
        }
        builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    }
}

/// Redirects of a target reached through `server_name` are followed while they
/// stay on it: another host would get a TLS name and `Host` header of this one.
fn same_host_redirects(request_url: &reqwest::Url) -> reqwest::redirect::Policy {
    let origin = (
        request_url.host_str().map(str::to_ascii_lowercase),
        request_url.port_or_known_default(),
    );
    reqwest::redirect::Policy::custom(move |attempt| {
        let next = (
            attempt.url().host_str().map(str::to_ascii_lowercase),
            attempt.url().port_or_known_default(),
        );
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error(format!("stopped after {MAX_REDIRECTS} redirects"))
        } else if next != origin || attempt.url().scheme() != "https" {
            let to = attempt.url().to_string();
            attempt.error(format!(
                "redirect to {to} not followed: with tls_config.server_name set, redirects are followed only on the target's own host"
            ))
        } else {
            attempt.follow()
        }
    })
}

#[derive(Debug)]
struct NameOverride {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NameOverride {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify: true`.
#[derive(Debug)]
struct SkipVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct RejectAll(String);

impl ServerCertVerifier for RejectAll {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::General(self.0.clone()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(self.0.clone()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(self.0.clone()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Adds a client's authentication to a request; secret files are read now, so
/// rotated secrets take effect at the next request.
pub fn with_auth(
    req: reqwest::RequestBuilder,
    auth: &crate::config::Auth,
) -> Result<reqwest::RequestBuilder, String> {
    use crate::config::Auth;
    Ok(match auth {
        Auth::None => req,
        Auth::Basic { username, password } => {
            let pw = match password {
                Some(p) => Some(p.read()?),
                None => None,
            };
            req.basic_auth(username, pw)
        }
        Auth::Header {
            scheme,
            credentials,
        } => req.header("Authorization", format!("{scheme} {}", credentials.read()?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(server_name: Option<&str>) -> TlsConfig {
        TlsConfig {
            server_name: server_name.map(str::to_string),
            ..TlsConfig::default()
        }
    }

    #[test]
    fn sni_redirect_only_when_the_url_cannot_carry_server_name() {
        let sni = SniRedirect::for_target(
            "https://127.0.0.1:9100/metrics?x=1",
            &tls(Some("Exporter.Test")),
        )
        .expect("an IP target with a DNS server_name is redirected");
        assert_eq!(
            sni.request_url.as_str(),
            "https://exporter.test:9100/metrics?x=1"
        );
        assert_eq!(sni.host_header, "127.0.0.1:9100");
        assert_eq!(sni.target_host, "127.0.0.1");
        assert_eq!(sni.server_name, "exporter.test");

        let v6 = SniRedirect::for_target("https://[::1]:443/m", &tls(Some("e.test"))).unwrap();
        // The default port is not written, as hyper does not write it.
        assert_eq!(v6.host_header, "[::1]");
        assert_eq!(v6.target_host, "::1");
        assert_eq!(v6.request_url.as_str(), "https://e.test/m");

        for (url, name) in [
            ("http://127.0.0.1:9100/metrics", Some("e.test")),
            ("https://127.0.0.1:9100/metrics", None),
            ("https://E.test:9100/metrics", Some("e.test")),
            ("https://host:9100/metrics", Some("10.0.0.1")),
        ] {
            assert_eq!(
                SniRedirect::for_target(url, &tls(name)),
                None,
                "{url} {name:?}"
            );
        }
    }

    #[test]
    fn a_failed_build_is_not_kept_and_a_fixed_file_is_used() {
        install_default_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nhalf").unwrap();
        let job_tls = JobTls::new(TlsConfig {
            ca_file: Some(ca.clone()),
            ..TlsConfig::default()
        });
        for _ in 0..2 {
            let err = job_tls.current().unwrap_err();
            assert!(err.contains(&ca.display().to_string()), "{err}");
        }
        let issuer = rcgen::CertificateParams::new(vec!["ca.test".to_string()])
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        std::fs::write(&ca, issuer.pem()).unwrap();
        let (first, _) = job_tls.current().unwrap();
        // Unchanged files: the same build.
        assert_eq!(job_tls.current().unwrap().0, first);
        // A rewrite with another size is a new build.
        std::fs::write(&ca, format!("{}\n", issuer.pem())).unwrap();
        assert!(job_tls.current().unwrap().0 > first);
    }
}
