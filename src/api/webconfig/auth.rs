//! What the web config asks of each request, in the toolkit's order: the rate
//! limit (429), the configured headers, then basic auth (401 with
//! `WWW-Authenticate: Basic`). Every path is guarded, `/-/healthy` and `/metrics`
//! included, as in the toolkit.
//!
//! bcrypt is slow on purpose, so, as in the toolkit, a check's outcome is cached
//! per (user, hash, password) (at most 100 entries, a tenth dropped when full),
//! only one check runs at a time, and an unknown user is checked against a real
//! hash so that it costs as much as a wrong password.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::{RateLimit, WebConfig, WebConfigWatch};

const CACHE_SIZE: usize = 100;

/// The per-request side of a web config: shared by all connections.
pub struct Guard {
    watch: Arc<WebConfigWatch>,
    verified: Mutex<HashMap<CacheKey, bool>>,
    /// One bcrypt at a time: it is CPU-bound and a burst of them would starve the
    /// queries. Waiting happens here, not on a blocking-pool thread.
    bcrypt: Arc<tokio::sync::Semaphore>,
    bucket: Mutex<Option<TokenBucket>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    user: Vec<u8>,
    hash: String,
    password: Vec<u8>,
}

impl Guard {
    pub fn new(watch: Arc<WebConfigWatch>) -> Guard {
        Guard {
            watch,
            verified: Mutex::new(HashMap::new()),
            bcrypt: Arc::new(tokio::sync::Semaphore::new(1)),
            bucket: Mutex::new(None),
        }
    }

    pub fn watch(&self) -> &Arc<WebConfigWatch> {
        &self.watch
    }

