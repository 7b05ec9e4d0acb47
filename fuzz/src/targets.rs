//! The fuzz targets' bodies. `fuzz/fuzz_targets/` runs each under libFuzzer, and
//! the normal test suite (tests/in_process/fuzz_corpora.rs) replays every corpus and
//! regression input through the same functions, so an input that once crashed
//! stays a test.
//!
//! Each body feeds bytes to one parser of untrusted input the way the product does
//! and checks what must hold for every input: no panic, no caught panic (a 500 that
//! says "internal error"), and the invariants named at each target.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrowmon::api::{self, Access, ApiRequest};
use arrowmon::config::relabel;
use arrowmon::config::settings::DatasourceSettings;
use arrowmon::config::{ScrapeConfig, SecretSource, StoreSettings};
use arrowmon::grafana::query::{plan, QueryModel, QueryTiming};
use arrowmon::grafana::service::Plugin;
use arrowmon::model::labels::{Labels, MatchKind, Matcher};
use arrowmon::model::MemStorage;
use arrowmon::promql::{Engine, EngineOptions};
use arrowmon::proto::pluginv2 as pb;
use arrowmon::proto::pluginv2::data_server::Data;
use arrowmon::scrape::exposition::{Entry, Format, Parser, ParserOptions};
use arrowmon::store::{Store, StoreOptions, WalPosition, WalTail};
use arrowmon::tenant::{SecretMode, Tenant, Tenants};

/// Fixed inputs read from the front of the fuzz data; missing bytes read as zero,
/// so every input is valid.
struct Header<'a> {
    data: &'a [u8],
}

impl<'a> Header<'a> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self
            .data
            .split_first()
            .map_or((0, &[][..]), |(b, r)| (*b, r));
        self.data = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn i64(&mut self) -> i64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        i64::from_le_bytes(b)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }
}

/// Every line of a scrape body, as the scrape loop reads it: the entry, then its
/// labels. A parse error ends the body.
fn parse_exposition(data: &[u8], format: Format) {
    let mut parser = Parser::new(data, format, ParserOptions::default());
    let mut line = 0u32;
    loop {
        match parser.next() {
            Ok(Some(Entry::Sample(s))) => {
                line += 1;
                let _ = s.name();
                if let Ok(labels) = s.to_labels() {
                    assert!(
                        labels.iter().all(|l| !l.name.is_empty()),
                        "a parsed label has an empty name"
                    );
                }
                if let Some(e) = &s.exemplar {
                    let _ = e.to_labels(line);
                }
            }
            Ok(Some(_)) => line += 1,
            Ok(None) | Err(_) => break,
        }
    }
}

/// The Prometheus text format parser.
pub fn exposition_text(data: &[u8]) {
    parse_exposition(data, Format::PrometheusText);
}

/// The OpenMetrics parser.
pub fn exposition_openmetrics(data: &[u8]) {
    parse_exposition(data, Format::OpenMetrics);
}

const T0: i64 = 1_700_000_000_000;

fn promql_storage() -> &'static MemStorage {
    static STORAGE: OnceLock<MemStorage> = OnceLock::new();
    STORAGE.get_or_init(|| {
        let mut s = MemStorage::new();
        let stale = f64::from_bits(arrowmon::model::value::STALE_NAN_BITS);
        let points = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
            (0..40).map(|i| (T0 + i * 15_000, f(i))).collect()
        };
        for (code, k) in [("200", 3.0), ("500", 0.5)] {
            s.add_samples(
                Labels::from_pairs([
                    ("__name__", "http_requests_total"),
                    ("code", code),
                    ("job", "api"),
                ]),
                &points(&|i| if i == 20 { 1.0 } else { k * i as f64 }),
            );
        }
        for le in ["0.1", "0.5", "1", "+Inf"] {
            let w: f64 = le.parse().unwrap_or(2.0);
            s.add_samples(
                Labels::from_pairs([
                    ("__name__", "latency_seconds_bucket"),
                    ("le", le),
                    ("job", "api"),
                ]),
                &points(&|i| (i as f64) * w.min(2.0)),
            );
        }
        s.add_samples(
            Labels::from_pairs([("__name__", "temperature"), ("room", "a")]),
            &points(&|i| {
                if i == 7 {
                    f64::NAN
                } else if i == 30 {
                    stale
                } else {
                    (i as f64).sin() * 20.0
                }
            }),
        );
        s.add_samples(
            Labels::from_pairs([("__name__", "up"), ("instance", "a:9100"), ("job", "node")]),
            &points(&|i| (i % 2) as f64),
        );
        s
    })
}

