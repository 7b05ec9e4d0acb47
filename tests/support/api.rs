//! The Prometheus HTTP API of a tenant, called in process as standalone mode and
//! CallResource call it.

use std::sync::Arc;

use arrowmon::api::{self, Access, ApiRequest};
use arrowmon::promql::{Engine, EngineOptions};
use arrowmon::tenant::Tenant;
use serde_json::Value;

/// A GET of `path` with the raw query string `query`, as a reader: the status
/// and the body.
pub async fn api_get_raw(tenant: &Arc<Tenant>, path: &str, query: &str) -> (u16, Vec<u8>) {
    let engine = Arc::new(Engine::new(EngineOptions::default()));
    let resp = api::handle(
        tenant,
        &engine,
        Access::Read,
        ApiRequest {
            method: "GET",
            path,
            query,
            body: b"",
            content_type: None,
        },
    )
    .await;
    (resp.status, resp.body)
}

/// [`api_get_raw`] with the body as JSON (null when empty).
pub async fn api_get(tenant: &Arc<Tenant>, path: &str, query: &str) -> (u16, Value) {
    let (status, body) = api_get_raw(tenant, path, query).await;
    let v = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{path}?{query}: {e}: {}", String::from_utf8_lossy(&body)))
    };
    (status, v)
}
