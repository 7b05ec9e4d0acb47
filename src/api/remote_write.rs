//! Remote write receive (`serve --enable-remote-write-receiver`): `POST /api/v1/write`
//! with a snappy-compressed (block format) protobuf `prometheus.WriteRequest`, as
//! Prometheus remote write 1.0 sends it. Samples go through the store's normal
//! append path and its out-of-order, duplicate and out-of-bounds rules.

use std::sync::atomic::Ordering;

use prost::Message;

use super::ApiResponse;
use crate::model::exemplar::Exemplar;
use crate::model::labels::{go_quote, Label, Labels, METRIC_NAME};
use crate::proto::prometheus::{self as prompb, WriteRequest};
use crate::tenant::remote_write::{PushOutcome, PushedSeries};
use crate::tenant::Tenant;

/// The largest decompressed body accepted. The compressed body is already bounded
/// by the API's request body limit (2 MiB); snappy can expand that about 20-fold, and
/// senders batch far less (Prometheus 500 samples, vmagent 8 MiB blocks at most), so
/// this bounds the allocation a hostile length header could ask for.
pub const MAX_DECODED_BYTES: usize = 32 << 20;

/// The request headers the receiver checks.
pub struct WriteHeaders<'a> {
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
}

/// Answers one remote write request: 204 when every sample was stored (or was a
/// harmless repeat), 400 when the body is malformed (nothing stored) or when some
/// samples were refused (the others stored; 400 keeps the sender from retrying
/// them, as Prometheus answers), 413 for a body too large once decompressed, 415
/// for an encoding or message type other than remote write 1.0's.
pub fn receive(tenant: &Tenant, headers: WriteHeaders<'_>, body: &[u8]) -> ApiResponse {
    let counters = &tenant.remote_write_counters;
    let req = match check_headers(&headers).and_then(|()| decode(body)) {
        Ok(req) => req,
        Err(resp) => {
            counters.requests_malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %String::from_utf8_lossy(&resp.body).trim_end(), "remote write request refused");
            return resp;
        }
    };
    let series = match validate(req) {
        Ok(s) => s,
        Err(msg) => {
            counters.requests_malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %msg, "remote write request refused");
            return plain(400, &msg);
        }
    };
    let outcome = tenant.append_pushed(&series);
    if outcome.refused == 0 {
        return ApiResponse {
            status: 204,
            content_type: "text/plain; charset=utf-8",
            body: Vec::new(),
        };
    }
    let msg = refused_message(&outcome);
    tracing::warn!(num_dropped = outcome.refused, error = %msg, "remote write samples refused");
    plain(400, &msg)
}

/// What was refused, by kind, and the first refused sample.
fn refused_message(o: &PushOutcome) -> String {
    let mut kinds = Vec::new();
    for (n, what) in [
        (o.out_of_order, "out of order"),
        (
            o.duplicates,
            "duplicate (another value at a stored timestamp)",
        ),
        (
            o.out_of_bounds,
            "out of bounds (older than the head's lower bound)",
        ),
        (
            o.too_far_ahead,
            "too far in the future (more than 10m after now)",
        ),
    ] {
        if n > 0 {
            kinds.push(format!("{n} {what}"));
        }
    }
    let first = match &o.first_refused {
        Some((l, t)) => format!("; first: {} at {t}", clip(l.to_string())),
        None => String::new(),
    };
    format!(
        "remote write: {} of the request's samples not stored ({}){first}; the others were stored",
        o.refused,
        kinds.join(", ")
    )
}

/// An error answered as Prometheus's `http.Error` does: the message as plain text.
fn plain(status: u16, msg: &str) -> ApiResponse {
    ApiResponse {
        status,
        content_type: "text/plain; charset=utf-8",
        body: format!("{msg}\n").into_bytes(),
    }
}

