//! The neutral bottom layer every other module shares, as Prometheus's `model/` and
//! `storage/` are: label sets and matchers, the read interface a store offers and
//! the query engine evaluates over, the special NaN values of samples, and Go's
//! number and time text forms, which Prometheus's formats and API are written in.
//!
//! It imports nothing of the crate but [`crate::par`].

pub mod duration;
pub mod exemplar;
pub mod labels;
pub mod number;
pub mod storage;
pub mod time;
pub mod value;

pub use exemplar::{Exemplar, ExemplarSeries};
pub use labels::{Label, Labels, MatchKind, Matcher, METRIC_NAME};
pub use storage::{
    LabelsView, MemStorage, Points, SelectError, SelectFn, Series, Storage, StorageError,
};
pub use value::{is_stale_nan, normal_nan, stale_nan, NORMAL_NAN_BITS, STALE_NAN_BITS};
