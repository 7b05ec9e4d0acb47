//! `gpx_arrowmon serve --web.config.file`: TLS, client certificates and basic auth,
//! checked with real clients (curl, promtool, openssl s_client) against
//! certificates made by openssl and hashes made by htpasswd at test time; and the
//! file's checks compared with promtool's `check web-config`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::*;

fn run(program: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} (scripts/install-deps.sh installs it): {e}"))
}

fn run_ok(program: &str, args: &[&str], dir: &Path) -> String {
    let out = run(program, args, dir);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA, and `name`'s key and certificate signed by it, in `dir`: `name.pem`,
/// `name.key`. `ext` is the certificate's extensions (openssl `-extfile` syntax).
fn issue(dir: &Path, ca: &str, name: &str, cn: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    run_ok(
        "openssl",
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
        dir,
    );
    run_ok(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ],
        dir,
    );
}

fn make_ca(dir: &Path, name: &str) {
    run_ok(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        dir,
    );
}

const SERVER_EXT: &str = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
const CLIENT_EXT: &str = "subjectAltName=DNS:client.test\nextendedKeyUsage=clientAuth\n";

/// ca.pem, server.pem/.key (CN server-1), server2.pem/.key (CN server-2),
/// client.pem/.key (signed by ca) and stranger.pem/.key (signed by another CA).
fn pki(dir: &Path) {
    make_ca(dir, "ca");
    make_ca(dir, "otherca");
    issue(dir, "ca", "server", "server-1", SERVER_EXT);
    issue(dir, "ca", "server2", "server-2", SERVER_EXT);
    issue(dir, "ca", "client", "client", CLIENT_EXT);
    issue(dir, "otherca", "stranger", "stranger", CLIENT_EXT);
}