/// PromQL: parse, then evaluate as an instant and as a range query over a small
/// store. Errors are fine; panics and runaway evaluations are not (limits are small).
pub fn promql(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let engine = Engine::new(EngineOptions {
        max_samples: 20_000,
        timeout: Duration::from_secs(2),
        max_result_series: 1_000,
        ..EngineOptions::default()
    });
    let storage = promql_storage();
    if let Ok(r) = engine.instant_query(storage, query, T0 + 300_000) {
        drop(r);
    }
    let _ = engine.range_query(storage, query, T0, T0 + 600_000, 30_000);
}

/// A scrape config as `check-config` and the datasource editor read it, then its
/// relabeling applied to a fixed label set as the scrape loop applies it.
pub fn scrape_config(data: &[u8]) {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    let secure = HashMap::from([("token".to_string(), "s3cret".to_string())]);
    for source in [SecretSource::File, SecretSource::Grafana(&secure)] {
        let Ok(config) = ScrapeConfig::parse(yaml, &source) else {
            continue;
        };
        let sample = Labels::from_pairs([
            ("__name__", "node_cpu_seconds_total"),
            ("cpu", "0"),
            ("instance", "127.0.0.1:9100"),
            ("job", "node"),
            ("mode", "idle"),
        ]);
        for job in &config.jobs {
            for t in &job.targets {
                // As Prometheus: a kept target has an address, hence a URL and an
                // `instance`, and none of the `__` labels reach its series.
                assert!(
                    !t.url.is_empty(),
                    "a kept target of job {} has no URL",
                    job.name
                );
                assert!(
                    t.labels.get("instance").is_some_and(|a| !a.is_empty()),
                    "a kept target of job {} has no instance: {:?}",
                    job.name,
                    t.labels
                );
                assert!(
                    t.labels.iter().all(|l| !l.name.starts_with("__")),
                    "{:?}",
                    t.labels
                );
            }
            if let Some(out) = relabel::process(&sample, &job.metric_relabel_configs) {
                assert!(
                    out.iter().all(|l| !l.value.is_empty()),
                    "relabeling kept a label with an empty value: {out:?}"
                );
            }
        }
    }
}

/// A rule file as `check-rules` and `serve` read it, with both name schemes and
/// unknown fields refused or skipped. What it accepts is complete: every group
/// named once, every rule named, with an expression; every error has a text.
pub fn rule_file(data: &[u8]) {
    use arrowmon::rules::{parse_rule_file, NameValidation, ParseOptions};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (names, ignore_unknown_fields) in [
        (NameValidation::Utf8, false),
        (NameValidation::Legacy, true),
    ] {
        let opts = ParseOptions {
            names,
            ignore_unknown_fields,
        };
        match parse_rule_file(text, &opts) {
            Ok(groups) => {
                let mut seen = std::collections::HashSet::new();
                for g in &groups.groups {
                    assert!(!g.name.is_empty() && seen.insert(&g.name), "{:?}", g.name);
                    for r in &g.rules {
                        assert!(!r.name.is_empty() && !r.expr.is_empty(), "{r:?}");
                    }
                }
            }
            Err(errors) => {
                assert!(!errors.is_empty());
                for e in errors {
                    assert!(!e.to_string().is_empty(), "{e:?}");
                }
            }
        }
    }
}

/// A unit-test file of rules as `test-rules` decodes it before running it:
/// read, or refused with a text.
pub fn rule_test_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = arrowmon::rules::unittest::read_test_file(text) {
        assert!(!e.is_empty());
    }
}

