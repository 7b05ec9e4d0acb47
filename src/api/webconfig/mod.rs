//! Prometheus's web configuration file (`--web.config.file`, the exporter
//! toolkit's format): TLS for the standalone HTTP listener (`tls_server_config`),
//! HTTP/2 and security headers (`http_server_config`), basic auth with bcrypt
//! hashes (`basic_auth_users`) and a request rate limit (`rate_limit`), with the
//! toolkit's keys, defaults and strict parsing (an unknown key is an error).
//!
//! Reload: the toolkit reads the file and the certificates again on every new
//! connection and request. Here [`WebConfigWatch::current`] `stat`s the file and
//! the files it names on every connection and request, and loads them again only
//! when one changed. A new version that does not load (a half-written key, a bad
//! hash) is refused with a warning that says why, and the last good configuration
//! keeps serving; the toolkit instead fails those connections or requests until
//! the file is fixed.
//!
//! Differences from the toolkit, forced by rustls: TLS 1.0 and 1.1 are not offered
//! (`min_version: TLS10`/`TLS11` serve from TLS 1.2; a `max_version` below TLS 1.2
//! is an error); the CBC cipher suites and `CurveP521` are not available: left out
//! of a list with a note ([`WebConfig::notes`]), an error when nothing listed is
//! left. Whether TLS is on is decided at start: a reload that turns it on or off is
//! refused (restart).

mod auth;
mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderName, HeaderValue};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

pub(crate) use auth::guard;
pub use auth::Guard;

/// Why a web config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// A YAML or value error; serde's message carries the key and the line.
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

/// A loaded and checked web config.
pub struct WebConfig {
    /// `None`: plain HTTP (no `tls_server_config` that turns TLS on).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Response headers from `http_server_config.headers`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `basic_auth_users`: user name to bcrypt hash; empty means no auth.
    users: BTreeMap<String, String>,
    /// The costliest of the users' hashes: an unknown user is checked against it,
    /// so a wrong user name takes as long as a wrong password.
    decoy_hash: Option<String>,
    rate_limit: Option<RateLimit>,
    /// What was accepted but works otherwise than asked (a cipher left out).
    pub notes: Vec<String>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("headers", &self.headers)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl WebConfig {
    /// Reads and checks `path`, and the certificates and keys it names.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        load(path, &mut Vec::new())
    }

    /// Whether requests need basic auth.
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// A summary for `check-web-config` and the start-up log.
    pub fn describe(&self) -> String {
        let mut parts = vec![if self.tls.is_some() {
            "TLS on".to_string()
        } else {
            "TLS off".to_string()
        }];
        if self.users.is_empty() {
            parts.push("no basic auth".into());
        } else {
            parts.push(format!("basic auth for {} user(s)", self.users.len()));
        }
        if let Some(r) = &self.rate_limit {
            parts.push(format!(
                "rate limit {} request(s) a burst, one more every {:?}",
                r.burst, r.interval
            ));
        }
        parts.join(", ")
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct RateLimit {
    interval: Duration,
    burst: u32,
}

fn invalid(file: &Path, message: impl Into<String>) -> WebConfigError {
    WebConfigError::Invalid {
        file: file.to_path_buf(),
        message: message.into(),
    }
}

/// Loads `path`, pushing onto `files` every file it reads (the config first), so
/// that a watch knows what to `stat` even when loading fails half-way.
fn load(path: &Path, files: &mut Vec<PathBuf>) -> Result<WebConfig, WebConfigError> {
    files.push(path.to_path_buf());
    let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    let raw = parse(&text).map_err(|message| invalid(path, message))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    build(raw, &text, dir, files).map_err(|message| invalid(path, message))
}

/// Parses the YAML; an empty file (or one of comments only) is an empty config, as
/// in the toolkit.
fn parse(text: &str) -> Result<RawWebConfig, String> {
    let value: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    if value.is_null() {
        return Ok(RawWebConfig::default());
    }
    serde_norway::from_str(text).map_err(|e| unknown_key_line(text, with_line(text, e.to_string())))
}

/// The line of an unknown key, which serde_norway leaves out for the first key
/// of the file.
fn unknown_key_line(text: &str, message: String) -> String {
    if message.contains(" at line ") {
        return message;
    }
    let key = message
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key);
    match key.and_then(|k| line_of_key(text, k)) {
        Some(n) => format!("{message} at line {n}"),
        None => message,
    }
}

/// Separates a value error's message from the text to look for; see [`with_line`].
const FIND: char = '\u{1f}';

/// A value error (an unknown name, a bad hash) that [`with_line`] will place on
/// the first line, from where serde says, that holds `find`.
fn value_error<E: de::Error>(message: String, find: &str) -> E {
    E::custom(format!("{message}{FIND}{find}"))
}

/// serde_norway places the errors of values at the start of the enclosing
/// mapping; this moves them to the line of the offending text.
fn with_line(text: &str, message: String) -> String {
    let Some((head, tail)) = message.split_once(FIND) else {
        return message;
    };
    let (find, from) = match tail.rsplit_once(" at line ") {
        Some((find, at)) => (
            find,
            at.split(' ')
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(1),
        ),
        None => (tail, 1),
    };
    let line = text
        .lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(find))
        .map(|(i, _)| i + 1);
    match line {
        Some(n) => format!("{head} at line {n}"),
        None => head.to_string(),
    }
}

