//! Hostile targets, each a local misbehaving server: every misbehaviour costs one
//! failed scrape (`up` = 0, the reason kept for the health check), never unbounded
//! memory, a stuck loop or a panic; and the loop goes on scraping afterwards.

use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use arrowmon::scrape::Health;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A server that reads each request's headers, then hands the connection and the
/// connection's number (0, 1, ...) to `handler`.
async fn raw_server<F, Fut>(handler: F) -> String
where
    F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handler = Arc::new(handler);
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            tokio::spawn(async move {
                if read_request_head(&mut conn).await.is_none() {
                    return;
                }
                handler(conn, n).await;
            });
        }
    });
    addr
}

fn config(addr: &str, extra: &str) -> String {
    format!(
        "scrape_configs:\n  - job_name: hostile\n    scrape_interval: 1s\n    scrape_timeout: 500ms\n{extra}    static_configs:\n      - targets: ['{addr}']\n"
    )
}

const HEADERS: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n";

/// Waits for two failed scrapes (the loop is not stuck after the first) and
/// returns the last error.
async fn two_failures(h: &Harness) -> String {
    let t = h.wait_scraped(Duration::from_secs(10)).await;
    assert_eq!(t.health, Health::Down, "{t:?}");
    let t = h.wait_more_scrapes(1, Duration::from_secs(10)).await;
    assert_eq!(t.health, Health::Down, "{t:?}");
    let up = h.series_named("up");
    assert!(up[0].values.len() >= 2 && up[0].values.iter().all(|&v| v == 0.0));
    t.last_error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_hangs_times_out() {
    let addr = raw_server(|conn, _| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(conn);
    })
    .await;
    let h = Harness::start(&config(&addr, ""));
    let err = two_failures(&h).await;
    assert!(
        err.contains("timed out after 500ms") && err.contains(&addr),
        "{err}"
    );
    let t = h.targets().remove(0);
    assert!(t.last_duration < Duration::from_millis(900), "{t:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_times_out() {
    let addr = raw_server(|mut conn, _| async move {
        let head = format!("{HEADERS}Content-Length: 100000\r\n\r\n");
        if conn.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for _ in 0..100_000 {
            if conn.write_all(b"#").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let h = Harness::start(&config(&addr, ""));
    let err = two_failures(&h).await;
    assert!(err.contains("timed out"), "{err}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_fails_plain_and_after_gzip_inflation() {
    // Plain: 64 KiB of samples against a 16 KiB limit.
    let body: String = (0..4000).map(|i| format!("m{{i=\"{i}\"}} 1\n")).collect();
    assert!(body.len() > 32 << 10);
    let plain = body.clone();
    let addr = raw_server(move |mut conn, _| {
        let body = plain.clone();
        async move {
            let resp = format!("{HEADERS}Content-Length: {}\r\n\r\n{body}", body.len());
            let _ = conn.write_all(resp.as_bytes()).await;
        }
    })
    .await;
    let h = Harness::start(&config(&addr, "    body_size_limit: 16KB\n"));
    let err = two_failures(&h).await;
    assert!(err.contains("body size limit exceeded"), "{err}");
    h.stop().await;

    // Gzip: a small compressed body that inflates to 64 MiB, limit 1 MiB.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..(64 << 10) {
        e.write_all(&[b'#'; 1023]).unwrap();
        e.write_all(b"\n").unwrap();
    }
    let bomb = Arc::new(e.finish().unwrap());
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let addr = raw_server(move |mut conn, _| {
        let bomb = bomb.clone();
        async move {
            let head = format!(
                "{HEADERS}Content-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                bomb.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(&bomb).await;
        }
    })
    .await;
    let h = Harness::start(&config(&addr, "    body_size_limit: 1MB\n"));
    let err = two_failures(&h).await;
    assert!(
        err.contains("body size limit exceeded: the body reached 1048576 bytes"),
        "{err}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn millions_of_series_stop_at_the_sample_limit_without_reading_the_body() {
    // 5 million series (~150 MB), generated as they are sent.
    const SERIES: u64 = 5_000_000;
    let sent = Arc::new(AtomicU64::new(0));
    let sent_by_server = sent.clone();
    let addr = raw_server(move |mut conn, _| {
        let sent = sent_by_server.clone();
        async move {
            let head = format!("{HEADERS}Transfer-Encoding: chunked\r\n\r\n");
            if conn.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut i = 0u64;
            while i < SERIES {
                let mut chunk = String::with_capacity(64 << 10);
                while chunk.len() < 60 << 10 && i < SERIES {
                    chunk.push_str(&format!("series_bomb{{id=\"{i}\"}} {i}\n"));
                    i += 1;
                }
                let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                if conn.write_all(framed.as_bytes()).await.is_err() {
                    return;
                }
                sent.fetch_add(framed.len() as u64, Ordering::Relaxed);
            }
            let _ = conn.write_all(b"0\r\n\r\n").await;
        }
    })
    .await;
    let h = Harness::start(&config(&addr, "    sample_limit: 1000\n"));
    let t = h.wait_scraped(Duration::from_secs(10)).await;
    assert_eq!(t.health, Health::Down);
    assert!(
        t.last_error
            .contains("sample limit exceeded (sample_limit: 1000)"),
        "{}",
        t.last_error
    );
    // The scraper hung up after about 1000 lines: the server got nowhere near
    // sending its 150 MB (socket buffers allow a few MB).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < 16 << 20, "server sent {sent} bytes");
    // Nothing of the over-limit scrape was stored.
    assert!(h.series_named("series_bomb").is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_limit_counts_samples_after_metric_relabeling() {
    let addr = exporter(|| {
        (0..50)
            .map(|i| format!("keep_me{{i=\"{i}\"}} 1\ndrop_me{{i=\"{i}\"}} 1\n"))
            .collect()
    })
    .await;
    // 100 samples scraped, 50 kept: a limit of 60 holds.
    let h = Harness::start(&config(
        &addr,
        "    sample_limit: 60\n    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: drop_me\n        action: drop\n",
    ));
    let t = h.wait_scraped(Duration::from_secs(10)).await;
    assert_eq!(t.health, Health::Up, "{t:?}");
    assert_eq!(h.last_value("scrape_samples_scraped"), Some(100.0));
    assert_eq!(
        h.last_value("scrape_samples_post_metric_relabeling"),
        Some(50.0)
    );
    assert_eq!(h.series_named("keep_me").len(), 50);
    assert!(h.series_named("drop_me").is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_mid_body_fails_the_scrape() {
    let addr = raw_server(|mut conn, _| async move {
        let head = format!("{HEADERS}Content-Length: 10000\r\n\r\nup_ish 1\nhalf");
        let _ = conn.write_all(head.as_bytes()).await;
        // Dropping the connection closes it 9990 bytes early.
    })
    .await;
    let h = Harness::start(&config(&addr, ""));
    let err = two_failures(&h).await;
    assert!(err.contains(&addr), "{err}");
    assert!(!err.contains("timed out"), "{err}");
    assert!(h.series_named("up_ish").is_empty());

    // Chunked encoding cut before its last chunk.
    let addr = raw_server(|mut conn, _| async move {
        let head = format!("{HEADERS}Transfer-Encoding: chunked\r\n\r\n9\r\nup_ish 1\n\r\n");
        let _ = conn.write_all(head.as_bytes()).await;
    })
    .await;
    let h2 = Harness::start(&config(&addr, ""));
    let err = two_failures(&h2).await;
    assert!(!err.contains("timed out"), "{err}");
    h.stop().await;
    h2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_line_fails_the_scrape_and_keeps_stored_data() {
    // The first two scrapes are good, then the body breaks on line 3.
    let addr = raw_server(|mut conn, n| async move {
        let body = if n < 2 {
            "# TYPE good gauge\ngood 1\nother 2\n"
        } else {
            "# TYPE good gauge\ngood 1\nother{a=\"x\" 2\n"
        };
        let resp = format!("{HEADERS}Content-Length: {}\r\n\r\n{body}", body.len());
        let _ = conn.write_all(resp.as_bytes()).await;
    })
    .await;
    let h = Harness::start(&config(&addr, ""));
    let t = h.wait_scraped(Duration::from_secs(10)).await;
    assert_eq!(t.health, Health::Up, "{t:?}");
    let t = h
        .wait_until(Duration::from_secs(10), "the broken scrape", |t| {
            t[0].health == Health::Down
        })
        .await
        .remove(0);
    let err = &t.last_error;
    assert!(err.contains(&format!("http://{addr}/metrics")), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("column"), "{err}");
    // Earlier samples stay; the failed scrape ended the series with a staleness marker.
    let good = h.series_named("good");
    assert_eq!(good.len(), 1);
    let vals = &good[0].values;
    assert!(vals.len() >= 3, "{vals:?}");
    assert!(vals[..vals.len() - 1].iter().all(|&v| v == 1.0), "{vals:?}");
    assert!(is_stale(*vals.last().unwrap()), "{vals:?}");
    h.stop().await;
}
