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
use arrowmon::store::StoreOptions;
use arrowmon::tenant::{SecretMode, Tenant};

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
    Serve(Box<ServeArgs>),
    /// Validate a scrape config and print the targets it would scrape; the rule
    /// files it names are checked as `check-rules` checks them.
    CheckConfig { file: PathBuf },
    /// Validate rule files as `promtool check rules` does, with its messages.
    CheckRules {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// How metric and label names are checked: utf8 (Prometheus 3) or
        /// legacy (Prometheus 2's character sets).
        #[arg(long = "validation-scheme", default_value = "utf8")]
        validation_scheme: String,
        /// Skip fields Prometheus does not know instead of refusing them.
        #[arg(long = "ignore-unknown-fields")]
        ignore_unknown_fields: bool,
    },
    /// Run unit tests of rules as `promtool test rules` does, with its output.
    TestRules {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate web configuration files (`serve --web.config.file`), certificates included.
    CheckWebConfig {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Backfill a store from a file with timestamps.
    Import {
        #[command(subcommand)]
        format: ImportFormat,
    },
    /// Run Prometheus PromQL test scripts (`*.test`) and compare the failures with a
    /// known-differences file (default: the one shipped in the source tree).
    PromqlTest {
        files: Vec<PathBuf>,
        #[arg(long)]
        known_differences: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Prometheus-style scrape config (YAML with `scrape_configs`).
    #[arg(long)]
    config: PathBuf,
    /// Where the store keeps its data.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address of the HTTP API (loopback only unless told otherwise).
    #[arg(
        long,
        visible_alias = "web.listen-address",
        default_value = "127.0.0.1:9090"
    )]
    listen: SocketAddr,
    /// Prometheus web configuration file: TLS, client certificates, basic auth.
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,
    /// Time range of a block cut from the in-memory head (lower it for tests
    /// and benchmarks).
    #[arg(long, default_value = "2h")]
    block_range: String,
    /// How often the write-ahead log is fsynced.
    #[arg(long, default_value = "1s")]
    wal_sync_interval: String,
    /// Blocks older than this are deleted (0 keeps everything).
    #[arg(long, default_value = "15d")]
    retention_time: String,
    /// Oldest blocks are deleted while the blocks exceed this size (e.g. 10GB; 0 = no limit).
    #[arg(long, default_value = "0")]
    retention_size: String,
    /// Most queries evaluated at once; more wait in a queue within their timeout.
    #[arg(long = "query.max-concurrency", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    query_max_concurrency: u64,
    /// Memory the queries in flight may hold together (e.g. 2GB; 0 = no limit);
    /// one query may hold half of it. Default: a quarter of the machine's memory.
    #[arg(long = "query.max-memory")]
    query_max_memory: Option<String>,
    /// The URL arrowmon is reached at: `$externalURL` in alert templates.
    /// Default: http:// and the listen address.
    #[arg(long = "web.external-url", value_name = "URL")]
    web_external_url: Option<String>,
    /// How long an outage may last for alert states to be restored from
    /// `ALERTS_FOR_STATE` after it.
    #[arg(long = "rules.alert.for-outage-tolerance", default_value = "1h")]
    rules_outage_tolerance: String,
    /// The least time a restored pending alert waits before firing.
    #[arg(long = "rules.alert.for-grace-period", default_value = "10m")]
    rules_grace_period: String,
    /// How often a firing alert is sent to Alertmanager again.
    #[arg(long = "rules.alert.resend-delay", default_value = "1m")]
    rules_resend_delay: String,
    /// Accept Prometheus remote write 1.0 on POST /api/v1/write (from Prometheus,
    /// Grafana Alloy, vmagent) into the store.
    #[arg(
        long = "enable-remote-write-receiver",
        visible_alias = "web.enable-remote-write-receiver"
    )]
    enable_remote_write_receiver: bool,
}

#[derive(Subcommand)]
enum ImportFormat {
    /// An OpenMetrics file whose samples carry timestamps (as promtool's
    /// `tsdb create-blocks-from openmetrics` takes), ending with `# EOF`.
    Openmetrics {
        file: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        /// Import samples more than 10 minutes after now too (refused by default:
        /// they are most likely a clock error).
        #[arg(long)]
        allow_future_samples: bool,
    },
}

