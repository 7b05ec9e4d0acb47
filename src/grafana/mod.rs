//! Plugin mode: Grafana starts the binary, reads the go-plugin handshake line from
//! its stdout and talks pluginv2 gRPC to it over loopback.

pub mod exemplar;
pub mod frames;
pub mod interval;
pub mod query;
pub mod service;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_stream::StreamExt;

use crate::config::paths::PluginFolders;
use crate::promql::{Engine, EngineOptions};
use crate::proto::{goplugin, health, pluginv2};
use crate::tenant::Tenants;
use service::Plugin;

/// go-plugin's magic cookie as Grafana's SDK sets it.
pub const MAGIC_COOKIE_KEY: &str = "grafana_plugin_type";
pub const MAGIC_COOKIE_VALUE: &str = "datasource";
/// The plugin protocol version Grafana speaks (pluginv2).
pub const PROTOCOL_VERSION: u32 = 2;

/// Whether the environment is Grafana's: the magic cookie and a protocol version we
/// speak.
pub fn started_by_grafana(get: impl Fn(&str) -> Option<String>) -> bool {
    let cookie = get(MAGIC_COOKIE_KEY).is_some_and(|v| v == MAGIC_COOKIE_VALUE);
    let versions_ok = match get("PLUGIN_PROTOCOL_VERSIONS") {
        None => true,
        Some(v) => v
            .split(',')
            .any(|x| x.trim() == PROTOCOL_VERSION.to_string()),
    };
    cookie && versions_ok
}

/// Binds within `PLUGIN_MIN_PORT..=PLUGIN_MAX_PORT` when go-plugin sets them.
async fn bind() -> std::io::Result<TcpListener> {
    let port = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u16>().ok());
    if let (Some(min), Some(max)) = (port("PLUGIN_MIN_PORT"), port("PLUGIN_MAX_PORT")) {
        for p in min..=max {
            if let Ok(l) = TcpListener::bind(("127.0.0.1", p)).await {
                return Ok(l);
            }
        }
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("no free port in {min}..={max}"),
        ));
    }
    TcpListener::bind(("127.0.0.1", 0)).await
}

/// Counts open gRPC connections, so the plugin can stop when Grafana's closes.
#[derive(Default)]
struct Connections {
    open: AtomicUsize,
    all_closed: Notify,
}

struct TrackedStream {
    inner: TcpStream,
    conns: Arc<Connections>,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        if self.conns.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.conns.all_closed.notify_one();
        }
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for TrackedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Runs the plugin until Grafana stops it: `GRPCController/Shutdown`, SIGTERM or
/// SIGINT, or its connection closing. Scrapers stop and data is flushed before
/// the process exits.
pub async fn serve_plugin(folders: PluginFolders) -> Result<(), String> {
    tracing::info!(
        data_dir = %folders.data_dir.display(),
        provisioning_dir = %folders.provisioning_dir.display(),
        "arrowmon plugin starting"
    );
    let store_settings = PluginFolders::store_settings(|k| std::env::var(k).ok())?;
    let tenants = Arc::new(Tenants::new(&folders.data_dir, store_settings));
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    let plugin = Plugin {
        tenants: tenants.clone(),
        engine: Arc::new(Engine::new(EngineOptions::default())),
        shutdown: shutdown_tx.clone(),
    };

    let listener = bind()
        .await
        .map_err(|e| format!("cannot listen on loopback: {e}"))?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let conns = Arc::new(Connections::default());
    let incoming = {
        let conns = conns.clone();
        tokio_stream::wrappers::TcpListenerStream::new(listener).map(move |s| {
            s.map(|inner| {
                let _ = inner.set_nodelay(true);
                conns.open.fetch_add(1, Ordering::SeqCst);
                TrackedStream {
                    inner,
                    conns: conns.clone(),
                }
            })
        })
    };

    let server = tonic::transport::Server::builder()
        .add_service(
            pluginv2::data_server::DataServer::new(plugin.clone())
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(256 << 20),
        )
        .add_service(pluginv2::diagnostics_server::DiagnosticsServer::new(
            plugin.clone(),
        ))
        .add_service(
            pluginv2::resource_server::ResourceServer::new(plugin.clone())
                .max_decoding_message_size(64 << 20),
        )
        .add_service(goplugin::grpc_controller_server::GrpcControllerServer::new(
            plugin.clone(),
        ))
        .add_service(goplugin::grpc_broker_server::GrpcBrokerServer::new(
            plugin.clone(),
        ))
        .add_service(goplugin::grpc_stdio_server::GrpcStdioServer::new(
            plugin.clone(),
        ))
        .add_service(health::health_server::HealthServer::new(plugin.clone()));

    // Provisioned and persisted datasources start scraping before any request.
    tenants
        .start_known(&folders.provisioning_dir, &|k| std::env::var(k).ok())
        .await;

    // Grafana never says a datasource was deleted: tenants unseen for
    // `tenant_idle_days` (grafana.ini plugin section) stop scraping, data kept.
    {
        let tenants = tenants.clone();
        let provisioning_dir = folders.provisioning_dir.clone();
        let idle_days = std::env::var("GF_PLUGIN_TENANT_IDLE_DAYS")
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|d| *d > 0)
            .unwrap_or(30);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every.tick().await;
                tenants
                    .touch_provisioned(&provisioning_dir, &|k| std::env::var(k).ok())
                    .await;
                tenants.stop_idle(idle_days * 86_400_000).await;
            }
        });
    }

    // Before the handshake: Grafana may ask the process to stop as soon as it has read it.
    let signalled = wait_for_signal();
    // The handshake: core protocol 1, app protocol 2, tcp, address, grpc.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "1|{PROTOCOL_VERSION}|tcp|{addr}|grpc").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }

    let stop = {
        let conns = conns.clone();
        async move {
            tokio::select! {
                _ = shutdown_rx.wait_for(|v| *v) => {}
                _ = signalled => tracing::info!("signal received, shutting down"),
                _ = conns.all_closed.notified() => tracing::info!("Grafana closed the connection, shutting down"),
            }
        }
    };
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_incoming_shutdown(incoming, async move {
        let _ = stopped_rx.await;
    }));
    stop.await;
    let _ = shutdown_tx.send(true);
    // Flush first: Grafana kills the process 2 s after asking it to stop.
    tenants.shutdown().await;
    let _ = stopped_tx.send(());
    // Answer in-flight calls (the Shutdown call itself), but do not wait on clients.
    let _ = tokio::time::timeout(Duration::from_millis(500), serving).await;
    tracing::info!("arrowmon plugin stopped");
    Ok(())
}

/// Takes over SIGTERM and SIGINT at once, so one that arrives before the returned
/// future is first polled is kept, not left to kill the process; the future resolves
/// on the first of them. Call it inside the runtime.
pub fn wait_for_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        async move {
            match streams {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
