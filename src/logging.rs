//! Logging setup. In plugin mode every event is one hclog-style JSON line on stderr
//! (`@level`, `@message`, `@timestamp`, `@module` plus the event's fields), which
//! Grafana's plugin host parses and re-logs at the same level. Standalone mode logs
//! human-readable lines.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::time::format_rfc3339_micros;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Installs the hclog JSON writer for plugin mode.
pub fn init_plugin_logging() {
    let subscriber = tracing_subscriber::registry().with(HclogLayer { min: Level::DEBUG });
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Installs plain text logging for standalone mode and tools; colours only on a
/// terminal, so that a log file or the journal gets plain text.
pub fn init_standalone_logging() {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(Level::INFO)
        .try_init();
}

struct HclogLayer {
    min: Level,
}

impl<S: Subscriber> Layer<S> for HclogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > self.min {
            return;
        }
        // Debug lines of our own code only; the libraries' (h2, hyper) would flood
        // Grafana's log with one line per frame.
        let ours =
            meta.target().starts_with("arrowmon") || meta.target().starts_with("gpx_arrowmon");
        if *meta.level() > Level::INFO && !ours {
            return;
        }
        let mut fields = FieldCollector::default();
        event.record(&mut fields);
        let line = hclog_line(
            *meta.level(),
            meta.target(),
            fields.message,
            fields.extra,
            SystemTime::now(),
        );
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
    }
}

#[derive(Default)]
struct FieldCollector {
    message: String,
    extra: Map<String, Value>,
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.extra
                .insert(field.name().to_string(), Value::String(value.to_string()));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.extra.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.extra.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.extra.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.extra.insert(field.name().to_string(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.extra
                .insert(field.name().to_string(), Value::String(text));
        }
    }
}

fn hclog_line(
    level: Level,
    target: &str,
    message: String,
    extra: Map<String, Value>,
    now: SystemTime,
) -> String {
    let level = match level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    };
    // hclog's module is the logger name; ours are the crate's module paths.
    let module = target.replace("::", ".");
    let mut obj = Map::new();
    obj.insert("@level".into(), level.into());
    obj.insert("@message".into(), message.into());
    obj.insert("@module".into(), module.into());
    obj.insert("@timestamp".into(), hclog_time(now).into());
    for (k, v) in extra {
        obj.entry(k).or_insert(v);
    }
    let mut line = Value::Object(obj).to_string();
    line.push('\n');
    line
}

/// A time as hclog writes it: `2006-01-02T15:04:05.000000Z` (UTC).
fn hclog_time(t: SystemTime) -> String {
    let us = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros();
    format_rfc3339_micros(i64::try_from(us).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_json_with_hclog_keys() {
        let mut extra = Map::new();
        extra.insert("target".into(), "http://x".into());
        let line = hclog_line(
            Level::WARN,
            "arrowmon::scrape",
            "scrape failed".into(),
            extra,
            UNIX_EPOCH,
        );
        assert!(line.ends_with('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["@level"], "warn");
        assert_eq!(v["@message"], "scrape failed");
        assert_eq!(v["@module"], "arrowmon.scrape");
        assert_eq!(v["@timestamp"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(v["target"], "http://x");
    }
}
