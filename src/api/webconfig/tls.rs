//! `tls_server_config` as a rustls server config (ring provider, as for scraping).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, NamedGroup, RootCertStore, ServerConfig,
    SignatureScheme, SupportedCipherSuite,
};
use serde::de::Deserializer;
use serde::Deserialize;

use super::{at_key, set, value_error, ClientAuthType, RawTls, TlsVersion};

/// Builds the server config, reading the certificate, key and client CA files
/// (relative paths are relative to the web config's folder) and pushing each onto
/// `files`.
pub(super) fn server_config(
    t: &RawTls,
    http2: bool,
    text: &str,
    dir: &Path,
    files: &mut Vec<PathBuf>,
    notes: &mut Vec<String>,
) -> Result<ServerConfig, String> {
    // Both halves are checked before either is read, as in the toolkit.
    if set(&t.cert_file).is_none() && set(&t.cert).is_none() {
        return Err(format!(
            "tls_server_config{}: missing one of cert or cert_file",
            at_key(text, "tls_server_config")
        ));
    }
    if set(&t.key_file).is_none() && set(&t.key).is_none() {
        return Err(format!(
            "tls_server_config{}: missing one of key or key_file",
            at_key(text, "tls_server_config")
        ));
    }
    let provider = provider(t, text, notes)?;
    let versions = versions(t, text)?;
    let chain = certificates(t, text, dir, files)?;
    let key = private_key(t, text, dir, files)?;
    let client_auth = t.client_auth_type.unwrap_or(ClientAuthType::NoClientCert);
    let roots = client_roots(t, text, dir, files)?;
    if roots.is_some() && client_auth == ClientAuthType::NoClientCert {
        return Err(format!(
            "tls_server_config: a client CA is set{} but client_auth_type is NoClientCert (set a client_auth_type that checks client certificates)",
            at_key(text, if set(&t.client_ca_file).is_some() { "client_ca_file" } else { "client_ca" })
        ));
    }
    let verifier = client_verifier(client_auth, roots, &provider, text)?;
    let verifier: Arc<dyn ClientCertVerifier> = match &t.client_allowed_sans {
        Some(allowed) => Arc::new(AllowedSans {
            inner: verifier,
            allowed: allowed.clone(),
        }),
        None => verifier,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "tls_server_config: the key does not go with the certificate{}: {e}",
                at_key(
                    text,
                    if set(&t.key_file).is_some() {
                        "key_file"
                    } else {
                        "key"
                    }
                )
            )
        })?;
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// The ring provider, narrowed to `cipher_suites` (TLS 1.2 only: Go does not let
/// TLS 1.3 suites be chosen either) and ordered by `curve_preferences`. Names Go
/// knows but rustls does not offer (CBC suites, P-521) are left out with a note,
/// as long as one listed name remains.
fn provider(
    t: &RawTls,
    text: &str,
    notes: &mut Vec<String>,
) -> Result<Arc<CryptoProvider>, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = &t.cipher_suites {
        let listed_tls12: Vec<&CipherName> = names.iter().filter(|n| !n.tls13).collect();
        let mut tls12: Vec<SupportedCipherSuite> = Vec::new();
        let mut missing = Vec::new();
        for name in &listed_tls12 {
            match provider
                .cipher_suites
                .iter()
                .find(|s| format!("{:?}", s.suite()) == name.name)
            {
                Some(s) => tls12.push(*s),
                None => missing.push(name.name.as_str()),
            }
        }
        if !missing.is_empty() {
            let available = provider
                .cipher_suites
                .iter()
                .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
                .map(|s| format!("{:?}", s.suite()))
                .collect::<Vec<_>>()
                .join(", ");
            let what = format!(
                "tls_server_config.cipher_suites{}: {} not available here (rustls offers only the AEAD suites: {available})",
                at_key(text, "cipher_suites"),
                missing.join(", ")
            );
            if tls12.is_empty() {
                return Err(what);
            }
            notes.push(format!("{what}; left out"));
        }
        if !tls12.is_empty() {
            let tls13 = provider
                .cipher_suites
                .iter()
                .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
                .copied();
            provider.cipher_suites = tls13.chain(tls12).collect();
        }
    }
    if let Some(curves) = &t.curve_preferences {
        let mut groups = Vec::new();
        let mut missing = Vec::new();
        for curve in curves {
            match provider.kx_groups.iter().find(|g| g.name() == curve.group) {
                Some(group) => groups.push(*group),
                None => missing.push(curve.name.as_str()),
            }
        }
        if !missing.is_empty() {
            let what = format!(
                "tls_server_config.curve_preferences{}: {} not available here (X25519, CurveP256 and CurveP384 are)",
                at_key(text, "curve_preferences"),
                missing.join(", ")
            );
            if groups.is_empty() {
                return Err(what);
            }
            notes.push(format!("{what}; left out"));
        }
        if !groups.is_empty() {
            provider.kx_groups = groups;
        }
    }
    Ok(Arc::new(provider))
}