/// A rule file evaluated as a server evaluates it: every group of a file that
/// parses runs three times over a small store (counters, gauges, a histogram,
/// `up`), restores alert states, and sends what is due. No template, expression
/// or label set may panic, and what the groups write stays consistent.
pub fn rule_eval(data: &[u8]) {
    use arrowmon::rules::eval::{EvalOptions, Group, MemRuleStorage};
    use arrowmon::rules::{parse_rule_file, ParseOptions};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(groups) = parse_rule_file(text, &ParseOptions::default()) else {
        return;
    };
    let store = MemRuleStorage::new();
    let series = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs.iter().copied());
    for (i, host) in ["a:9100", "b:9100"].into_iter().enumerate() {
        let step = (i + 1) as f64;
        for t in 0..4i64 {
            let ts = t * 60_000;
            let v = t as f64 * step;
            store.add_samples(
                series(&[("__name__", "up"), ("job", "node"), ("instance", host)]),
                &[(ts, (t % 2) as f64)],
            );
            store.add_samples(
                series(&[
                    ("__name__", "requests_total"),
                    ("job", "node"),
                    ("instance", host),
                ]),
                &[(ts, v * 10.0)],
            );
            store.add_samples(
                series(&[
                    ("__name__", "temperature"),
                    ("job", "node"),
                    ("instance", host),
                ]),
                &[(ts, 20.0 - v)],
            );
            for (le, share) in [("0.1", 0.2), ("1", 0.8), ("+Inf", 1.0)] {
                store.add_samples(
                    series(&[
                        ("__name__", "latency_seconds_bucket"),
                        ("job", "node"),
                        ("instance", host),
                        ("le", le),
                    ]),
                    &[(ts, v * 100.0 * share)],
                );
            }
        }
    }
    let engine = Engine::new(EngineOptions {
        timeout: std::time::Duration::from_secs(5),
        max_samples: 100_000,
        ..Default::default()
    });
    let opts = EvalOptions {
        external_labels: [("site".to_string(), "fuzz".to_string())].into(),
        external_url: "http://fuzz:9090".into(),
        ..EvalOptions::default()
    };
    for g in &groups.groups {
        let mut group = Group::new("fuzz.yml", g, Duration::from_secs(60), Duration::ZERO, true);
        for t in 1..4i64 {
            let due = group.eval(t * 60_000, &engine, &store, &opts);
            for n in due {
                assert!(n.labels.get("alertname").is_some(), "{n:?}");
                assert!(n.ends_at_ms >= n.starts_at_ms, "{n:?}");
            }
            if t == 2 {
                group.restore_for_state(t * 60_000, &store, &opts);
            }
        }
        let status = group.status();
        assert_eq!(status.rules.len(), g.rules.len());
        for r in &status.rules {
            for a in &r.alerts {
                assert_eq!(
                    a.labels.get("alertname"),
                    Some(r.rule.name.as_str()),
                    "{a:?}"
                );
            }
        }
    }
}

/// A datasource's jsonData as Grafana sends it, and everything read from it.
pub fn datasource_settings(data: &[u8]) {
    let secure = HashMap::from([("password".to_string(), "pw".to_string())]);
    let Ok(settings) = DatasourceSettings::from_grafana(1, "fuzz", "fuzz", data, &secure, 0) else {
        return;
    };
    let _ = settings.key();
    let _ = settings.scrape_config();
    if let Ok(store) = settings.store_settings() {
        let _ = arrowmon::tenant::store_options(&store);
    }
    let _ = settings.query_timeout();
    let _ = settings.time_interval();
}

fn fuzz_dir(name: &str) -> tempfile::TempDir {
    // Memory-backed where the system has it: the store targets write files per input.
    let base = Path::new("/dev/shm");
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix(name);
        b
    };
    if base.is_dir() {
        if let Ok(d) = builder.tempdir_in(base) {
            return d;
        }
    }
    builder
        .tempdir()
        .expect("a temporary directory for the store under test")
}

fn store_options() -> StoreOptions {
    StoreOptions {
        background: false,
        ..StoreOptions::default()
    }
}

