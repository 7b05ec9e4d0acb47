//! Grafana data frames, encoded as Arrow IPC files the way Grafana's Go SDK does:
//! frame `name`, `refId` and `meta` (JSON) in the schema metadata; field `name`,
//! `labels` and `config` (JSON) in each field's metadata; times as
//! `Timestamp(ns)`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow_schema::{ArrowError, DataType, Field as ArrowField, Schema, TimeUnit};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    /// Milliseconds since the epoch; written as nanoseconds.
    Time(Vec<i64>),
    Float(Vec<f64>),
    /// Nullable floats (table frames where a series has no value at a row).
    NullableFloat(Vec<Option<f64>>),
    String(Vec<String>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Time(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::NullableFloat(v) => v.len(),
            Column::String(v) => v.len(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub config: Option<Value>,
    pub values: Column,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Frame {
    pub name: String,
    pub ref_id: String,
    pub meta: Option<Value>,
    pub fields: Vec<Field>,
}

impl Frame {
    /// Encodes the frame as an Arrow IPC file.
    pub fn to_arrow_ipc(&self) -> Result<Vec<u8>, ArrowError> {
        let rows = self.fields.first().map(|f| f.values.len()).unwrap_or(0);
        if let Some(f) = self.fields.iter().find(|f| f.values.len() != rows) {
            return Err(ArrowError::InvalidArgumentError(format!(
                "frame {:?}: field {:?} has {} rows, expected {rows}",
                self.name,
                f.name,
                f.values.len()
            )));
        }
        let mut arrow_fields = Vec::with_capacity(self.fields.len());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            let mut md = HashMap::new();
            md.insert("name".to_string(), f.name.clone());
            if let Some(l) = &f.labels {
                md.insert(
                    "labels".to_string(),
                    serde_json::to_string(l).unwrap_or_default(),
                );
            }
            if let Some(c) = &f.config {
                md.insert("config".to_string(), c.to_string());
            }
            let (data_type, nullable, array): (DataType, bool, ArrayRef) = match &f.values {
                Column::Time(ms) => (
                    DataType::Timestamp(TimeUnit::Nanosecond, None),
                    false,
                    Arc::new(TimestampNanosecondArray::from(
                        ms.iter()
                            .map(|t| t.saturating_mul(1_000_000))
                            .collect::<Vec<_>>(),
                    )),
                ),
                Column::Float(v) => (
                    DataType::Float64,
                    false,
                    Arc::new(Float64Array::from(v.clone())),
                ),
                Column::NullableFloat(v) => (
                    DataType::Float64,
                    true,
                    Arc::new(Float64Array::from(v.clone())),
                ),
                Column::String(v) => (
                    DataType::Utf8,
                    false,
                    Arc::new(StringArray::from(v.clone())),
                ),
            };
            arrow_fields.push(ArrowField::new(&f.name, data_type, nullable).with_metadata(md));
            columns.push(array);
        }
        let mut md = HashMap::new();
        md.insert("name".to_string(), self.name.clone());
        md.insert("refId".to_string(), self.ref_id.clone());
        if let Some(m) = &self.meta {
            md.insert("meta".to_string(), m.to_string());
        }
        let schema = Arc::new(Schema::new(arrow_fields).with_metadata(md));
        let mut buf = Vec::new();
        {
            let mut w = arrow_ipc::writer::FileWriter::try_new(&mut buf, &schema)?;
            let batch = if columns.is_empty() {
                RecordBatch::new_empty(schema.clone())
            } else {
                RecordBatch::try_new(schema.clone(), columns)?
            };
            w.write(&batch)?;
            w.finish()?;
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    #[test]
    fn frame_round_trips_with_grafana_metadata() {
        let frame = Frame {
            name: "up".into(),
            ref_id: "A".into(),
            meta: Some(serde_json::json!({"type": "timeseries-multi"})),
            fields: vec![
                Field {
                    name: "Time".into(),
                    labels: None,
                    config: Some(serde_json::json!({"interval": 15000})),
                    values: Column::Time(vec![1000, 2000]),
                },
                Field {
                    name: "Value".into(),
                    labels: Some(BTreeMap::from([("job".to_string(), "node".to_string())])),
                    config: None,
                    values: Column::Float(vec![1.0, 0.0]),
                },
            ],
        };
        let bytes = frame.to_arrow_ipc().unwrap();
        let reader =
            arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let schema = reader.schema();
        assert_eq!(schema.metadata()["refId"], "A");
        assert_eq!(schema.metadata()["name"], "up");
        assert!(schema.metadata()["meta"].contains("timeseries-multi"));
        let time = schema.field(0);
        assert_eq!(
            time.data_type(),
            &DataType::Timestamp(TimeUnit::Nanosecond, None)
        );
        assert_eq!(time.metadata()["config"], r#"{"interval":15000}"#);
        assert_eq!(schema.field(1).metadata()["labels"], r#"{"job":"node"}"#);
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(batches[0].num_rows(), 2);
        let t = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        assert_eq!(t.value(1), 2_000_000_000);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn mismatched_lengths_are_an_error_not_a_panic() {
        let frame = Frame {
            fields: vec![
                Field {
                    name: "a".into(),
                    labels: None,
                    config: None,
                    values: Column::Float(vec![1.0]),
                },
                Field {
                    name: "b".into(),
                    labels: None,
                    config: None,
                    values: Column::Float(vec![]),
                },
            ],
            ..Default::default()
        };
        assert!(frame.to_arrow_ipc().is_err());
    }
}
