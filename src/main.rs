//! `gpx_arrowmon`: started by Grafana as a backend plugin, or by hand as a
//! standalone server and tool.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use arrowmon::config::paths::PluginFolders;
use arrowmon::config::ScrapeConfig;
use arrowmon::grafana;
use arrowmon::promql::{Engine, EngineOptions};
use arrowmon::tenant::Tenant;

#[derive(Parser)]
#[command(
    name = "gpx_arrowmon",
    version,
    about = "arrowmon: a Grafana datasource plugin that is its own monitoring server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run standalone: scrape, store and serve the Prometheus HTTP API without Grafana.
    Serve {
        /// Prometheus-style scrape config (YAML with `scrape_configs`).
        #[arg(long)]
        config: PathBuf,
        /// Where the store keeps its data.
        #[arg(long)]
        data_dir: PathBuf,
        /// Address of the HTTP API.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
    },
    /// Validate a scrape config and print the targets it would scrape.
    CheckConfig { file: PathBuf },
}

const NOT_STARTED_BY_GRAFANA: &str = "\
gpx_arrowmon is a Grafana backend plugin (arrowmon-metrics-datasource); Grafana starts it.
To install it, copy the plugin folder into Grafana's plugins folder (see README).
To run it without Grafana:
    gpx_arrowmon serve --config scrape.yml --data-dir DIR --listen 127.0.0.1:9090
Run `gpx_arrowmon --help` for all commands.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 1 {
        if grafana::started_by_grafana(|k| std::env::var(k).ok()) {
            arrowmon::logging::init_plugin_logging();
            return run(grafana::serve_plugin(PluginFolders::from_process_env()));
        }
        eprintln!("{NOT_STARTED_BY_GRAFANA}");
        return ExitCode::from(1);
    }
    let cli = Cli::parse();
    arrowmon::logging::init_standalone_logging();
    match cli.command {
        None => {
            eprintln!("{NOT_STARTED_BY_GRAFANA}");
            ExitCode::from(1)
        }
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Serve {
            config,
            data_dir,
            listen,
        }) => run(serve(config, data_dir, listen)),
    }
}

fn run(fut: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn load_config(path: &std::path::Path) -> Result<ScrapeConfig, String> {
    ScrapeConfig::load_file(path)
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match load_config(path) {
        Ok(cfg) => {
            println!("{}: valid, {} job(s)", path.display(), cfg.jobs.len());
            let report = arrowmon::scrape::check::describe(&cfg);
            print!("{}", report.text);
            if report.problems > 0 {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(config: PathBuf, data_dir: PathBuf, listen: SocketAddr) -> Result<(), String> {
    let cfg = load_config(&config)?;
    let tenant = Arc::new(Tenant::open(&data_dir)?);
    tenant.apply_config(Ok(cfg)).await;
    let engine = Arc::new(Engine::new(EngineOptions::default()));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%listen, data_dir = %data_dir.display(), "arrowmon serving");
    arrowmon::api::http::serve(listener, tenant.clone(), engine, grafana::wait_for_signal())
        .await
        .map_err(|e| e.to_string())?;
    tenant.shutdown().await;
    tracing::info!("arrowmon stopped");
    Ok(())
}
