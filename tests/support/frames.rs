//! Arrow frames as the plugin returns them, decoded with arrow-rs and, as an
//! independent Arrow implementation, with pyarrow.

use std::collections::BTreeMap;
use std::process::Command;

use arrow_array::{Array, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use serde_json::Value;

/// A decoded frame: what the harness asserts on.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedFrame {
    pub name: String,
    pub ref_id: String,
    pub meta: Value,
    pub fields: Vec<DecodedField>,
    pub rows: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecodedField {
    pub name: String,
    pub arrow_type: String,
    pub labels: BTreeMap<String, String>,
    pub config: Value,
    /// Times in ms for time fields, values for float fields.
    pub numbers: Vec<f64>,
    /// Values of string fields.
    pub strings: Vec<String>,
}

/// Decodes with arrow-rs.
pub fn decode_frame(bytes: &[u8]) -> DecodedFrame {
    let reader = arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
        .expect("frame is an Arrow IPC file");
    let schema = reader.schema();
    let md = schema.metadata();
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("record batch")).collect();
    let mut fields = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        let mut numbers = Vec::new();
        let mut strings = Vec::new();
        for b in &batches {
            let col = b.column(i);
            if let Some(t) = col.as_any().downcast_ref::<TimestampNanosecondArray>() {
                numbers.extend(t.values().iter().map(|v| (*v / 1_000_000) as f64));
            } else if let Some(v) = col.as_any().downcast_ref::<Float64Array>() {
                numbers.extend(v.values().iter().copied());
            } else if let Some(v) = col.as_any().downcast_ref::<StringArray>() {
                strings.extend(v.iter().map(|s| s.unwrap_or_default().to_string()));
            }
        }
        fields.push(DecodedField {
            name: f.name().clone(),
            arrow_type: format!("{:?}", f.data_type()),
            labels: f
                .metadata()
                .get("labels")
                .map(|l| serde_json::from_str(l).expect("labels JSON"))
                .unwrap_or_default(),
            config: f
                .metadata()
                .get("config")
                .map(|c| serde_json::from_str(c).expect("config JSON"))
                .unwrap_or(Value::Null),
            numbers,
            strings,
        });
    }
    DecodedFrame {
        name: md.get("name").cloned().unwrap_or_default(),
        ref_id: md.get("refId").cloned().unwrap_or_default(),
        meta: md
            .get("meta")
            .map(|m| serde_json::from_str(m).expect("meta JSON"))
            .unwrap_or(Value::Null),
        fields,
        rows: batches.iter().map(|b| b.num_rows()).sum(),
    }
}

const PYARROW_DECODER: &str = r#"
import json, sys
import pyarrow as pa
out = []
for path in sys.argv[1:]:
    with pa.OSFile(path, 'rb') as f:
        r = pa.ipc.open_file(f)
        t = r.read_all()
    md = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()}
    fields = []
    for i, fld in enumerate(t.schema):
        fmd = {k.decode(): v.decode() for k, v in (fld.metadata or {}).items()}
        col = t.column(i)
        if pa.types.is_timestamp(fld.type):
            nums = [v // 1_000_000 for v in col.cast(pa.int64()).to_pylist()]
        elif pa.types.is_floating(fld.type):
            # NaN as null: JSON has no NaN.
            nums = [None if v is None or v != v else v for v in col.to_pylist()]
        else:
            nums = []
        strs = col.to_pylist() if pa.types.is_string(fld.type) else []
        fields.append({"name": fld.name, "type": str(fld.type), "meta": fmd, "numbers": nums,
                       "strings": strs})
    out.append({"meta": md, "fields": fields, "rows": t.num_rows})
print(json.dumps(out))
"#;

/// Decodes the same frames with pyarrow and checks it sees what arrow-rs sees.
pub fn cross_check_with_pyarrow(frames: &[Vec<u8>], decoded: &[DecodedFrame]) {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let p = dir.path().join(format!("frame{i}.arrow"));
        std::fs::write(&p, f).unwrap();
        paths.push(p);
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(PYARROW_DECODER)
        .args(&paths)
        .output()
        .expect("run python3 (install pyarrow with scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "pyarrow could not read the frames (is pyarrow installed? scripts/install-deps.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: Vec<Value> = serde_json::from_slice(&out.stdout).expect("pyarrow output JSON");
    assert_eq!(py.len(), decoded.len());
    for (p, d) in py.iter().zip(decoded) {
        assert_eq!(
            p["rows"].as_u64().unwrap() as usize,
            d.rows,
            "row count differs"
        );
        assert_eq!(p["meta"]["refId"], Value::String(d.ref_id.clone()));
        assert_eq!(p["meta"]["name"], Value::String(d.name.clone()));
        let meta: Value =
            serde_json::from_str(p["meta"]["meta"].as_str().unwrap_or("null")).unwrap();
        assert_eq!(meta, d.meta);
        let pf = p["fields"].as_array().unwrap();
        assert_eq!(pf.len(), d.fields.len());
        for (pf, df) in pf.iter().zip(&d.fields) {
            assert_eq!(pf["name"], Value::String(df.name.clone()));
            let labels: BTreeMap<String, String> = pf["meta"]
                .get("labels")
                .map(|l| serde_json::from_str(l.as_str().unwrap()).unwrap())
                .unwrap_or_default();
            assert_eq!(labels, df.labels);
            let nums: Vec<f64> = pf["numbers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap_or(f64::NAN))
                .collect();
            assert_eq!(nums.len(), df.numbers.len());
            for (a, b) in nums.iter().zip(&df.numbers) {
                assert!(a == b || (a.is_nan() && b.is_nan()), "{a} != {b}");
            }
            let strings: Vec<String> = pf["strings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect();
            assert_eq!(strings, df.strings, "string values of {}", df.name);
            if df.arrow_type.starts_with("Timestamp") {
                assert_eq!(
                    pf["type"], "timestamp[ns]",
                    "time field must be Timestamp(ns)"
                );
            }
        }
    }
}