fn build(
    raw: RawWebConfig,
    text: &str,
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<WebConfig, String> {
    let http = raw.http_server_config.unwrap_or_default();
    let mut notes = Vec::new();
    let tls = match raw.tls_server_config {
        Some(t) if t.is_enabled() => Some(Arc::new(tls::server_config(
            &t,
            http.http2.unwrap_or(true),
            text,
            dir,
            files,
            &mut notes,
        )?)),
        _ => None,
    };
    let users = raw.basic_auth_users.map(|u| u.0).unwrap_or_default();
    let decoy_hash = users
        .values()
        .max_by_key(|h| bcrypt_cost(h).unwrap_or(0))
        .cloned();
    let rate_limit = match raw.rate_limit {
        Some(RawRateLimit {
            interval: Some(interval),
            burst,
        }) if !interval.0.is_zero() => {
            let burst = burst.unwrap_or(0);
            if burst == 0 {
                // Accepted, as by the toolkit, whose limiter then refuses all.
                notes.push(format!(
                    "rate_limit.burst{} is 0: every request gets 429 Too Many Requests",
                    at_key(text, "burst")
                ));
            }
            Some(RateLimit {
                interval: interval.0,
                burst,
            })
        }
        _ => None,
    };
    Ok(WebConfig {
        tls,
        headers: http.headers.map(|h| h.0).unwrap_or_default(),
        users,
        decoy_hash,
        rate_limit,
        notes,
    })
}

/// The 1-based line of the first `key:` in the file, for errors found after
/// parsing (each key of this format appears once).
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let needle = format!("{key}:");
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            l.starts_with(&needle) || l.starts_with(&format!("\"{key}\":"))
        })
        .map(|i| i + 1)
}

/// Where a key is, as " (line N)", or nothing when it is not found.
fn at_key(text: &str, key: &str) -> String {
    line_of_key(text, key)
        .map(|n| format!(" (line {n})"))
        .unwrap_or_default()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<Users>,
    rate_limit: Option<RawRateLimit>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<ClientAuthType>,
    client_ca_file: Option<String>,
    cipher_suites: Option<Vec<tls::CipherName>>,
    curve_preferences: Option<Vec<tls::CurveName>>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
    prefer_server_cipher_suites: Option<bool>,
    client_allowed_sans: Option<Vec<String>>,
}

/// An empty string is the same as an absent key, as in Go.
fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

