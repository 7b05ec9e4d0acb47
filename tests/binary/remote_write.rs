//! Remote write receive: `gpx_arrowmon serve --enable-remote-write-receiver` stores
//! what `POST /api/v1/write` sends, answers every malformed body with a 400 that
//! names the problem and keeps serving; without the flag the path is a 404.
//! The same against a real Prometheus sender is in tests/external/remote_write.rs.

use std::time::Duration;

use arrowmon::proto::prometheus::{Exemplar, Label, Sample, TimeSeries, WriteRequest};
use prost::Message;
use serde_json::Value;

use crate::support::*;

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

/// The body a remote write 1.0 sender POSTs.
fn body(ts: Vec<TimeSeries>) -> Vec<u8> {
    let raw = WriteRequest {
        timeseries: ts,
        metadata: Vec::new(),
    }
    .encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

async fn post(client: &reqwest::Client, base: &str, body: Vec<u8>) -> (u16, String) {
    let r = client
        .post(format!("{base}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("serve answers");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

fn start(dir: &std::path::Path, flag: bool) -> (ChildGuard, String) {
    let cfg = dir.join("scrape.yml");
    std::fs::write(&cfg, "scrape_configs: []\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = serve_command(&cfg, &dir.join("data"), &listen);
    if flag {
        cmd.arg("--enable-remote-write-receiver");
    }
    (
        ChildGuard::spawn("gpx_arrowmon serve", &mut cmd),
        format!("http://{listen}"),
    )
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    eventually(Duration::from_secs(15), "serve ready", || async {
        let (s, _) = http_get(client, &format!("{base}/-/ready")).await?;
        (s == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_write_receive_stores_samples_and_refuses_malformed_bodies() {
    let client = http_client();
    let dir = tempfile::tempdir().unwrap();
    let (_serve, base) = start(dir.path(), true);
    wait_ready(&client, &base).await;
    let t0 = now_ms() - 60_000;

    // A good request: two series, one with an exemplar.
    let mut with_exemplar = series(
        &[("__name__", "rw_requests_total"), ("job", "app")],
        &[(t0, 1.0), (t0 + 1000, 2.0)],
    );
    with_exemplar.exemplars.push(Exemplar {
        labels: vec![label("trace_id", "abc")],
        value: 2.0,
        timestamp: t0 + 1000,
    });
    let good = body(vec![
        with_exemplar,
        series(&[("__name__", "rw_temp"), ("room", "a")], &[(t0, 21.5)]),
    ]);
    let (s, b) = post(&client, &base, good).await;
    assert_eq!((s, b.as_str()), (204, ""));
    // Each series' newest sample sent again (as a sender's retry of its last
    // batch): harmless repeats, still 204.
    let again = body(vec![
        series(
            &[("__name__", "rw_requests_total"), ("job", "app")],
            &[(t0 + 1000, 2.0)],
        ),
        series(&[("__name__", "rw_temp"), ("room", "a")], &[(t0, 21.5)]),
    ]);
    let (s, b) = post(&client, &base, again).await;
    assert_eq!((s, b.as_str()), (204, ""));

    // The raw samples of rw_requests_total up to `at`.
    let raw_at = |at: i64| {
        format!(
            "{base}/api/v1/query?query=rw_requests_total%5B5m%5D&time={}",
            at as f64 / 1000.0
        )
    };
    let v = http_get_json(&client, &raw_at(t0 + 2000)).await.unwrap();
    let values = &v["data"]["result"][0]["values"];
    assert_eq!(values.as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["data"]["result"][0]["metric"]["job"], "app", "{v}");
    let ex = http_get_json(
        &client,
        &format!(
            "{base}/api/v1/query_exemplars?query=rw_requests_total&start={}&end={}",
            t0 / 1000 - 1,
            t0 / 1000 + 5
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        ex["data"][0]["exemplars"][0]["labels"]["trace_id"], "abc",
        "{ex}"
    );

    // Malformed bodies: each a 400 (413 for the bomb) naming the problem; nothing
    // of them is stored.
    let mut huge_len = Vec::new();
    let mut n: u64 = 1 << 31;
    while n >= 0x80 {
        huge_len.push((n as u8) | 0x80);
        n >>= 7;
    }
    huge_len.push(n as u8);
    huge_len.extend_from_slice(&[0, 0, 0]);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "not snappy",
            b"\xff\xff\xff\xff\xff\xff".to_vec(),
            400,
            "not snappy",
        ),
        (
            "truncated snappy",
            snap::raw::Encoder::new()
                .compress_vec(&[7u8; 1000])
                .unwrap()[..5]
                .to_vec(),
            400,
            "not valid snappy",
        ),
        ("decompression bomb", huge_len, 413, "would decompress to 2147483648 bytes"),
        (
            "not protobuf",
            snap::raw::Encoder::new()
                .compress_vec(b"\x0a\xff\xff\xff\xff\x0f")
                .unwrap(),
            400,
            "not a protobuf prometheus.WriteRequest",
        ),
        (
            "unsorted labels",
            body(vec![series(
                &[("__name__", "rw_bad"), ("zone", "1"), ("app", "x")],
                &[(t0, 1.0)],
            )]),
            400,
            "timeseries 0 {__name__=\"rw_bad\", zone=\"1\", app=\"x\"}: labels are not sorted by name: \"zone\" comes before \"app\"",
        ),
        (
            "duplicate label",
            body(vec![
                series(&[("__name__", "rw_fine")], &[(t0, 1.0)]),
                series(
                    &[("__name__", "rw_bad"), ("a", "1"), ("a", "2")],
                    &[(t0, 1.0)],
                ),
            ]),
            400,
            "timeseries 1 {__name__=\"rw_bad\", a=\"1\", a=\"2\"}: label name \"a\" appears twice",
        ),
        (
            "no metric name",
            body(vec![series(&[("job", "x")], &[(t0, 1.0)])]),
            400,
            "no metric name (label __name__)",
        ),
        (
            "empty label name",
            body(vec![series(&[("", "v"), ("__name__", "rw_bad")], &[(t0, 1.0)])]),
            400,
            "label 0 has an empty name",
        ),
    ];
    for (what, b, status, needle) in cases {
        let (s, text) = post(&client, &base, b).await;
        assert_eq!(s, status, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {text:?} lacks {needle:?}");
    }
    // A huge label comes back cut, not whole.
    let long = "x".repeat(100_000);
    let (s, text) = post(
        &client,
        &base,
        body(vec![series(
            &[("__name__", "rw_bad"), (&long, "1"), (&long, "2")],
            &[(t0, 1.0)],
        )]),
    )
    .await;
    assert_eq!(s, 400, "{text}");
    assert!(text.len() < 4000 && text.contains("bytes in all"), "{text}");
    let v = http_get_json(
        &client,
        &format!("{base}/api/v1/series?match[]=rw_bad&match[]=rw_fine"),
    )
    .await
    .unwrap();
    assert_eq!(v["data"], Value::Array(vec![]), "{v}");

    // A body past the API's request body limit (2 MiB as sent) is refused unread
    // (and the server drops that connection: a client of its own).
    let (s, _) = post(&http_client(), &base, vec![0; 3 << 20]).await;
    assert_eq!(s, 413);

    // Other encodings or message types are refused, not misread.
    let r = client
        .post(format!("{base}/api/v1/write"))
        .header("Content-Encoding", "gzip")
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r = client
        .post(format!("{base}/api/v1/write"))
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert!(r.text().await.unwrap().contains("remote write 1.0"));

    // Out of order, duplicate and too far ahead: refused and named, the rest stored.
    let future = now_ms() + 3_600_000;
    let (s, text) = post(
        &client,
        &base,
        body(vec![
            series(
                &[("__name__", "rw_requests_total"), ("job", "app")],
                &[(t0 - 30_000, 0.5), (t0 + 1000, 9.0), (t0 + 2000, 3.0)],
            ),
            series(&[("__name__", "rw_future")], &[(future, 1.0)]),
        ]),
    )
    .await;
    assert_eq!(s, 400, "{text}");
    assert!(
        text.contains("3 of the request's samples not stored (1 out of order, 1 duplicate (another value at a stored timestamp), 1 too far in the future"),
        "{text}"
    );
    let v = http_get_json(&client, &raw_at(t0 + 3000)).await.unwrap();
    assert_eq!(
        v["data"]["result"][0]["values"].as_array().map(Vec::len),
        Some(3),
        "the in-order sample of the partly refused request is stored: {v}"
    );

    // GET is not remote write; the server still answers after all of the above.
    let (s, _) = http_get(&client, &format!("{base}/api/v1/write"))
        .await
        .unwrap();
    assert_eq!(s, 405);
    let metrics = http_get(&client, &format!("{base}/metrics"))
        .await
        .unwrap()
        .1;
    assert_eq!(
        exposition_value(
            &metrics,
            "arrowmon_remote_write_samples_refused_total{tenant=\"standalone\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        exposition_value(
            &metrics,
            "arrowmon_remote_write_requests_malformed_total{tenant=\"standalone\"}"
        ),
        Some(11.0),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_write_is_not_found_without_the_flag() {
    let client = http_client();
    let dir = tempfile::tempdir().unwrap();
    let (_serve, base) = start(dir.path(), false);
    wait_ready(&client, &base).await;
    let (s, text) = post(
        &client,
        &base,
        body(vec![series(&[("__name__", "x")], &[(now_ms(), 1.0)])]),
    )
    .await;
    assert_eq!(s, 404, "{text}");
    assert!(text.contains("--enable-remote-write-receiver"), "{text}");
}
