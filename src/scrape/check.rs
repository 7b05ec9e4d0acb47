//! `gpx_arrowmon check-config`: what a scrape config would scrape, after
//! relabeling, with the targets relabeling drops and anything that would keep a
//! job from scraping (unreadable file_sd files, TLS files, bad targets), and where
//! remote write sends (with unreadable TLS and secret files).

use std::fmt::Write;

use crate::config::targets::resolve_groups;
use crate::config::ScrapeConfig;
use crate::model::duration::format_duration;

pub struct CheckReport {
    pub text: String,
    /// Problems found (each also written as an `error` line).
    pub problems: usize,
}

pub fn describe(cfg: &ScrapeConfig) -> CheckReport {
    super::tls::install_default_provider();
    let mut text = String::new();
    let mut problems = 0;
    for job in &cfg.jobs {
        let _ = writeln!(
            text,
            "job {:?} (interval {}, timeout {})",
            job.name,
            format_duration(job.interval),
            format_duration(job.timeout)
        );
        let mut groups = job.static_groups.clone();
        let mut errors = Vec::new();
        if !job.file_sd.is_empty() {
            let (g, e) = super::discovery::read_once(&job.file_sd);
            groups.extend(g);
            errors.extend(e);
        }
        let resolved = resolve_groups(job, &groups);
        errors.extend(resolved.errors);
        match &job.mysql {
            Some(m) => {
                let names: Vec<&str> = m.collectors.iter().map(|c| c.name()).collect();
                let _ = writeln!(
                    text,
                    "  mysql as user {:?}, collectors {}",
                    m.user,
                    names.join(", ")
                );
                if m.collectors
                    .contains(&crate::config::MysqlCollector::PerfSchemaEventsStatements)
                {
                    let o = m.events_statements;
                    let _ = writeln!(
                        text,
                        "  perf_schema.eventsstatements: top {} digests by total time, last seen within {}s, text cut to {} characters",
                        o.limit, o.timelimit, o.digest_text_limit
                    );
                }
                errors.extend(crate::collect::check_config(m));
            }
            None => {
                if let Err(e) = super::tls::client_config(&job.tls) {
                    errors.push(e);
                }
            }
        }
        for t in &resolved.active {
            let _ = writeln!(text, "  target  {}  {}", t.url, t.labels);
        }
        for d in &resolved.dropped {
            let _ = writeln!(text, "  dropped by relabeling  {}", d.discovered_labels);
        }
        for e in &errors {
            let _ = writeln!(text, "  error  {e}");
        }
        problems += errors.len();
    }
    for rw in &cfg.remote_write {
        let _ = writeln!(
            text,
            "remote_write {:?} to {} (timeout {}, shards {}-{}, {} samples a batch)",
            rw.name,
            rw.url,
            format_duration(rw.remote_timeout),
            rw.queue.min_shards,
            rw.queue.max_shards,
            rw.queue.max_samples_per_send
        );
        let mut errors = Vec::new();
        if let Err(e) = super::tls::client_config(&rw.tls) {
            errors.push(e);
        }
        // Secret files are read at each send; say now if one cannot be.
        let secret = match &rw.auth {
            crate::config::Auth::Basic {
                password: Some(p), ..
            } => Some(p),
            crate::config::Auth::Header { credentials, .. } => Some(credentials),
            _ => None,
        };
        if let Some(Err(e)) = secret.map(|s| s.read()) {
            errors.push(e);
        }
        for e in &errors {
            let _ = writeln!(text, "  error  {e}");
        }
        problems += errors.len();
    }
    CheckReport { text, problems }
}
