//! Per-family metadata (HELP, TYPE, UNIT) for the query editor and the metadata API.

use std::collections::HashMap;

use super::{Entry, MetricType};

/// What a body says about one metric family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricMetadata {
    /// The family name as written in the HELP/TYPE/UNIT line.
    pub family: String,
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

/// Collects [`MetricMetadata`] from parsed entries, one record per family in the
/// order families first appear; a later line for the same family overrides that
/// field (as Prometheus's scrape cache does).
#[derive(Clone, Debug, Default)]
pub struct MetadataCollector {
    families: Vec<MetricMetadata>,
    index: HashMap<String, usize>,
}

impl MetadataCollector {
    pub fn new() -> MetadataCollector {
        MetadataCollector::default()
    }

    /// Records the entry if it is metadata; samples are ignored.
    pub fn observe(&mut self, entry: &Entry<'_>) {
        let (family, apply): (&str, &dyn Fn(&mut MetricMetadata)) = match entry {
            Entry::Help { family, help } => (family, &|m| m.help = help.to_string()),
            Entry::Type { family, kind } => (family, &|m| m.kind = *kind),
            Entry::Unit { family, unit } => (family, &|m| m.unit = unit.to_string()),
            Entry::Sample(_) => return,
        };
        let i = match self.index.get(family) {
            Some(&i) => i,
            None => {
                self.families.push(MetricMetadata {
                    family: family.to_string(),
                    ..MetricMetadata::default()
                });
                self.index
                    .insert(family.to_string(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        apply(&mut self.families[i]);
    }

    pub fn get(&self, family: &str) -> Option<&MetricMetadata> {
        self.index.get(family).map(|&i| &self.families[i])
    }

    pub fn len(&self) -> usize {
        self.families.len()
    }

    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    pub fn finish(self) -> Vec<MetricMetadata> {
        self.families
    }
}