const NOT_STARTED_BY_GRAFANA: &str = "\
gpx_arrowmon is a Grafana backend plugin (arrowmon-metrics-datasource); Grafana starts it.
To install it, copy the plugin folder into Grafana's plugins folder (see README).
To run it without Grafana:
    gpx_arrowmon serve --config scrape.yml --data-dir DIR --listen 127.0.0.1:9090
Run `gpx_arrowmon --help` for all commands.";

fn main() -> ExitCode {
    // Before any thread exists, so no thread has made an arena of its own yet.
    arrowmon::runtime::memory::limit_malloc_arenas();
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
    // Rule unit tests report evaluation errors in their output, as promtool's
    // runner (with its no-op logger) does; logged again they would only repeat.
    if !matches!(cli.command, Some(Command::TestRules { .. })) {
        arrowmon::logging::init_standalone_logging();
    }
    match cli.command {
        None => {
            eprintln!("{NOT_STARTED_BY_GRAFANA}");
            ExitCode::from(1)
        }
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::CheckRules {
            files,
            validation_scheme,
            ignore_unknown_fields,
        }) => match arrowmon::rules::NameValidation::parse(&validation_scheme) {
            Ok(names) => {
                let opts = arrowmon::rules::ParseOptions {
                    names,
                    ignore_unknown_fields,
                };
                // Every file is checked, also after one has failed.
                let mut failed = false;
                for f in &files {
                    failed |= !check_rule_file(f, &opts, "");
                }
                if failed {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("--validation-scheme: {e}");
                ExitCode::from(2)
            }
        },
        Some(Command::TestRules { files }) => test_rules(&files),
        Some(Command::CheckWebConfig { files }) => check_web_config(&files),
        Some(Command::Import {
            format:
                ImportFormat::Openmetrics {
                    file,
                    data_dir,
                    allow_future_samples,
                },
        }) => match arrowmon::import::import_openmetrics(
            &file,
            &arrowmon::tenant::store_dir(&data_dir),
            arrowmon::import::ImportOptions {
                allow_future_samples,
            },
        ) {
            Ok(s) => {
                println!(
                    "imported {} samples of {} series from {} into {} as {} blocks",
                    s.samples,
                    s.series,
                    file.display(),
                    data_dir.display(),
                    s.blocks
                );
                if s.duplicates > 0 {
                    println!(
                        "{} samples repeated a timestamp of their series and were skipped",
                        s.duplicates
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("import: {e}");
                ExitCode::from(1)
            }
        },
        Some(Command::PromqlTest {
            files,
            known_differences,
        }) => promql_test(&files, known_differences),
        Some(Command::Serve(args)) => {
            let ServeArgs {
                config,
                data_dir,
                listen,
                web_config_file,
                block_range,
                wal_sync_interval,
                retention_time,
                retention_size,
                query_max_concurrency,
                query_max_memory,
                web_external_url,
                rules_outage_tolerance,
                rules_grace_period,
                rules_resend_delay,
                enable_remote_write_receiver,
            } = *args;
            match serve_store_options(
                &block_range,
                &wal_sync_interval,
                &retention_time,
                &retention_size,
            )
            .and_then(|opts| {
                let limits =
                    serve_query_limits(query_max_concurrency, query_max_memory.as_deref())?;
                let rules = serve_rule_options(
                    web_external_url.unwrap_or_else(|| format!("http://{listen}")),
                    &rules_outage_tolerance,
                    &rules_grace_period,
                    &rules_resend_delay,
                )?;
                Ok((opts, limits, rules))
            }) {
                Ok((opts, limits, rules)) => run(serve(
                    config,
                    data_dir,
                    ServeWeb {
                        listen,
                        web_config_file,
                        remote_write_receiver: enable_remote_write_receiver,
                    },
                    opts,
                    limits,
                    rules,
                )),
                Err(e) => {
                    eprintln!("serve: {e}");
                    ExitCode::from(2)
                }
            }
        }
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
            for am in &cfg.alerting.alertmanagers {
                for url in &am.urls {
                    println!("  alertmanager {url}");
                }
            }
            let mut failed = report.problems > 0;
            match arrowmon::rules::rule_files_named(&cfg.rule_files) {
                Ok(files) => {
                    if !files.is_empty() {
                        println!("  SUCCESS: {} rule files found", files.len());
                    }
                    let opts = arrowmon::rules::ParseOptions::default();
                    for f in &files {
                        println!();
                        failed |= !check_rule_file(f, &opts, "    ");
                    }
                }
                Err(e) => {
                    eprintln!("  FAILED: rule_files: {e}");
                    failed = true;
                }
            }
            if failed {
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

/// Checks one rule file and prints the result as promtool does: "Checking F",
/// then "  SUCCESS: N rules found" or "  FAILED:" and each problem on stderr
/// (indented by `indent`, as `check config` indents them). Duplicate rules are a
/// warning, as promtool's default lint: printed, not failed. Returns whether the
/// file is valid.
/// Runs rule unit-test files and prints as promtool does: the file on stdout,
/// then `  SUCCESS`, or `  FAILED:` and each failure on stderr (each followed by
/// an empty line on stdout). Every file runs, also after one has failed.
fn test_rules(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for f in files {
        println!("Unit Testing:  {}", f.display());
        let outcome = arrowmon::rules::unittest::run_test_file(f);
        for w in &outcome.warnings {
            eprintln!("{w}");
        }
        if outcome.passed() {
            println!("  SUCCESS");
        } else {
            failed = true;
            eprintln!("  FAILED:");
            for e in &outcome.failures {
                eprintln!("{e}");
                println!();
            }
        }
        println!();
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn check_rule_file(
    path: &std::path::Path,
    opts: &arrowmon::rules::ParseOptions,
    indent: &str,
) -> bool {
    println!("Checking {}", path.display());
    let ok = match arrowmon::rules::load_rule_file(path, opts) {
        Ok(groups) => {
            let dups = arrowmon::rules::duplicate_rules(&groups);
            if dups.is_empty() {
                println!("  SUCCESS: {} rules found", groups.rule_count());
            } else {
                eprintln!("  FAILED:");
                eprintln!(
                    "{indent}{}",
                    arrowmon::rules::duplicate_rules_message(&dups)
                );
            }
            true
        }
        Err(errors) => {
            eprintln!("  FAILED:");
            for e in errors {
                eprintln!("{indent}{e}");
            }
            false
        }
    };
    println!();
    ok
}

fn check_web_config(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        match arrowmon::api::webconfig::WebConfig::load(file) {
            Ok(c) => {
                println!("{}: valid, {}", file.display(), c.describe());
                for note in &c.notes {
                    println!("  note: {note}");
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn serve_store_options(
    block_range: &str,
    wal_sync: &str,
    retention_time: &str,
    retention_size: &str,
) -> Result<StoreOptions, String> {
    use arrowmon::config::{parse_bytes, StoreSettings};
    use arrowmon::model::duration::parse_duration;
    let settings = StoreSettings {
        block_range: Some(parse_duration(block_range).map_err(|e| format!("--block-range: {e}"))?),
        wal_sync_interval: Some(
            parse_duration(wal_sync).map_err(|e| format!("--wal-sync-interval: {e}"))?,
        ),
        retention_time: Some(
            parse_duration(retention_time).map_err(|e| format!("--retention-time: {e}"))?,
        ),
        retention_size_bytes: Some(
            parse_bytes(retention_size).map_err(|e| format!("--retention-size: {e}"))?,
        ),
        out_of_order_window: None,
    };
    Ok(arrowmon::tenant::store_options(&settings))
}

fn serve_rule_options(
    external_url: String,
    outage_tolerance: &str,
    grace_period: &str,
    resend_delay: &str,
) -> Result<arrowmon::rules::eval::EvalOptions, String> {
    use arrowmon::model::duration::parse_duration;
    Ok(arrowmon::rules::eval::EvalOptions {
        external_url: external_url.trim_end_matches('/').to_string(),
        outage_tolerance: parse_duration(outage_tolerance)
            .map_err(|e| format!("--rules.alert.for-outage-tolerance: {e}"))?,
        for_grace_period: parse_duration(grace_period)
            .map_err(|e| format!("--rules.alert.for-grace-period: {e}"))?,
        resend_delay: parse_duration(resend_delay)
            .map_err(|e| format!("--rules.alert.resend-delay: {e}"))?,
        ..Default::default()
    })
}

fn serve_query_limits(
    max_concurrency: u64,
    max_memory: Option<&str>,
) -> Result<arrowmon::tenant::QueryLimits, String> {
    let max_memory = max_memory
        .map(|m| arrowmon::config::parse_bytes(m).map_err(|e| format!("--query.max-memory: {e}")))
        .transpose()?;
    let settings = arrowmon::config::settings::QueryLimitSettings {
        max_concurrent: Some(max_concurrency as usize),
        max_memory,
    };
    Ok(arrowmon::tenant::QueryLimits::from_settings(
        settings,
        arrowmon::tenant::LimitSource::Flags,
    ))
}

/// What `serve`'s HTTP listener is told by the flags.
struct ServeWeb {
    listen: SocketAddr,
    web_config_file: Option<PathBuf>,
    remote_write_receiver: bool,
}

async fn serve(
    config: PathBuf,
    data_dir: PathBuf,
    web: ServeWeb,
    opts: StoreOptions,
    limits: arrowmon::tenant::QueryLimits,
    rules: arrowmon::rules::eval::EvalOptions,
) -> Result<(), String> {
    let ServeWeb {
        listen,
        web_config_file,
        remote_write_receiver,
    } = web;
    let cfg = load_config(&config)?;
    arrowmon::rules::load_rule_files(&cfg.rule_files)?;
    // Checked before anything is opened: a bad web config must not leave a
    // server running without the protection it asked for.
    let web_config = match &web_config_file {
        Some(f) => {
            let watch = arrowmon::api::webconfig::WebConfigWatch::load(f)
                .map_err(|e| format!("--web.config.file: {e}"))?;
            let current = watch.current();
            tracing::info!(file = %f.display(), config = %current.describe(), "web config loaded");
            for note in &current.notes {
                tracing::warn!(file = %f.display(), "{note}");
            }
            Some(Arc::new(watch))
        }
        None => None,
    };
    let tenant = Arc::new(Tenant::open(&data_dir, SecretMode::File, opts)?);
    tenant.set_query_limits(limits);
    tenant.set_rule_options(rules).await;
    tenant.apply_config(Ok(cfg)).await;
    let engine = Arc::new(Engine::new(EngineOptions::default()));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    // Taken over before the log line that says it serves, which scripts wait for.
    let signalled = grafana::wait_for_signal();
    tracing::info!(%listen, data_dir = %data_dir.display(), "arrowmon serving");
    arrowmon::api::http::serve(
        listener,
        tenant.clone(),
        engine,
        web_config,
        remote_write_receiver,
        signalled,
    )
    .await
    .map_err(|e| e.to_string())?;
    tenant.shutdown().await;
    tracing::info!("arrowmon stopped");
    Ok(())
}

/// The known-differences list is part of the source tree and compiled in, so the
/// binary checks against the list of its own version.
const KNOWN_DIFFERENCES: &str = include_str!("promql/known_differences.txt");

fn promql_test(files: &[PathBuf], known: Option<PathBuf>) -> ExitCode {
    use arrowmon::promql::testscript::{run_files, KnownDifferences};
    let known = match known {
        Some(p) => KnownDifferences::load(&p),
        None => KnownDifferences::parse(KNOWN_DIFFERENCES),
    };
    let known = match known {
        Ok(k) => k,
        Err(e) => {
            eprintln!("known differences: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let summary = run_files(files, &known, &mut out);
    if summary.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        for p in &summary.problems {
            eprintln!("{p}");
        }
        ExitCode::from(1)
    }
}
