use std::path::Path;
use std::sync::Arc;

use super::*;

/// The hash `htpasswd -nbBC 4 alice 's3cret pass'` printed.
pub(super) const ALICE_COST4: &str = "$2y$04$YmaQXrDkM9/ADICtGePsk.8JlKbBZxPdk5VP37AyqtbTOHsMQqCYS";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn load_text(text: &str) -> Result<WebConfig, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "web.yml", text);
    WebConfig::load(&p).map_err(|e| e.to_string())
}

fn load_err(text: &str) -> String {
    match load_text(text) {
        Ok(c) => panic!("accepted {text:?} as {c:?}"),
        Err(e) => e,
    }
}

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    other_key_pem: String,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        other_key_pem: rcgen::KeyPair::generate().unwrap().serialize_pem(),
    }
}

#[test]
fn an_empty_file_is_plain_http_without_auth() {
    for text in ["", "# nothing here\n", "{}\n"] {
        let c = load_text(text).unwrap();
        assert!(c.tls.is_none() && !c.requires_auth(), "{text:?}");
    }
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let e = load_err("tls_server_config:\n  cert_file: a.pem\n  cert_fiel: b.pem\n");
    assert!(e.contains("cert_fiel") && e.contains("line 3"), "{e}");
    let e = load_err("http_server_config:\n  http2: true\nbasic_auth:\n  alice: x\n");
    assert!(e.contains("basic_auth") && e.contains("line 3"), "{e}");
    let e = load_err("http_server_config:\n  http2: true\n  header:\n    X-Frame-Options: deny\n");
    assert!(e.contains("header") && e.contains("line 3"), "{e}");
    let e = load_err("basic_auth_user:\n  alice: x\n");
    assert!(e.contains("basic_auth_user") && e.contains("line 1"), "{e}");
}

#[test]
fn a_bad_hash_names_the_user_and_line() {
    let e = load_err(&format!(
        "basic_auth_users:\n  alice: {ALICE_COST4}\n  bob: plaintext\n"
    ));
    assert!(
        e.contains("\"bob\"") && e.contains("bcrypt") && e.contains("line 3"),
        "{e}"
    );
    // Cost outside bcrypt's range.
    let e = load_err(
        "basic_auth_users:\n  bob: $2y$03$YmaQXrDkM9/ADICtGePsk.8JlKbBZxPdk5VP37AyqtbTOHsMQqCYS\n",
    );
    assert!(e.contains("\"bob\"") && e.contains("cost"), "{e}");
    let e = load_err(
        "basic_auth_users:\n  bob: $1$YmaQXrDkM9/ADICtGePsk.8JlKbBZxPdk5VP37AyqtbTOHsMQqCYS\n",
    );
    assert!(e.contains("\"bob\""), "{e}");
}

#[test]
fn an_unknown_client_auth_type_is_refused_with_the_choices() {
    let e = load_err(
        "tls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n  client_auth_type: RequireAndVerify\n",
    );
    assert!(
        e.contains("\"RequireAndVerify\"")
            && e.contains("RequireAndVerifyClientCert")
            && e.contains("line 4"),
        "{e}"
    );
}

#[test]
fn unknown_names_in_tls_lists_are_refused() {
    for (text, want) in [
        ("  min_version: TLS14\n", "TLS14"),
        (
            "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "TLS_RSA_WITH_RC4_128_SHA",
        ),
        ("  curve_preferences: [P256]\n", "P256"),
    ] {
        let e = load_err(&format!(
            "tls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n{text}"
        ));
        assert!(e.contains(want) && e.contains("line 4"), "{e}");
    }
}

#[test]
fn only_the_toolkit_headers_can_be_set() {
    let e = load_err("http_server_config:\n  headers:\n    Server: arrowmon\n");
    assert!(e.contains("\"Server\"") && e.contains("line 3"), "{e}");
    let e = load_err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
    assert!(e.contains("allow") && e.contains("deny"), "{e}");
    let c = load_text(
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Content-Security-Policy: \"\"\n",
    )
    .unwrap();
    assert_eq!(c.headers.len(), 1);
    assert_eq!(c.headers[0].0, "x-frame-options");
}

#[test]
fn missing_certificate_files_are_named_with_key_and_line() {
    let e = load_err("tls_server_config:\n  cert_file: nowhere.pem\n  key_file: nowhere.key\n");
    assert!(
        e.contains("cert_file") && e.contains("nowhere.pem") && e.contains("line 2"),
        "{e}"
    );
    let e = load_err("tls_server_config:\n  cert_file: a.pem\n");
    assert!(e.contains("missing one of key or key_file"), "{e}");
}

#[test]
fn a_config_file_that_does_not_exist_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = WebConfig::load(&dir.path().join("absent.yml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.yml") && e.contains("cannot read"), "{e}");
}

fn tls_dir(pki: &Pki, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "server.pem", &pki.cert_pem);
    write(dir.path(), "server.key", &pki.key_pem);
    write(dir.path(), "ca.pem", &pki.ca_pem);
    // Relative paths are relative to the config's folder.
    let cfg = write(
        dir.path(),
        "web.yml",
        &format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n{extra}"),
    );
    (dir, cfg)
}

