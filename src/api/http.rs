//! Standalone mode's HTTP listener: the Prometheus API for one tenant, plus the
//! process's own metrics on `/metrics`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::{handle, Access, ApiRequest};
use crate::promql::Engine;
use crate::tenant::Tenant;

#[derive(Clone)]
struct AppState {
    tenant: Arc<Tenant>,
    engine: Arc<Engine>,
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tenant: Arc<Tenant>,
    engine: Arc<Engine>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .fallback(dispatch)
        .with_state(AppState { tenant, engine });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn dispatch(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if path == "/metrics" {
        let text = crate::tenant::self_metrics_text(&[("standalone", &st.tenant)]).await;
        return (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let resp = handle(
        &st.tenant,
        &st.engine,
        // Standalone mode is the user's own server: every resource is open to it.
        Access::Admin,
        ApiRequest {
            method: method.as_str(),
            path,
            query: uri.query().unwrap_or(""),
            body: &body,
            content_type,
        },
    )
    .await;
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, resp.content_type)],
        resp.body,
    )
        .into_response()
}
