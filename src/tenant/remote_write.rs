//! Samples pushed to a tenant by remote write (`serve --enable-remote-write-receiver`;
//! the protocol is `api/remote_write.rs`): appended as scraped ones are, with the
//! same refusals, and counted.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Tenant;
use crate::model::exemplar::Exemplar;
use crate::model::labels::Labels;
use crate::scrape::now_ms;
use crate::store::{RefSample, SeriesRef, MAX_AHEAD_MS};

/// Counts for the process metrics; the store counts its own refusals too.
#[derive(Debug, Default)]
pub struct RemoteWriteCounters {
    pub samples_appended: AtomicU64,
    /// Samples not stored: out of order, duplicate, out of bounds, too far ahead.
    pub samples_refused: AtomicU64,
    /// Requests refused whole for a malformed body or headers.
    pub requests_malformed: AtomicU64,
}

/// One series of a request, its labels already checked.
pub struct PushedSeries {
    pub labels: Labels,
    /// (timestamp ms, value), as sent.
    pub samples: Vec<(i64, f64)>,
    pub exemplars: Vec<Exemplar>,
}

/// What became of a request's samples.
#[derive(Debug, Default)]
pub struct PushOutcome {
    pub appended: u64,
    pub refused: u64,
    pub too_far_ahead: u64,
    pub out_of_order: u64,
    pub out_of_bounds: u64,
    pub duplicates: u64,
    /// The first refused sample: series, timestamp.
    pub first_refused: Option<(Labels, i64)>,
}

impl PushOutcome {
    fn note(&mut self, labels: &Labels, t: i64) {
        self.refused += 1;
        if self.first_refused.is_none() {
            self.first_refused = Some((labels.clone(), t));
        }
    }
}

impl Tenant {
    /// Appends pushed samples in one store append (one WAL record) and keeps their
    /// exemplars. A sample more than [`MAX_AHEAD_MS`] after now is refused before
    /// the store, as the scrape path refuses it; the store refuses the rest by its
    /// rules. Exemplars are kept whatever became of the samples, and a refused one
    /// is only counted by the exemplar storage, as in Prometheus.
    pub fn append_pushed(&self, series: &[PushedSeries]) -> PushOutcome {
        let mut out = PushOutcome::default();
        let max_t = now_ms().saturating_add(MAX_AHEAD_MS);
        let mut batch: Vec<RefSample> = Vec::new();
        for s in series {
            // Resolved only for a sample the store will see: a series whose every
            // sample is too far ahead is not created.
            let mut series_ref: Option<SeriesRef> = None;
            for &(t, v) in &s.samples {
                if t > max_t {
                    out.too_far_ahead += 1;
                    out.note(&s.labels, t);
                    continue;
                }
                let r = series_ref.get_or_insert_with(|| self.store.series_ref(&s.labels).0);
                batch.push(RefSample {
                    series: r.clone(),
                    timestamp_ms: t,
                    value: v,
                });
            }
        }
        let mut refused = Vec::new();
        let stored = self.store.append_refs_reporting(&batch, &mut refused);
        out.appended = stored.appended;
        out.out_of_order = stored.out_of_order.saturating_sub(stored.out_of_bounds);
        out.out_of_bounds = stored.out_of_bounds;
        out.duplicates = stored.duplicates;
        for &i in &refused {
            if let Some(s) = batch.get(i) {
                out.note(&s.series.labels(), s.timestamp_ms);
            }
        }
        let exemplars = self.store.exemplars();
        for s in series {
            for e in &s.exemplars {
                if let Err(err) = exemplars.add(&s.labels, e.clone(), true) {
                    tracing::debug!(series = %s.labels, error = %err, "remote write exemplar not stored");
                }
            }
        }
        let c = &self.remote_write_counters;
        c.samples_appended
            .fetch_add(out.appended, Ordering::Relaxed);
        c.samples_refused.fetch_add(out.refused, Ordering::Relaxed);
        out
    }
}
