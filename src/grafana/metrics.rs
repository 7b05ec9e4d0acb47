//! The plugin's own metrics in Prometheus text format (CollectMetrics and
//! standalone `/metrics`).

use std::fmt::Write;
use std::sync::Arc;

use crate::scrape::Health;
use crate::tenant::Tenant;

pub async fn self_metrics_text(tenants: &[(&str, &Arc<Tenant>)]) -> String {
    let mut out = String::new();
    let families: [(&str, &str, &str); 4] = [
        (
            "arrowmon_samples_appended_total",
            "counter",
            "Samples appended to the store.",
        ),
        (
            "arrowmon_active_series",
            "gauge",
            "Series in the in-memory head.",
        ),
        ("arrowmon_targets", "gauge", "Scrape targets by health."),
        ("arrowmon_tenants", "gauge", "Datasource instances served."),
    ];
    for (name, kind, help) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        match name {
            "arrowmon_tenants" => {
                let _ = writeln!(out, "{name} {}", tenants.len());
            }
            _ => {
                for (tenant_name, t) in tenants {
                    let tl = crate::labels::go_quote(tenant_name);
                    match name {
                        "arrowmon_samples_appended_total" => {
                            let _ = writeln!(
                                out,
                                "{name}{{tenant={tl}}} {}",
                                t.store.samples_appended()
                            );
                        }
                        "arrowmon_active_series" => {
                            let _ =
                                writeln!(out, "{name}{{tenant={tl}}} {}", t.store.series_count());
                        }
                        _ => {
                            let targets = t.targets().await;
                            for (h, hn) in [
                                (Health::Up, "up"),
                                (Health::Down, "down"),
                                (Health::Unknown, "unknown"),
                            ] {
                                let n = targets.iter().filter(|x| x.health == h).count();
                                let _ = writeln!(out, "{name}{{health=\"{hn}\",tenant={tl}}} {n}");
                            }
                        }
                    }
                }
            }
        }
    }
    let name = "arrowmon_query_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time to evaluate a query.\n# TYPE {name} histogram"
    );
    for (tenant_name, t) in tenants {
        let tl = crate::labels::go_quote(tenant_name);
        let (cumulative, sum) = t.query_latency.snapshot();
        let bounds = crate::tenant::LatencyHistogram::BOUNDS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_string()]);
        for (le, count) in bounds.zip(&cumulative) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\",tenant={tl}}} {count}");
        }
        let _ = writeln!(out, "{name}_sum{{tenant={tl}}} {sum}");
        let _ = writeln!(
            out,
            "{name}_count{{tenant={tl}}} {}",
            cumulative.last().copied().unwrap_or(0)
        );
    }
    out
}
