//! The store's settings as a user writes them: `serve`'s flags, grafana.ini's plugin
//! section, a datasource's `jsonData`. Each source sets some of them; what none sets
//! keeps the store's default. The store's own options type is assembled from these
//! by the tenant, so that configuration knows nothing of the store.

use std::time::Duration;

/// Store settings, each `None` where its source leaves it unset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreSettings {
    /// How often the WAL is fsynced.
    pub wal_sync_interval: Option<Duration>,
    /// The time range of a block cut from the head.
    pub block_range: Option<Duration>,
    /// How long samples are kept (zero: forever).
    pub retention_time: Option<Duration>,
    /// The most disk blocks may take (zero: no limit).
    pub retention_size_bytes: Option<u64>,
    /// How far behind the newest sample an out-of-order sample is still accepted.
    pub out_of_order_window: Option<Duration>,
}

impl StoreSettings {
    /// These settings, with what they leave unset taken from `base`.
    pub fn or(self, base: &StoreSettings) -> StoreSettings {
        StoreSettings {
            wal_sync_interval: self.wal_sync_interval.or(base.wal_sync_interval),
            block_range: self.block_range.or(base.block_range),
            retention_time: self.retention_time.or(base.retention_time),
            retention_size_bytes: self.retention_size_bytes.or(base.retention_size_bytes),
            out_of_order_window: self.out_of_order_window.or(base.out_of_order_window),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_win_over_the_base() {
        let base = StoreSettings {
            wal_sync_interval: Some(Duration::from_secs(5)),
            retention_time: Some(Duration::from_secs(60)),
            ..StoreSettings::default()
        };
        let own = StoreSettings {
            retention_time: Some(Duration::from_secs(7)),
            ..StoreSettings::default()
        };
        let got = own.or(&base);
        assert_eq!(got.wal_sync_interval, Some(Duration::from_secs(5)));
        assert_eq!(got.retention_time, Some(Duration::from_secs(7)));
        assert_eq!(got.block_range, None);
    }
}