impl RawTls {
    /// The toolkit's `IsEnabled`: any key about certificates turns TLS on.
    fn is_enabled(&self) -> bool {
        set(&self.cert).is_some()
            || set(&self.key).is_some()
            || set(&self.cert_file).is_some()
            || set(&self.key_file).is_some()
            || set(&self.client_ca).is_some()
            || set(&self.client_ca_file).is_some()
            || self.client_auth_type.is_some()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<Headers>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    interval: Option<GoDuration>,
    burst: Option<u32>,
}

/// `client_auth_type`, Go's `tls.ClientAuthType` by name.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ClientAuthType {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

const CLIENT_AUTH_TYPES: &str = "NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert";

impl<'de> Deserialize<'de> for ClientAuthType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "" | "NoClientCert" => ClientAuthType::NoClientCert,
            "RequestClientCert" => ClientAuthType::RequestClientCert,
            // "RequireClientCert" is the toolkit's older name.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuthType::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuthType::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuthType::RequireAndVerifyClientCert,
            other => {
                return Err(value_error(
                    format!("unknown client_auth_type {other:?} (one of {CLIENT_AUTH_TYPES})"),
                    other,
                ))
            }
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "TLS10" => TlsVersion::Tls10,
            "TLS11" => TlsVersion::Tls11,
            "TLS12" => TlsVersion::Tls12,
            "TLS13" => TlsVersion::Tls13,
            other => {
                return Err(value_error(
                    format!("unknown TLS version {other:?} (one of TLS10, TLS11, TLS12, TLS13)"),
                    other,
                ))
            }
        })
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls10 => "TLS10",
            TlsVersion::Tls11 => "TLS11",
            TlsVersion::Tls12 => "TLS12",
            TlsVersion::Tls13 => "TLS13",
        })
    }
}

/// `basic_auth_users`, each hash checked when the file is read, so a typo is an
/// error at start (with its line) rather than a user who can never log in.
struct Users(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct UsersVisitor;
        impl<'de> Visitor<'de> for UsersVisitor {
            type Value = Users;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of user names to bcrypt hashes")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Users, E> {
                Ok(Users(BTreeMap::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Users, A::Error> {
                let mut users = BTreeMap::new();
                while let Some((user, hash)) = map.next_entry::<String, String>()? {
                    if let Err(e) = bcrypt_cost(&hash) {
                        return Err(value_error(
                            format!("the password of user {user:?} is not a bcrypt hash: {e}"),
                            &format!("{user}:"),
                        ));
                    }
                    if users.insert(user.clone(), hash).is_some() {
                        return Err(value_error(
                            format!("user {user:?} is given twice"),
                            &format!("{user}:"),
                        ));
                    }
                }
                Ok(Users(users))
            }
        }
        d.deserialize_any(UsersVisitor)
    }
}

/// The cost of a bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`, cost 4 to 31), or
/// why it is not one.
fn bcrypt_cost(hash: &str) -> Result<u32, String> {
    let parts: bcrypt::HashParts = hash.parse().map_err(|e: bcrypt::BcryptError| match e {
        bcrypt::BcryptError::InvalidHash(why) => why.to_string(),
        other => other.to_string(),
    })?;
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err(format!("cost {cost} is outside 4 to 31"));
    }
    Ok(cost)
}

/// `http_server_config.headers`: only the toolkit's five headers, with its
/// allowed values where it has a list.
struct Headers(Vec<(HeaderName, HeaderValue)>);

const ALLOWED_HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        let mut headers = Vec::new();
        for (name, value) in map {
            let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == name) else {
                return Err(value_error(
                    format!(
                        "HTTP header {name:?} can not be configured (only {})",
                        ALLOWED_HEADERS.map(|(n, _)| n).join(", ")
                    ),
                    &name,
                ));
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(value_error(
                    format!("invalid value {value:?} for header {name} (one of {allowed:?})"),
                    &name,
                ));
            }
            // "Unset if blank", as the toolkit's documentation says.
            if value.is_empty() {
                continue;
            }
            let header_value = HeaderValue::from_str(&value).map_err(|_| {
                value_error(
                    format!("header {name}: {value:?} is not a valid header value"),
                    &name,
                )
            })?;
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| value_error(format!("{name:?} is not a header name"), &name))?;
            headers.push((header_name, header_value));
        }
        Ok(Headers(headers))
    }
}

