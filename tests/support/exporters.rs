//! Small exporters on loopback, serving text format 0.0.4 (or OpenMetrics) at /metrics, and what
//! hand-written servers need to read a request.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};

/// An exporter answering every GET with `body()`. Returns its address; it runs until
/// the test's runtime ends.
pub async fn exporter(body: impl Fn() -> String + Send + Sync + 'static) -> String {
    exporter_as("text/plain; version=0.0.4; charset=utf-8", body).await
}

/// The OpenMetrics content type Prometheus's client libraries send.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An exporter answering every GET with `body()` as `content_type` (e.g.
/// [`OPENMETRICS`]). Returns its address; it runs until the test's runtime ends.
pub async fn exporter_as(
    content_type: &'static str,
    body: impl Fn() -> String + Send + Sync + 'static,
) -> String {
    use axum::routing::get;
    let body = Arc::new(body);
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let body = body.clone();
            async move { ([("content-type", content_type)], body()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// An exporter always serving the same `body`.
pub async fn serve_metrics(body: &'static str) -> String {
    exporter(move || body.to_string()).await
}

/// Reads an HTTP request up to the end of its headers, for servers that answer by
/// hand; None if the peer closes or fails first.
pub async fn read_request_head(conn: &mut (impl AsyncRead + Unpin)) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(String::from_utf8_lossy(&buf).to_string())
}
