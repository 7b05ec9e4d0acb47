//! Standalone mode's HTTP listener: the Prometheus API for one tenant, plus the
//! process's own metrics on `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio_rustls::TlsAcceptor;

use super::webconfig::{Guard, WebConfigWatch};
use super::{handle, Access, ApiRequest};
use crate::promql::Engine;
use crate::tenant::Tenant;

#[derive(Clone)]
struct AppState {
    tenant: Arc<Tenant>,
    engine: Arc<Engine>,
    /// `--enable-remote-write-receiver`: `POST /api/v1/write` stores what it gets.
    remote_write_receiver: bool,
}

/// Serves until `shutdown` resolves, then lets the requests in progress finish.
/// Without a web config this is plain HTTP/1.1 with no authentication; with one,
/// TLS and basic auth as it says (see [`super::webconfig`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tenant: Arc<Tenant>,
    engine: Arc<Engine>,
    web_config: Option<Arc<WebConfigWatch>>,
    remote_write_receiver: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().fallback(dispatch).with_state(AppState {
        tenant,
        engine,
        remote_write_receiver,
    });
    match web_config {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(watch) => serve_with_web_config(listener, app, watch, shutdown).await,
    }
}

/// How long a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn serve_with_web_config(
    listener: tokio::net::TcpListener,
    app: Router,
    watch: Arc<WebConfigWatch>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let guard = Arc::new(Guard::new(watch.clone()));
    let app = app.layer(axum::middleware::from_fn_with_state(
        guard,
        crate::api::webconfig::guard,
    ));
    // TLS or not is fixed at start (a reload may not change it); the certificates
    // and client-auth settings are taken afresh for every connection.
    let tls = watch.current().tls.is_some();
    let graceful = GracefulShutdown::new();
    // Handshakes still under way when the server stops are dropped, not awaited:
    // the graceful shutdown waits only for connections that got to HTTP.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, as axum::serve does.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let watch = watch.clone();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            if !tls {
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                log_connection_end(watcher.watch(conn).await, peer);
                return;
            }
            let Some(server_config) = watch.current().tls.clone() else {
                return;
            };
            let acceptor = TlsAcceptor::from(server_config);
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        // Logged as Go's server logs it: this is where a refused
                        // client certificate shows up.
                        tracing::info!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(stream);
            if h2 {
                let conn = http2::Builder::new(TokioExecutor::new()).serve_connection(io, service);
                log_connection_end(watcher.watch(conn).await, peer);
            } else {
                let conn = http1::Builder::new().serve_connection(io, service);
                log_connection_end(watcher.watch(conn).await, peer);
            }
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    graceful.shutdown().await;
    Ok(())
}

fn log_connection_end(result: Result<(), hyper::Error>, peer: std::net::SocketAddr) {
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
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
    if path == "/api/v1/write" {
        return remote_write(&st, &method, &headers, body).await;
    }
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

/// `/api/v1/write`, only here: Grafana's CallResource has no remote write (a
/// sender would need Grafana's credentials and the datasource's resource path).
async fn remote_write(
    st: &AppState,
    method: &Method,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    if !st.remote_write_receiver {
        // Prometheus 2.42's answer with the receiver off.
        return (
            StatusCode::NOT_FOUND,
            "remote write receiver needs to be enabled with --enable-remote-write-receiver\n",
        )
            .into_response();
    }
    if method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            "remote write takes POST\n",
        )
            .into_response();
    }
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header_text(header::CONTENT_TYPE);
    let content_encoding = header_text(header::CONTENT_ENCODING);
    let tenant = st.tenant.clone();
    // Off the async workers: decoding up to 32 MiB and appending is seconds of CPU
    // at worst. A panic ends only this task, and is this request's 500.
    let done = tokio::task::spawn_blocking(move || {
        let headers = super::remote_write::WriteHeaders {
            content_type: content_type.as_deref(),
            content_encoding: content_encoding.as_deref(),
        };
        super::remote_write::receive(&tenant, headers, &body)
    })
    .await;
    let resp = done.unwrap_or_else(|e| {
        let msg = match e.try_into_panic() {
            Ok(payload) => crate::promql::engine::panic_message(payload.as_ref()),
            Err(e) => e.to_string(),
        };
        tracing::error!("internal error while receiving remote write: {msg}");
        super::ApiResponse {
            status: 500,
            content_type: "text/plain; charset=utf-8",
            body: format!("internal error while receiving remote write: {msg}\n").into_bytes(),
        }
    });
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if resp.status == 204 {
        return status.into_response();
    }
    (
        status,
        [(header::CONTENT_TYPE, resp.content_type)],
        resp.body,
    )
        .into_response()
}