fn versions(
    t: &RawTls,
    text: &str,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let min = t.min_version.unwrap_or(TlsVersion::Tls12);
    let max = t.max_version.unwrap_or(TlsVersion::Tls13);
    if max < TlsVersion::Tls12 {
        return Err(format!(
            "tls_server_config.max_version{}: {max} is not offered here (TLS 1.2 and 1.3 are)",
            at_key(text, "max_version")
        ));
    }
    if min > max {
        return Err(format!(
            "tls_server_config.min_version{}: {min} is above max_version {max}",
            at_key(text, "min_version")
        ));
    }
    let mut v = Vec::new();
    if max == TlsVersion::Tls13 {
        v.push(&rustls::version::TLS13);
    }
    if min <= TlsVersion::Tls12 {
        v.push(&rustls::version::TLS12);
    }
    Ok(v)
}

/// A PEM value from a file key (read relative to `dir`) or an inline key; the file
/// wins when both are set, as in the toolkit.
fn pem_source(
    t_file: &Option<String>,
    t_inline: &Option<String>,
    file_key: &str,
    inline_key: &str,
    text: &str,
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<Option<(Vec<u8>, String)>, String> {
    if let Some(f) = set(t_file) {
        let path = dir.join(f);
        files.push(path.clone());
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "tls_server_config.{file_key}{}: cannot read {}: {e}",
                at_key(text, file_key),
                path.display()
            )
        })?;
        return Ok(Some((
            bytes,
            format!(
                "tls_server_config.{file_key}{} ({})",
                at_key(text, file_key),
                path.display()
            ),
        )));
    }
    Ok(set(t_inline).map(|s| {
        (
            s.as_bytes().to_vec(),
            format!("tls_server_config.{inline_key}{}", at_key(text, inline_key)),
        )
    }))
}

fn certificates(
    t: &RawTls,
    text: &str,
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let Some((pem, what)) =
        pem_source(&t.cert_file, &t.cert, "cert_file", "cert", text, dir, files)?
    else {
        return Err("tls_server_config: missing one of cert or cert_file".into());
    };
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: not a PEM certificate: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{what}: no PEM certificate in it"));
    }
    Ok(chain)
}

fn private_key(
    t: &RawTls,
    text: &str,
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<PrivateKeyDer<'static>, String> {
    let Some((pem, what)) = pem_source(&t.key_file, &t.key, "key_file", "key", text, dir, files)?
    else {
        return Err("tls_server_config: missing one of key or key_file".into());
    };
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| format!("{what}: no PEM private key: {e}"))
}

fn client_roots(
    t: &RawTls,
    text: &str,
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<Option<Arc<RootCertStore>>, String> {
    let Some((pem, what)) = pem_source(
        &t.client_ca_file,
        &t.client_ca,
        "client_ca_file",
        "client_ca",
        text,
        dir,
        files,
    )?
    else {
        return Ok(None);
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{what}: not a PEM certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{what}: not a usable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{what}: no PEM certificate in it"));
    }
    Ok(Some(Arc::new(roots)))
}

fn client_verifier(
    auth: ClientAuthType,
    roots: Option<Arc<RootCertStore>>,
    provider: &Arc<CryptoProvider>,
    text: &str,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let verified = |roots: Option<Arc<RootCertStore>>, optional: bool| {
        // Without a client CA, Go checks client certificates against the
        // system's trusted roots; so does this.
        let roots = match roots {
            Some(r) => r,
            None => {
                let mut system = RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = system.add(cert);
                }
                if system.is_empty() {
                    return Err(format!(
                        "tls_server_config.client_auth_type{}: {auth:?} checks client certificates, but there is no client_ca_file or client_ca and the system has no trusted CAs",
                        at_key(text, "client_auth_type")
                    ));
                }
                Arc::new(system)
            }
        };
        let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder
            .build()
            .map_err(|e| format!("tls_server_config: client CA: {e}"))
    };
    Ok(match auth {
        ClientAuthType::NoClientCert => WebPkiClientVerifier::no_client_auth(),
        ClientAuthType::RequestClientCert => Arc::new(AnyClientCert {
            provider: provider.clone(),
            mandatory: false,
        }),
        ClientAuthType::RequireAnyClientCert => Arc::new(AnyClientCert {
            provider: provider.clone(),
            mandatory: true,
        }),
        ClientAuthType::VerifyClientCertIfGiven => verified(roots, true)?,
        ClientAuthType::RequireAndVerifyClientCert => verified(roots, false)?,
    })
}