/// No header is required (Prometheus 2.42 checks none); one that names something
/// other than remote write 1.0 is refused rather than misread.
fn check_headers(h: &WriteHeaders<'_>) -> Result<(), ApiResponse> {
    if let Some(enc) = h.content_encoding {
        if !enc.trim().eq_ignore_ascii_case("snappy") {
            return Err(plain(
                415,
                &format!("remote write: unsupported Content-Encoding {}: the body must be snappy-compressed (block format)", go_quote(enc)),
            ));
        }
    }
    if let Some(ct) = h.content_type {
        let mut parts = ct.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        if !media.eq_ignore_ascii_case("application/x-protobuf") {
            return Err(plain(
                415,
                &format!(
                    "remote write: unsupported Content-Type {}: expected application/x-protobuf",
                    go_quote(ct)
                ),
            ));
        }
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                let v = v.trim().trim_matches('"');
                if k.trim().eq_ignore_ascii_case("proto") && v != "prometheus.WriteRequest" {
                    return Err(plain(
                        415,
                        &format!("remote write: unsupported message type proto={v}: only remote write 1.0 (prometheus.WriteRequest) is accepted"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Snappy block decompression, bounded before allocating, then the protobuf.
fn decode(body: &[u8]) -> Result<WriteRequest, ApiResponse> {
    let len = snap::raw::decompress_len(body).map_err(|e| {
        plain(
            400,
            &format!("remote write: the body is not snappy block-compressed data: {e}"),
        )
    })?;
    if len > MAX_DECODED_BYTES {
        return Err(plain(
            413,
            &format!("remote write: the body would decompress to {len} bytes, more than the limit of {MAX_DECODED_BYTES}; send smaller batches (queue_config.max_samples_per_send)"),
        ));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| {
            plain(
                400,
                &format!("remote write: the body is not valid snappy block-compressed data: {e}"),
            )
        })?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| {
        plain(
            400,
            &format!("remote write: the decompressed body is not a protobuf prometheus.WriteRequest: {e}"),
        )
    })
}

/// Each series' label set, checked as remote write 1.0 requires: names sorted and
/// not repeated, none empty, `__name__` present. The first bad series refuses the
/// whole request, so a sender's bug stores nothing half-way.
fn validate(req: WriteRequest) -> Result<Vec<PushedSeries>, String> {
    let mut out = Vec::with_capacity(req.timeseries.len());
    // Metadata is not kept: `/api/v1/metadata` answers from what targets expose.
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        let problem = series_problem(&ts.labels).or_else(|| {
            (!ts.histograms.is_empty())
                .then(|| "it carries native histograms, which arrowmon does not store".to_string())
        });
        if let Some(p) = problem {
            return Err(format!(
                "remote write: timeseries {i} {}: {p}",
                show(&ts.labels)
            ));
        }
        out.push(PushedSeries {
            labels: labels_of(&ts.labels),
            samples: ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
            exemplars: ts
                .exemplars
                .iter()
                .map(|e| Exemplar {
                    labels: labels_of(&e.labels),
                    value: e.value,
                    timestamp_ms: e.timestamp,
                })
                .collect(),
        });
    }
    Ok(out)
}

fn series_problem(labels: &[prompb::Label]) -> Option<String> {
    for (k, l) in labels.iter().enumerate() {
        if l.name.is_empty() {
            return Some(format!("label {k} has an empty name"));
        }
        if let Some(prev) = k.checked_sub(1).map(|p| &labels[p]) {
            if prev.name == l.name {
                return Some(format!(
                    "label name {} appears twice",
                    clip(go_quote(&l.name))
                ));
            }
            if prev.name > l.name {
                return Some(format!(
                    "labels are not sorted by name: {} comes before {}",
                    clip(go_quote(&prev.name)),
                    clip(go_quote(&l.name))
                ));
            }
        }
    }
    let has_name = labels
        .iter()
        .any(|l| l.name == METRIC_NAME && !l.value.is_empty());
    (!has_name).then(|| format!("no metric name (label {METRIC_NAME})"))
}

/// The most of a series' labels a message shows: a hostile request may hold
/// megabytes of labels, which must not come back in the answer and the log.
const SHOWN_LABEL_CHARS: usize = 1024;

/// The labels as sent, for messages (before empty values are dropped).
fn show(labels: &[prompb::Label]) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|l| format!("{}={}", l.name, go_quote(&l.value)))
        .collect();
    clip(format!("{{{}}}", inner.join(", ")))
}

/// `text` cut to [`SHOWN_LABEL_CHARS`] characters.
fn clip(text: String) -> String {
    match text.char_indices().nth(SHOWN_LABEL_CHARS) {
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], text.len()),
        None => text,
    }
}

/// A label set; an empty value means an absent label, as in Prometheus.
fn labels_of(labels: &[prompb::Label]) -> Labels {
    Labels::new(
        labels
            .iter()
            .map(|l| Label::new(l.name.as_str(), l.value.as_str()))
            .collect(),
    )
}