    /// Whether `headers` carry the basic-auth credentials of a configured user.
    pub async fn authorized(&self, config: &WebConfig, headers: &HeaderMap) -> bool {
        let Some((user, password)) = basic_credentials(headers) else {
            return false;
        };
        let known = std::str::from_utf8(&user)
            .ok()
            .and_then(|u| config.users.get(u));
        let Some(hash) = known.or(config.decoy_hash.as_ref()).cloned() else {
            return false;
        };
        let key = CacheKey {
            user,
            hash: hash.clone(),
            password,
        };
        if let Some(ok) = lock(&self.verified).get(&key) {
            return *ok && known.is_some();
        }
        let Ok(one_at_a_time) = self.bcrypt.clone().acquire_owned().await else {
            return false;
        };
        let password = key.password.clone();
        let matches = tokio::task::spawn_blocking(move || {
            let _one_at_a_time = one_at_a_time;
            bcrypt::verify(&password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = matches && known.is_some();
        let mut cache = lock(&self.verified);
        if cache.len() >= CACHE_SIZE {
            // HashMap's order is random per map, so this drops arbitrary entries.
            let drop: Vec<CacheKey> = cache.keys().take(CACHE_SIZE / 10).cloned().collect();
            for k in drop {
                cache.remove(&k);
            }
        }
        cache.insert(key, ok);
        ok
    }

    /// Whether the rate limit lets one more request through now.
    fn allow(&self, limit: RateLimit) -> bool {
        let mut bucket = lock(&self.bucket);
        let now = Instant::now();
        let b = match bucket.as_mut() {
            Some(b) if b.limit == limit => b,
            _ => bucket.insert(TokenBucket {
                limit,
                tokens: f64::from(limit.burst),
                at: now,
            }),
        };
        b.refill(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Go's `rate.Limiter`: starts full with `burst` tokens, one more every `interval`.
struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        self.at = now;
        let interval = self.limit.interval.max(Duration::from_nanos(1));
        self.tokens = (self.tokens + elapsed.as_secs_f64() / interval.as_secs_f64())
            .min(f64::from(self.limit.burst));
    }
}

/// The user and password of an `Authorization: Basic` header, as Go's
/// `Request.BasicAuth` reads it (scheme case-insensitive, split at the first `:`).
fn basic_credentials(headers: &HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let prefix = b"basic ";
    if value.len() < prefix.len() || !value[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&value[prefix.len()..])
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

fn plain(status: StatusCode) -> Response {
    // Go's http.Error: the status text and a newline.
    let text = format!("{}\n", status.canonical_reason().unwrap_or(""));
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Body::from(text),
    )
        .into_response()
}

/// The middleware: rate limit, headers, basic auth.
pub(crate) async fn guard(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let config = guard.watch.current();
    let mut response = if config.rate_limit.is_some_and(|l| !guard.allow(l)) {
        plain(StatusCode::TOO_MANY_REQUESTS)
    } else if !config.requires_auth() || guard.authorized(&config, request.headers()).await {
        next.run(request).await
    } else {
        let mut r = plain(StatusCode::UNAUTHORIZED);
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        r
    };
    for (name, value) in &config.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::webconfig::tests::ALICE_COST4;

    /// `htpasswd -nbBC 10 alice 's3cret pass'` and `htpasswd -nbBC 6 carol
    /// 'pässwörd:with:colons'`.
    const ALICE_COST10: &str = "$2y$10$zbt406fEU.ZnJwh7YJbczOyW/4GQvhGo6Qu5FusspxDToBPqN9iy.";
    const CAROL_COST6: &str = "$2y$06$pcDUCGTOZfllj5FhD0rx6.L6W6wAWWUU8Xs.5RxuFKKXjGfc8TTTi";

    fn guard_for(users: &str) -> (tempfile::TempDir, Guard) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, format!("basic_auth_users:\n{users}")).unwrap();
        let watch = Arc::new(WebConfigWatch::load(&path).unwrap());
        (dir, Guard::new(watch))
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn htpasswd_hashes_verify_the_right_password_only() {
        let (_dir, g) = guard_for(&format!("  alice: {ALICE_COST4}\n  carol: {CAROL_COST6}\n"));
        let c = g.watch().current();
        assert!(g.authorized(&c, &basic("alice", "s3cret pass")).await);
        assert!(
            g.authorized(&c, &basic("carol", "pässwörd:with:colons"))
                .await
        );
        assert!(!g.authorized(&c, &basic("alice", "s3cret pas")).await);
        assert!(!g.authorized(&c, &basic("alice", "")).await);
        assert!(!g.authorized(&c, &basic("carol", "s3cret pass")).await);
        // alice's password under another name.
        assert!(!g.authorized(&c, &basic("mallory", "s3cret pass")).await);
        assert!(!g.authorized(&c, &HeaderMap::new()).await);
    }

    #[tokio::test]
    async fn a_repeated_check_is_cached_and_a_wrong_user_costs_a_real_hash() {
        let (_dir, g) = guard_for(&format!("  alice: {ALICE_COST10}\n"));
        let c = g.watch().current();
        let started = Instant::now();
        assert!(g.authorized(&c, &basic("alice", "s3cret pass")).await);
        let first = started.elapsed();
        let started = Instant::now();
        for _ in 0..20 {
            assert!(g.authorized(&c, &basic("alice", "s3cret pass")).await);
        }
        let repeated = started.elapsed();
        assert!(
            repeated < first,
            "20 cached checks took {repeated:?}, one bcrypt {first:?}"
        );
        // An unknown user is checked against alice's cost-10 hash: not free.
        let started = Instant::now();
        assert!(!g.authorized(&c, &basic("mallory", "s3cret pass")).await);
        let unknown = started.elapsed();
        assert!(
            unknown * 4 > first,
            "unknown user took {unknown:?}, a real check {first:?}"
        );
        // The cache never lets an unknown user in, even with the decoy's password.
        assert!(!g.authorized(&c, &basic("mallory", "s3cret pass")).await);
    }

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let (_dir, g) = guard_for(&format!("  alice: {ALICE_COST4}\n"));
        let c = g.watch().current();
        for i in 0..(CACHE_SIZE + 30) {
            g.authorized(&c, &basic("alice", &format!("guess {i}")))
                .await;
        }
        assert!(lock(&g.verified).len() <= CACHE_SIZE);
    }

    #[test]
    fn basic_credentials_are_read_as_go_reads_them() {
        let mut h = basic("alice", "a:b");
        assert_eq!(
            basic_credentials(&h),
            Some((b"alice".to_vec(), b"a:b".to_vec()))
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bAsIc YTpi"),
        );
        assert_eq!(basic_credentials(&h), Some((b"a".to_vec(), b"b".to_vec())));
        for bad in ["Bearer YTpi", "Basic !!!", "Basic YWI=", "Basic"] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            assert_eq!(basic_credentials(&h), None, "{bad}");
        }
    }

    #[test]
    fn the_rate_limit_lets_a_burst_through_then_one_per_interval() {
        let (_dir, g) = guard_for("");
        let limit = RateLimit {
            interval: Duration::from_millis(200),
            burst: 2,
        };
        assert!(g.allow(limit));
        assert!(g.allow(limit));
        assert!(!g.allow(limit));
        std::thread::sleep(Duration::from_millis(250));
        assert!(g.allow(limit));
        assert!(!g.allow(limit));
        // Burst 0, as Go's limiter: nothing gets through.
        let none = RateLimit {
            interval: Duration::from_millis(1),
            burst: 0,
        };
        std::thread::sleep(Duration::from_millis(5));
        assert!(!g.allow(none));
    }
}