/// A Go cipher suite name from `tls.CipherSuites()`, as rustls spells it.
pub(super) struct CipherName {
    name: String,
    /// A TLS 1.3 suite: accepted and, as in Go, without effect.
    tls13: bool,
}

/// Go's secure suites (`tls.CipherSuites()`); the toolkit refuses any other name.
const GO_CIPHER_SUITES: [&str; 13] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

impl<'de> Deserialize<'de> for CipherName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !GO_CIPHER_SUITES.contains(&s.as_str()) {
            return Err(value_error(format!("unknown cipher {s:?}"), &s));
        }
        Ok(CipherName {
            tls13: GO_CIPHER_SUITES[..3].contains(&s.as_str()),
            name: s,
        })
    }
}

/// A Go curve name (`CurveP256`, `CurveP384`, `CurveP521`, `X25519`).
pub(super) struct CurveName {
    name: String,
    group: NamedGroup,
}

impl<'de> Deserialize<'de> for CurveName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let group = match s.as_str() {
            "CurveP256" => NamedGroup::secp256r1,
            "CurveP384" => NamedGroup::secp384r1,
            "CurveP521" => NamedGroup::secp521r1,
            "X25519" => NamedGroup::X25519,
            _ => {
                return Err(value_error(
                    format!("unknown curve {s:?} (one of CurveP256, CurveP384, CurveP521, X25519)"),
                    &s,
                ))
            }
        };
        Ok(CurveName { name: s, group })
    }
}

/// `RequestClientCert` and `RequireAnyClientCert`: a client certificate is asked
/// for but not checked against any CA (the client still proves it holds the key).
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<CryptoProvider>,
    mandatory: bool,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `client_allowed_sans`: after the client-auth check, the client certificate must
/// carry one of these SANs (DNS name, email, IP or URI, compared as text).
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = subject_alt_names(end_entity.as_ref()).ok_or_else(|| {
            rustls::Error::General("cannot read the client certificate's SANs".into())
        })?;
        if sans.iter().any(|s| self.allowed.contains(s)) {
            Ok(verified)
        } else {
            Err(rustls::Error::General(format!(
                "client certificate has none of the allowed SANs {:?} (it has {sans:?})",
                self.allowed
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One DER element: (tag, contents, rest). Tags here are all one byte.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subject alternative names of a DER certificate as Go prints them (DNS
/// names, emails, IPs, URIs), or `None` if the certificate cannot be read.
pub(super) fn subject_alt_names(cert: &[u8]) -> Option<Vec<String>> {
    const SEQUENCE: u8 = 0x30;
    const EXTENSIONS: u8 = 0xa3;
    // 2.5.29.17
    const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];
    let (tag, certificate, _) = der_element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = der_element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut sans = Vec::new();
    while !tbs.is_empty() {
        let (tag, contents, rest) = der_element(tbs)?;
        tbs = rest;
        if tag != EXTENSIONS {
            continue;
        }
        let (_, mut extensions, _) = der_element(contents)?;
        while !extensions.is_empty() {
            let (_, extension, rest) = der_element(extensions)?;
            extensions = rest;
            let (_, oid, mut fields) = der_element(extension)?;
            if oid != SAN_OID {
                continue;
            }
            // An optional `critical` BOOLEAN, then the OCTET STRING.
            let mut value = None;
            while !fields.is_empty() {
                let (tag, contents, rest) = der_element(fields)?;
                fields = rest;
                if tag == 0x04 {
                    value = Some(contents);
                }
            }
            let (_, mut names, _) = der_element(value?)?;
            while !names.is_empty() {
                let (tag, name, rest) = der_element(names)?;
                names = rest;
                match tag {
                    // rfc822Name, dNSName, uniformResourceIdentifier
                    0x81 | 0x82 | 0x86 => sans.push(String::from_utf8_lossy(name).into_owned()),
                    // iPAddress
                    0x87 => match name.len() {
                        4 => {
                            let o: [u8; 4] = name.try_into().ok()?;
                            sans.push(std::net::Ipv4Addr::from(o).to_string());
                        }
                        16 => {
                            let o: [u8; 16] = name.try_into().ok()?;
                            sans.push(std::net::Ipv6Addr::from(o).to_string());
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
    }
    Some(sans)
}
