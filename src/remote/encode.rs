//! Remote write 1.0 request bodies: a protobuf `WriteRequest` (`proto/remote.proto`)
//! compressed as one snappy block.
//!
//! Each series' labels are encoded once, when the sender first meets the series,
//! and copied into every request that carries its samples; a request holds one
//! `TimeSeries` per series with its samples in WAL order (Prometheus 2.42 sends a
//! `TimeSeries` per sample; receivers take both). The bytes are what prost writes
//! for the same message (the tests decode them with prost).

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use crate::model::labels::Labels;
use crate::scrape::exposition::{MetricMetadata, MetricType};

/// A series as it is sent: its labels after external labels and
/// `write_relabel_configs`, encoded as `TimeSeries.labels` fields.
#[derive(Debug)]
pub struct SentSeries {
    encoded_labels: Vec<u8>,
}

impl SentSeries {
    pub fn new(labels: &Labels) -> SentSeries {
        let mut encoded_labels = Vec::new();
        for l in labels {
            let len = string_field_len(1, &l.name) + string_field_len(2, &l.value);
            encode_key(1, WireType::LengthDelimited, &mut encoded_labels);
            encode_varint(len as u64, &mut encoded_labels);
            string_field(1, &l.name, &mut encoded_labels);
            string_field(2, &l.value, &mut encoded_labels);
        }
        SentSeries { encoded_labels }
    }
}

fn string_field_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        return 0;
    }
    prost::encoding::key_len(tag) + encoded_len_varint(s.len() as u64) + s.len()
}

/// A proto3 string field (left out when empty, as prost does).
fn string_field(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if s.is_empty() {
        return;
    }
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(s.len() as u64, buf);
    buf.extend_from_slice(s.as_bytes());
}

/// The length of a `Sample` message.
fn sample_len(t: i64, v: f64) -> usize {
    let value = if v.to_bits() == 0 { 0 } else { 9 };
    let ts = if t == 0 {
        0
    } else {
        1 + encoded_len_varint(t as u64)
    };
    value + ts
}

/// Appends one `TimeSeries` (field 1 of `WriteRequest`) holding `samples`.
pub fn put_series(series: &SentSeries, samples: &[(i64, f64)], buf: &mut Vec<u8>) {
    let samples_len: usize = samples
        .iter()
        .map(|&(t, v)| {
            let n = sample_len(t, v);
            1 + encoded_len_varint(n as u64) + n
        })
        .sum();
    encode_key(1, WireType::LengthDelimited, buf);
    encode_varint((series.encoded_labels.len() + samples_len) as u64, buf);
    buf.extend_from_slice(&series.encoded_labels);
    for &(t, v) in samples {
        encode_key(2, WireType::LengthDelimited, buf);
        encode_varint(sample_len(t, v) as u64, buf);
        if v.to_bits() != 0 {
            encode_key(1, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        if t != 0 {
            encode_key(2, WireType::Varint, buf);
            encode_varint(t as u64, buf);
        }
    }
}

/// Appends one `MetricMetadata` (field 3 of `WriteRequest`).
pub fn put_metadata(m: &MetricMetadata, buf: &mut Vec<u8>) {
    let kind = metric_type_number(m.kind);
    let len = if kind == 0 {
        0
    } else {
        1 + encoded_len_varint(kind)
    } + string_field_len(2, &m.family)
        + string_field_len(4, &m.help)
        + string_field_len(5, &m.unit);
    encode_key(3, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
    if kind != 0 {
        encode_key(1, WireType::Varint, buf);
        encode_varint(kind, buf);
    }
    string_field(2, &m.family, buf);
    string_field(4, &m.help, buf);
    string_field(5, &m.unit, buf);
}

/// `MetricMetadata.MetricType` of remote.proto.
fn metric_type_number(t: MetricType) -> u64 {
    match t {
        MetricType::Unknown => 0,
        MetricType::Counter => 1,
        MetricType::Gauge => 2,
        MetricType::Histogram => 3,
        MetricType::GaugeHistogram => 4,
        MetricType::Summary => 5,
        MetricType::Info => 6,
        MetricType::Stateset => 7,
    }
}

/// The request body as sent: one snappy block.
pub fn compress(request: &[u8]) -> Result<Vec<u8>, String> {
    snap::raw::Encoder::new()
        .compress_vec(request)
        .map_err(|e| format!("snappy: {e}"))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::prometheus as pb;

    #[test]
    fn bytes_decode_as_the_protobuf_message() {
        let a = SentSeries::new(&Labels::from_pairs([
            ("__name__", "up"),
            ("instance", "h:1"),
        ]));
        let b = SentSeries::new(&Labels::from_pairs([("__name__", "x")]));
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut buf = Vec::new();
        put_series(&a, &[(1000, 1.0), (0, 0.0), (-5, stale)], &mut buf);
        put_series(&b, &[(i64::MAX, 2.5)], &mut buf);
        put_metadata(
            &MetricMetadata {
                family: "up".into(),
                kind: MetricType::Gauge,
                help: "Up.".into(),
                unit: String::new(),
            },
            &mut buf,
        );
        let body = compress(&buf).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = pb::WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(req.timeseries.len(), 2);
        let ts = &req.timeseries[0];
        let names: Vec<_> = ts
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(names, [("__name__", "up"), ("instance", "h:1")]);
        assert_eq!(ts.samples.len(), 3);
        assert_eq!((ts.samples[0].timestamp, ts.samples[0].value), (1000, 1.0));
        assert_eq!((ts.samples[1].timestamp, ts.samples[1].value), (0, 0.0));
        assert_eq!(ts.samples[2].timestamp, -5);
        assert_eq!(ts.samples[2].value.to_bits(), stale.to_bits());
        let s = &req.timeseries[1].samples[0];
        assert_eq!((s.timestamp, s.value), (i64::MAX, 2.5));
        assert_eq!(req.metadata.len(), 1);
        assert_eq!(req.metadata[0].metric_family_name, "up");
        assert_eq!(req.metadata[0].help, "Up.");
        assert_eq!(req.metadata[0].r#type, 2);
        // The same message encoded by prost gives the same bytes.
        assert_eq!(req.encode_to_vec(), raw);
    }
}