#[test]
fn tls_settings_load_or_are_refused_with_the_reason() {
    let pki = pki();
    for extra in [
        "",
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
        "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n",
        "  client_auth_type: RequestClientCert\n",
        // Checked against the system's roots, as in Go.
        "  client_auth_type: VerifyClientCertIfGiven\n",
        "  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [a.example]\n",
        "  min_version: TLS10\n  max_version: TLS12\n",
        "  min_version: TLS13\n",
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n  prefer_server_cipher_suites: false\n",
        "  curve_preferences: [X25519, CurveP256]\n",
    ] {
        let (_dir, cfg) = tls_dir(&pki, extra);
        let c = WebConfig::load(&cfg).unwrap_or_else(|e| panic!("{extra:?}: {e}"));
        assert!(c.tls.is_some(), "{extra:?}");
    }
    for (extra, want) in [
        ("  client_ca_file: ca.pem\n", "NoClientCert"),
        ("  max_version: TLS11\n", "TLS11"),
        (
            "  min_version: TLS13\n  max_version: TLS12\n",
            "above max_version",
        ),
        (
            "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n",
            "not available",
        ),
        ("  curve_preferences: [CurveP521]\n", "CurveP521"),
        (
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: server.key\n",
            "client_ca_file",
        ),
    ] {
        let (_dir, cfg) = tls_dir(&pki, extra);
        let e = WebConfig::load(&cfg).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("line"), "{extra:?}: {e}");
    }
    // Names Go has and rustls has not are left out, with a note, while one
    // listed name is left.
    let (_dir, cfg) = tls_dir(
        &pki,
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [CurveP521, X25519]\n",
    );
    let c = WebConfig::load(&cfg).unwrap();
    assert_eq!(c.notes.len(), 2, "{:?}", c.notes);
    assert!(
        c.notes[0].contains("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA")
            && c.notes[1].contains("CurveP521"),
        "{:?}",
        c.notes
    );

    let (dir, cfg) = tls_dir(&pki, "");
    write(dir.path(), "server.key", &pki.other_key_pem);
    let e = WebConfig::load(&cfg).unwrap_err().to_string();
    assert!(e.contains("does not go with the certificate"), "{e}");
}

#[test]
fn inline_certificates_work_like_files() {
    let pki = pki();
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let c = load_text(&format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n{}",
        indent(&pki.cert_pem),
        indent(&pki.key_pem)
    ))
    .unwrap();
    assert!(c.tls.is_some());
}

#[test]
fn a_rate_limit_without_a_burst_refuses_everything_with_a_note() {
    let c = load_text("rate_limit:\n  interval: 1s\n").unwrap();
    assert!(c.notes[0].contains("burst"), "{:?}", c.notes);
    let c = load_text("rate_limit:\n  interval: 1s\n  burst: 3\n").unwrap();
    assert_eq!(
        c.rate_limit,
        Some(RateLimit {
            interval: Duration::from_secs(1),
            burst: 3
        })
    );
    assert!(load_text("rate_limit:\n  interval: 0\n")
        .unwrap()
        .rate_limit
        .is_none());
}

#[test]
fn a_broken_new_version_keeps_the_last_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "web.yml",
        &format!("basic_auth_users:\n  alice: {ALICE_COST4}\n"),
    );
    let watch = WebConfigWatch::load(&path).unwrap();
    let first = watch.current();
    assert!(
        Arc::ptr_eq(&first, &watch.current()),
        "unchanged files reload"
    );

    write(
        dir.path(),
        "web.yml",
        "basic_auth_users:\n  alice: not-a-hash\n",
    );
    let after_bad = watch.current();
    assert!(
        Arc::ptr_eq(&first, &after_bad),
        "a broken file replaced the config"
    );

    write(dir.path(), "web.yml", "basic_auth_users: {}\n");
    let fixed = watch.current();
    assert!(!Arc::ptr_eq(&first, &fixed), "a fixed file was not loaded");
    assert!(!fixed.requires_auth());
}

#[test]
fn a_reload_may_not_turn_tls_on() {
    let pki = pki();
    let (dir, _) = tls_dir(&pki, "");
    let path = write(
        dir.path(),
        "plain.yml",
        "http_server_config:\n  http2: false\n",
    );
    let watch = WebConfigWatch::load(&path).unwrap();
    let first = watch.current();
    write(
        dir.path(),
        "plain.yml",
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n",
    );
    assert!(Arc::ptr_eq(&first, &watch.current()));
}

#[test]
fn subject_alt_names_are_read_as_go_prints_them() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["client.example".to_string()]).unwrap();
    params.subject_alt_names.extend([
        rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()),
        rcgen::SanType::IpAddress("::1".parse().unwrap()),
        rcgen::SanType::Rfc822Name("ops@example.org".try_into().unwrap()),
        rcgen::SanType::URI("spiffe://example.org/a".try_into().unwrap()),
    ]);
    let cert = params.self_signed(&key).unwrap();
    let sans = tls::subject_alt_names(cert.der()).unwrap();
    assert_eq!(
        sans,
        [
            "client.example",
            "127.0.0.1",
            "::1",
            "ops@example.org",
            "spiffe://example.org/a"
        ]
    );
    assert_eq!(tls::subject_alt_names(&cert.der()[..40]), None);
}