/// `rate_limit.interval`: Go's YAML reads a `time.Duration` from a duration
/// string; taken here in Prometheus's duration syntax (`100ms`, `1s`, `1m30s`).
struct GoDuration(Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        crate::model::duration::parse_duration(&s)
            .map(GoDuration)
            .map_err(|e| value_error(format!("rate_limit.interval {s:?}: {e}"), &s))
    }
}

/// What identifies one version of a file: a replaced or rewritten file gets a new
/// modification time, size or inode.
#[derive(Clone, Debug, PartialEq)]
struct FileStamp {
    path: PathBuf,
    version: Option<(SystemTime, u64, u64)>,
}

fn stamp(path: &Path) -> FileStamp {
    let version = std::fs::metadata(path).ok().map(|m| {
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let ino = 0;
        (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), ino)
    });
    FileStamp {
        path: path.to_path_buf(),
        version,
    }
}

fn stamps(files: &[PathBuf]) -> Vec<FileStamp> {
    files.iter().map(|f| stamp(f)).collect()
}

fn changed(seen: &[FileStamp]) -> bool {
    seen.iter().any(|s| stamp(&s.path) != *s)
}

/// The web config in force, loaded again when its file or a file it names changes.
pub struct WebConfigWatch {
    path: PathBuf,
    state: Mutex<WatchState>,
}

struct WatchState {
    current: Arc<WebConfig>,
    /// The files `current` was loaded from, as they were then.
    loaded_from: Vec<FileStamp>,
    /// The files of the last load that failed, as they were then: not tried again
    /// (nor logged again) until one of them changes.
    refused: Option<Vec<FileStamp>>,
}

impl WebConfigWatch {
    /// Loads the file; an error here stops the server from starting.
    pub fn load(path: &Path) -> Result<WebConfigWatch, WebConfigError> {
        let mut files = Vec::new();
        let before = stamp(path);
        let current = load(path, &mut files)?;
        let mut loaded_from = stamps(&files);
        // The config file as it was before it was read, so a write during the read
        // is seen as a change.
        loaded_from[0] = before;
        Ok(WebConfigWatch {
            path: path.to_path_buf(),
            state: Mutex::new(WatchState {
                current: Arc::new(current),
                loaded_from,
                refused: None,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config to use for a new connection or request: the one in force, or a
    /// new version of the files if they changed and load.
    pub fn current(&self) -> Arc<WebConfig> {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !changed(&state.loaded_from) {
            return state.current.clone();
        }
        if let Some(refused) = &state.refused {
            if !changed(refused) {
                return state.current.clone();
            }
        }
        let mut files = Vec::new();
        let before = stamp(&self.path);
        let result = load(&self.path, &mut files).and_then(|c| {
            if c.tls.is_some() != state.current.tls.is_some() {
                Err(invalid(
                    &self.path,
                    "TLS can not be turned on or off while serving; restart to change it",
                ))
            } else {
                Ok(c)
            }
        });
        let mut seen = stamps(&files);
        seen[0] = before;
        match result {
            Ok(c) => {
                tracing::info!(file = %self.path.display(), config = %c.describe(), "web config reloaded");
                for note in &c.notes {
                    tracing::warn!(file = %self.path.display(), "{note}");
                }
                state.current = Arc::new(c);
                state.loaded_from = seen;
                state.refused = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "web config not reloaded; the last good one stays in force");
                state.refused = Some(seen);
            }
        }
        state.current.clone()
    }
}

#[cfg(test)]
mod tests;