/// Everything a damaged store still serves must be well formed.
fn check_store_reads(store: &Store) {
    let all = [Matcher::new(MatchKind::Regex, "__name__", ".+").expect("a valid matcher")];
    match store.select(&all, i64::MIN, i64::MAX) {
        Ok(series) => {
            for s in series {
                assert_eq!(s.timestamps.len(), s.values.len(), "{:?}", s.labels);
                assert!(
                    s.timestamps.windows(2).all(|w| w[0] < w[1]),
                    "timestamps of {:?} are not increasing",
                    s.labels
                );
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Frames payloads as the WAL writer does: length, CRC-32, payload.
fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The WAL and checkpoint readers, through `Store::open` as at a restart. The first
/// byte chooses the file (bit 0: checkpoint instead of segment) and whether the rest
/// is raw file content or records that this harness frames with valid checksums
/// (bit 1), so that record decoding is reached past the CRC. Records: u16 LE length,
/// then the payload.
pub fn wal_replay(data: &[u8]) {
    let mut h = Header { data };
    let mode = h.byte();
    let content = if mode & 2 != 0 {
        let mut out = Vec::new();
        while !h.data.is_empty() {
            let n = h.u16() as usize;
            frame(&mut out, h.take(n.max(1)));
        }
        out
    } else {
        h.data.to_vec()
    };
    let dir = fuzz_dir("arrowmon-fuzz-wal");
    let wal = dir.path().join("wal");
    std::fs::create_dir_all(&wal).expect("the WAL directory");
    let file = if mode & 1 != 0 {
        wal.join("checkpoint")
    } else {
        wal.join("00000001")
    };
    std::fs::write(&file, &content).expect("the fuzzed WAL file");
    if mode & 1 == 0 {
        follow_closed_segment(&wal, content.len() as u64);
    }
    let store = match Store::open_with(dir.path(), store_options()) {
        Ok(s) => s,
        // Opening may refuse with an error; it must not panic, and it must say where.
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    check_store_reads(&store);
}

/// A remote write queue's reader over segment 1 as a closed segment (the writer is
/// at segment 2): it must end, never read past the file, and only move forward.
fn follow_closed_segment(wal: &Path, len: u64) {
    let end = WalPosition {
        segment: 2,
        offset: 0,
    };
    let mut tail = WalTail::new(
        wal,
        WalPosition {
            segment: 1,
            offset: 0,
        },
    );
    // Each read takes at least one byte or moves to the next segment.
    for _ in 0..=len + 2 {
        let before = tail.position();
        if before.segment >= 2 {
            return;
        }
        let mut last = before;
        let read = tail.read(end, |_, after| {
            assert!(
                after > last && after.offset <= len,
                "{after:?} after {last:?}, file {len}"
            );
            last = after;
        });
        assert!(read.is_ok(), "{read:?}");
        assert!(tail.position() > before, "no progress at {before:?}");
    }
    panic!("the WAL tail did not finish a {len}-byte segment");
}

/// A block written by this arrowmon, the seed the block target damages.
const SEED_META: &[u8] = include_bytes!(
    "../../tests/data/store-format-1/blocks/b1699999200000_1700006400000_import1795753032719/meta.json"
);
const SEED_SERIES: &[u8] = include_bytes!(
    "../../tests/data/store-format-1/blocks/b1699999200000_1700006400000_import1795753032719/series.arrow"
);
const SEED_SAMPLES: &[u8] = include_bytes!(
    "../../tests/data/store-format-1/blocks/b1699999200000_1700006400000_import1795753032719/samples.arrow"
);

/// The block reader, through `Store::open`. The first byte chooses which of the
/// block's three files the rest replaces (0: meta.json, 1: series.arrow, 2:
/// samples.arrow; the others keep the seed block's content) and whether meta.json's
/// size and checksum are made to match the fuzzed file (bit 2), so that the Arrow
/// decoding and the series/sample cross-checks are reached past the checksum.
pub fn block_open(data: &[u8]) {
    let mut h = Header { data };
    let mode = h.byte();
    let fuzzed = h.data;
    let mut meta = SEED_META.to_vec();
    let mut series = SEED_SERIES;
    let mut samples = SEED_SAMPLES;
    let replaced = match mode % 3 {
        0 => {
            meta = fuzzed.to_vec();
            None
        }
        1 => {
            series = fuzzed;
            Some("series.arrow")
        }
        _ => {
            samples = fuzzed;
            Some("samples.arrow")
        }
    };
    if let (Some(file), true) = (replaced, mode & 4 != 0) {
        if let Ok(mut m) = serde_json::from_slice::<serde_json::Value>(&meta) {
            m["files"][file] = serde_json::json!({
                "size": fuzzed.len(),
                "crc32": crc32fast::hash(fuzzed),
            });
            meta = m.to_string().into_bytes();
        }
    }
    let dir = fuzz_dir("arrowmon-fuzz-block");
    let block = dir
        .path()
        .join("blocks")
        .join("b1699999200000_1700006400000_import1");
    std::fs::create_dir_all(&block).expect("the block directory");
    for (name, content) in [
        ("meta.json", &meta[..]),
        ("series.arrow", series),
        ("samples.arrow", samples),
    ] {
        let mut f = std::fs::File::create(block.join(name)).expect("a block file");
        f.write_all(content).expect("the block file's content");
    }
    std::fs::write(
        dir.path().join("arrowmon-store.json"),
        br#"{"format_version": 1}"#,
    )
    .expect("the store marker");
    match Store::open_with(dir.path(), store_options()) {
        Ok(store) => check_store_reads(&store),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// A datasource as Grafana describes it in every request.
fn plugin_context() -> pb::PluginContext {
    pb::PluginContext {
        org_id: 1,
        plugin_id: "arrowmon-metrics-datasource".into(),
        data_source_instance_settings: Some(pb::DataSourceInstanceSettings {
            id: 1,
            uid: "fuzz".into(),
            name: "arrowmon".into(),
            json_data: br#"{"scrapeConfig": "", "timeInterval": "15s"}"#.to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct GrafanaFixture {
    plugin: Plugin,
    _dir: tempfile::TempDir,
}

fn grafana_fixture() -> &'static GrafanaFixture {
    static FIXTURE: OnceLock<GrafanaFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = fuzz_dir("arrowmon-fuzz-grafana");
        let tenants = Arc::new(Tenants::new(dir.path(), StoreSettings::default()));
        let (shutdown, _) = tokio::sync::watch::channel(false);
        GrafanaFixture {
            plugin: Plugin {
                tenants,
                engine: Arc::new(Engine::new(EngineOptions {
                    max_samples: 50_000,
                    timeout: Duration::from_secs(2),
                    ..EngineOptions::default()
                })),
                shutdown,
            },
            _dir: dir,
        }
    })
}

/// A QueryData request as Grafana sends it for one panel query: the time range,
/// interval and max data points from the first 32 bytes, the query JSON from the
/// rest. Its planning (Grafana's interval rules) runs on its own as well.
pub fn grafana_query(data: &[u8]) {
    let mut h = Header { data };
    let from = h.i64();
    let to = h.i64();
    let interval_ms = h.i64();
    let max_data_points = h.i64();
    let json = h.data;
    if let Ok(model) = QueryModel::parse(json) {
        let timing = QueryTiming {
            from_ms: from,
            to_ms: to,
            interval_ms,
            max_data_points,
        };
        let _ = plan(&model, timing, "15s");
        let _ = plan(&model, timing, "");
    }
    let fixture = grafana_fixture();
    let request = pb::QueryDataRequest {
        plugin_context: Some(plugin_context()),
        queries: vec![pb::DataQuery {
            ref_id: "A".into(),
            max_data_points,
            interval_ms,
            time_range: Some(pb::TimeRange {
                from_epoch_ms: from,
                to_epoch_ms: to,
            }),
            json: json.to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let response = runtime()
        .block_on(fixture.plugin.query_data(tonic::Request::new(request)))
        .expect("QueryData answers every well-formed request");
    for (ref_id, r) in response.into_inner().responses {
        assert!(
            !r.error.contains("internal error"),
            "query {ref_id} hit an internal error: {}",
            r.error
        );
    }
}

struct ApiFixture {
    tenant: Arc<Tenant>,
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
}

fn api_fixture() -> &'static ApiFixture {
    static FIXTURE: OnceLock<ApiFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = fuzz_dir("arrowmon-fuzz-api");
        let tenant = Tenant::open(dir.path(), SecretMode::File, store_options())
            .expect("a tenant for the API target");
        let mut batch = Vec::new();
        for i in 0..40 {
            for (code, k) in [("200", 3.0), ("500", 0.5)] {
                batch.push(arrowmon::store::AppendSample {
                    labels: Labels::from_pairs([
                        ("__name__", "http_requests_total"),
                        ("code", code),
                        ("job", "api"),
                    ]),
                    timestamp_ms: T0 + i * 15_000,
                    value: k * i as f64,
                });
            }
        }
        tenant.store.append(&batch);
        ApiFixture {
            tenant: Arc::new(tenant),
            engine: Arc::new(Engine::new(EngineOptions {
                max_samples: 50_000,
                timeout: Duration::from_secs(2),
                ..EngineOptions::default()
            })),
            _dir: dir,
        }
    })
}

const API_PATHS: [&str; 12] = [
    "api/v1/query",
    "api/v1/query_range",
    "api/v1/labels",
    "api/v1/label/__name__/values",
    "api/v1/label/code/values",
    "api/v1/series",
    "api/v1/targets",
    "api/v1/metadata",
    "api/v1/status/buildinfo",
    "api/v1/query_exemplars",
    "api/v1/format_query",
    "validate",
];

/// The HTTP API's parameter handling, as `serve` and CallResource reach it: the
/// first byte picks the endpoint and method, the next two the split between the
/// query string and a form body.
pub fn api_request(data: &[u8]) {
    let mut h = Header { data };
    let pick = h.byte();
    let split = h.u16() as usize;
    let rest = h.data;
    let (query, body) = rest.split_at(split.min(rest.len()));
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let path = API_PATHS[(pick as usize) % API_PATHS.len()];
    let post = pick & 0x80 != 0;
    let fixture = api_fixture();
    let response = runtime().block_on(api::handle(
        &fixture.tenant,
        &fixture.engine,
        Access::Admin,
        ApiRequest {
            method: if post { "POST" } else { "GET" },
            path,
            query,
            body,
            content_type: post.then_some("application/x-www-form-urlencoded"),
        },
    ));
    assert!(
        response.status != 500,
        "/{path}?{query} answered 500: {}",
        String::from_utf8_lossy(&response.body)
    );
}

struct RemoteWriteFixture {
    tenant: Tenant,
    _dir: tempfile::TempDir,
}

fn remote_write_fixture() -> &'static RemoteWriteFixture {
    static FIXTURE: OnceLock<RemoteWriteFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = fuzz_dir("arrowmon-fuzz-remote-write");
        let tenant = Tenant::open(dir.path(), SecretMode::File, store_options())
            .expect("a tenant for the remote write target");
        RemoteWriteFixture { tenant, _dir: dir }
    })
}

/// `serve`'s remote write receiver (`POST /api/v1/write`). The first byte's low bit
/// says whether the rest is the body as sent (snappy block data, for the
/// decompressor's bounds) or a protobuf `WriteRequest` the target compresses first
/// (so the fuzzer reaches the decoding and label checks without learning snappy).
/// Every input is answered 204, 400, 413 or 415: never a 500.
pub fn remote_write_body(data: &[u8]) {
    let mut h = Header { data };
    let compress = h.byte() & 1 == 1;
    let compressed;
    let body = if compress {
        compressed = snap::raw::Encoder::new()
            .compress_vec(h.data)
            .expect("snappy compresses every input under 4 GiB");
        &compressed[..]
    } else {
        h.data
    };
    let fixture = remote_write_fixture();
    let response = api::remote_write::receive(
        &fixture.tenant,
        api::remote_write::WriteHeaders {
            content_type: Some("application/x-protobuf"),
            content_encoding: Some("snappy"),
        },
        body,
    );
    assert!(
        matches!(response.status, 204 | 400 | 413 | 415),
        "remote write answered {}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
}