/// htpasswd's bcrypt hash of `password`.
fn bcrypt_hash(dir: &Path, password: &str) -> String {
    let line = run_ok("htpasswd", &["-nbBC", "5", "u", password], dir);
    line.trim().trim_start_matches("u:").to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Replaces `to` with `from` in one step, as certificate tooling does.
fn replace(dir: &Path, from: &str, to: &str) {
    let tmp = dir.join(format!("{to}.new"));
    std::fs::copy(dir.join(from), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(to)).unwrap();
}

struct Server {
    child: ChildGuard,
    base: String,
    log: PathBuf,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts `serve --web.config.file web` with nothing to scrape.
fn serve_with(dir: &Path, web: &Path, scheme: &str) -> Server {
    let scrape = write(dir, "scrape.yml", "scrape_configs: []\n");
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.join(format!("serve-{}.log", listen.replace([':', '.'], "-")));
    let mut cmd = serve_command(&scrape, &dir.join("data"), &listen);
    cmd.arg("--web.config.file")
        .arg(web)
        .stderr(std::fs::File::create(&log).unwrap());
    Server {
        child: ChildGuard::spawn("gpx_arrowmon serve --web.config.file", &mut cmd),
        base: format!("{scheme}://{listen}"),
        log,
    }
}

/// curl's HTTP status for `path` (0 when no response), its headers and body.
fn curl(dir: &Path, base: &str, path: &str, args: &[&str]) -> (u16, String, String) {
    let url = format!("{base}{path}");
    let mut all: Vec<&str> = vec!["-sS", "-D", "-", "--max-time", "10"];
    all.extend_from_slice(args);
    all.push(&url);
    let out = run("curl", &all, dir);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

async fn wait_ready(dir: &Path, server: &Server, args: &[&str]) {
    eventually(Duration::from_secs(20), "serve to answer", || {
        let ok = curl(dir, &server.base, "/api/v1/status/buildinfo", args).0 == 200;
        async move { ok.then_some(()) }
    })
    .await;
}

/// The subject of the certificate the server presents to a new connection.
fn served_subject(dir: &Path, server: &Server) -> String {
    let addr = server.base.trim_start_matches("https://");
    let out = run(
        "openssl",
        &[
            "s_client",
            "-connect",
            addr,
            "-CAfile",
            "ca.pem",
            "-verify_return_error",
        ],
        dir,
    );
    let text = String::from_utf8_lossy(&out.stdout).replace(' ', "");
    text.lines()
        .find_map(|l| l.strip_prefix("subject="))
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_basic_auth_admit_only_the_right_password() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let hash = bcrypt_hash(d, "open sesame");
    let web = write(
        d,
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  alice: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        ),
    );
    let server = serve_with(d, &web, "https");
    let ca = ["--cacert", "ca.pem"];
    let alice = ["--cacert", "ca.pem", "-u", "alice:open sesame"];
    wait_ready(d, &server, &alice).await;

    let (status, head, body) = curl(d, &server.base, "/api/v1/query?query=1", &alice);
    assert_eq!(status, 200, "{head}{body}");
    // HTTP/2 when the client asks for it in the handshake (http2 defaults to true).
    let h2 = ["--http2", "--cacert", "ca.pem", "-u", "alice:open sesame"];
    let (status, head, _) = curl(d, &server.base, "/-/healthy", &h2);
    assert!(status == 200 && head.starts_with("HTTP/2 "), "{head}");
    assert!(
        head.to_lowercase().contains("x-frame-options: deny"),
        "{head}"
    );
    for (who, args) in [
        (
            "wrong password",
            vec!["--cacert", "ca.pem", "-u", "alice:open sesam"],
        ),
        (
            "unknown user",
            vec!["--cacert", "ca.pem", "-u", "mallory:open sesame"],
        ),
        ("no credentials", ca.to_vec()),
    ] {
        let (status, head, body) = curl(d, &server.base, "/api/v1/query?query=1", &args);
        assert_eq!(status, 401, "{who}: {head}{body}");
        assert!(
            head.contains("WWW-Authenticate: Basic") || head.contains("www-authenticate: Basic"),
            "{who}: {head}"
        );
        assert_eq!(body, "Unauthorized\n", "{who}");
    }
    // As in the toolkit, no path is left open.
    for path in ["/-/healthy", "/metrics"] {
        assert_eq!(curl(d, &server.base, path, &ca).0, 401, "{path}");
        assert_eq!(curl(d, &server.base, path, &alice).0, 200, "{path}");
    }
    // A client that does not trust the CA, and one that speaks plain HTTP, get nothing.
    assert_eq!(
        curl(d, &server.base, "/-/healthy", &["-u", "alice:open sesame"]).0,
        0
    );
    let plain = server.base.replace("https://", "http://");
    assert_ne!(
        curl(d, &plain, "/-/healthy", &["-u", "alice:open sesame"]).0,
        200
    );

    // promtool, as Prometheus tools reach a secured server: with an http config
    // where promtool has `--http.config.file` (2.43 on), else (Debian's 2.42) with
    // the credentials in the URL and the CA through SSL_CERT_FILE.
    let with_http_config = run("promtool", &["query", "instant", "--help"], d);
    let with_http_config = String::from_utf8_lossy(&with_http_config.stdout)
        .contains("http.config.file")
        || String::from_utf8_lossy(&with_http_config.stderr).contains("http.config.file");
    let promtool = |password: &str| {
        let mut cmd = Command::new("promtool");
        cmd.args(["query", "instant"]).current_dir(d);
        if with_http_config {
            let http = write(
                d,
                "http.yml",
                &format!("tls_config:\n  ca_file: ca.pem\nbasic_auth:\n  username: alice\n  password: {password}\n"),
            );
            cmd.arg(format!("--http.config.file={}", http.display()))
                .arg(&server.base);
        } else {
            cmd.env("SSL_CERT_FILE", d.join("ca.pem"))
                .arg(server.base.replace(
                    "https://",
                    &format!("https://alice:{}@", password.replace(' ', "%20")),
                ));
        }
        cmd.arg("vector(7)").output().expect("promtool")
    };
    let out = promtool("open sesame");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("=> 7"),
        "promtool: {stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let out = promtool("open sesam");
    assert!(
        !out.status.success(),
        "promtool got in with a wrong password"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_are_required_and_checked_against_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let web = write(
        d,
        "web.yml",
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    );
    let server = serve_with(d, &web, "https");
    let client = [
        "--cacert",
        "ca.pem",
        "--cert",
        "client.pem",
        "--key",
        "client.key",
    ];
    wait_ready(d, &server, &client).await;
    assert_eq!(
        curl(d, &server.base, "/api/v1/query?query=1", &client).0,
        200
    );
    assert_eq!(
        curl(d, &server.base, "/-/healthy", &["--cacert", "ca.pem"]).0,
        0
    );
    let stranger = [
        "--cacert",
        "ca.pem",
        "--cert",
        "stranger.pem",
        "--key",
        "stranger.key",
    ];
    assert_eq!(curl(d, &server.base, "/-/healthy", &stranger).0, 0);

    // Only the allowed SANs, once the file says so.
    write(
        d,
        "web.yml",
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  client_allowed_sans: [other.test]\n",
    );
    eventually(Duration::from_secs(10), "the SAN list to apply", || {
        let refused = curl(d, &server.base, "/-/healthy", &client).0 == 0;
        async move { refused.then_some(()) }
    })
    .await;
    // The operator can see why.
    let log = server.log();
    assert!(
        log.contains("TLS handshake failed") && log.contains("other.test"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn new_certificates_and_users_apply_and_a_broken_file_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let alice = bcrypt_hash(d, "first");
    let bob = bcrypt_hash(d, "second");
    let tls = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";
    let web = write(
        d,
        "web.yml",
        &format!("{tls}basic_auth_users:\n  alice: {alice}\n"),
    );
    let server = serve_with(d, &web, "https");
    let as_alice = ["--cacert", "ca.pem", "-u", "alice:first"];
    let as_bob = ["--cacert", "ca.pem", "-u", "bob:second"];
    wait_ready(d, &server, &as_alice).await;
    assert_eq!(served_subject(d, &server), "CN=server-1");

    replace(d, "server2.key", "server.key");
    replace(d, "server2.pem", "server.pem");
    eventually(Duration::from_secs(10), "the new certificate", || {
        let s = served_subject(d, &server);
        async move { (s == "CN=server-2").then_some(()) }
    })
    .await;
    assert_eq!(curl(d, &server.base, "/-/healthy", &as_alice).0, 200);

    write(
        d,
        "web.yml",
        &format!("{tls}basic_auth_users:\n  bob: {bob}\n"),
    );
    eventually(Duration::from_secs(10), "the new user list", || {
        let now = (
            curl(d, &server.base, "/-/healthy", &as_alice).0,
            curl(d, &server.base, "/-/healthy", &as_bob).0,
        );
        async move { (now == (401, 200)).then_some(()) }
    })
    .await;

    // A broken file and a broken key: refused, with the reason logged, and the
    // last good config keeps serving.
    write(
        d,
        "web.yml",
        &format!("{tls}basic_auth_users:\n  bob: {bob}\n  eve: plaintext\n"),
    );
    assert_eq!(curl(d, &server.base, "/-/healthy", &as_bob).0, 200);
    write(d, "server.key", "not a key\n");
    assert_eq!(curl(d, &server.base, "/-/healthy", &as_bob).0, 200);
    assert_eq!(served_subject(d, &server), "CN=server-2");
    let log = server.log();
    assert!(
        log.contains("not reloaded") && log.contains("eve"),
        "the refusal is not logged:\n{log}"
    );

    // SIGTERM still stops the server cleanly, with a connection open.
    let mut idle =
        std::net::TcpStream::connect(server.base.trim_start_matches("https://")).unwrap();
    let mut child = server.child;
    run_ok("kill", &["-TERM", &child.id().to_string()], d);
    // Well within the 10 s a client gets for its TLS handshake: a handshake in
    // progress does not hold the shutdown up.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "{status:?}:\n{}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The open connection was closed, not left hanging.
    let mut buf = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut idle, &mut buf).unwrap_or(0), 0);
}

#[test]
fn a_bad_web_config_stops_serve_and_check_web_config_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let bad = write(
        d,
        "bad.yml",
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerify\n",
    );
    let scrape = write(d, "scrape.yml", "scrape_configs: []\n");
    let out = serve_command(
        &scrape,
        &d.join("data"),
        &format!("127.0.0.1:{}", free_port()),
    )
    .arg("--web.config.file")
    .arg(&bad)
    .stderr(Stdio::piped())
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.yml")
            && stderr.contains("RequireAndVerify")
            && stderr.contains("line 4"),
        "{stderr}"
    );

    // check-web-config and promtool's check agree on what is valid.
    let good = write(
        d,
        "good.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\nbasic_auth_users:\n  alice: {}\n",
            bcrypt_hash(d, "pw")
        ),
    );
    let cases = [
        (good, true),
        (bad, false),
        (write(d, "typo.yml", "basic_auth_user:\n  alice: x\n"), false),
        (write(d, "hash.yml", "basic_auth_users:\n  alice: plaintext\n"), false),
        (write(d, "nocert.yml", "tls_server_config:\n  cert_file: missing.pem\n  key_file: server.key\n"), false),
        (write(d, "caonly.yml", "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_ca_file: ca.pem\n"), false),
        (write(d, "header.yml", "http_server_config:\n  headers:\n    Server: x\n"), false),
    ];
    for (file, valid) in cases {
        let ours = Command::new(binary())
            .arg("check-web-config")
            .arg(&file)
            .output()
            .unwrap();
        let theirs = run(
            "promtool",
            &["check", "web-config", &file.display().to_string()],
            d,
        );
        assert_eq!(
            ours.status.success(),
            valid,
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&ours.stderr)
        );
        assert_eq!(
            theirs.status.success(),
            valid,
            "promtool on {}",
            file.display()
        );
        if !valid {
            assert!(
                String::from_utf8_lossy(&ours.stderr).contains("line "),
                "{}: {}",
                file.display(),
                String::from_utf8_lossy(&ours.stderr)
            );
        }
    }
}

/// Basic auth without TLS, as the toolkit allows (for a TLS-terminating proxy in
/// front): the password check is the same over plain HTTP.
#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_works_over_plain_http_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hash = bcrypt_hash(d, "pw");
    let web = write(
        d,
        "web.yml",
        &format!("basic_auth_users:\n  alice: {hash}\n"),
    );
    let server = serve_with(d, &web, "http");
    wait_ready(d, &server, &["-u", "alice:pw"]).await;
    assert_eq!(
        curl(d, &server.base, "/-/ready", &["-u", "alice:pw"]).0,
        200
    );
    assert_eq!(
        curl(d, &server.base, "/-/ready", &["-u", "alice:wrong"]).0,
        401
    );
    assert_eq!(curl(d, &server.base, "/-/ready", &[]).0, 401);
}
