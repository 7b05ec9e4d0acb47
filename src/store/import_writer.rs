//! Writing blocks under a temporary name and renaming them into place, and the
//! backfill that writes a block of imported samples without opening the store.

use std::path::{Path, PathBuf};

use crate::model::labels::Labels;

use super::block::{BlockError, BlockMeta, BlockOrigin, BlockWriter};
use super::head_read::merge_overlapping;
use super::{check_version, io_err, wal, StoreError};

/// Backfill: writes one time range of samples as a block of the store in `dir`
/// (creating the store if new) without opening it, so it may run while `serve` has
/// the store open; that store picks the block up at its next maintenance pass.
/// Imported blocks may overlap the head and other blocks: reads merge them.
///
/// Series may come in any order, their samples in any time order; samples outside
/// `[range_start, range_end)` are not accepted. Of samples with the same series and
/// timestamp the first is kept. Returns the block's meta (`None` when there was
/// nothing to write) and how many duplicates were dropped.
pub fn write_imported_block(
    dir: &Path,
    range_start: i64,
    range_end: i64,
    mut series: Vec<(Labels, Vec<i64>, Vec<f64>)>,
) -> Result<(Option<BlockMeta>, u64), StoreError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    check_version(dir)?;
    let blocks_dir = dir.join("blocks");
    std::fs::create_dir_all(&blocks_dir).map_err(io_err(&blocks_dir))?;
    series.sort_by(|a, b| a.0.cmp(&b.0));
    // The same label set twice (spelled differently in the input) is one series.
    series.dedup_by(|next, kept| {
        if next.0 != kept.0 {
            return false;
        }
        kept.1.append(&mut next.1);
        kept.2.append(&mut next.2);
        true
    });
    // The time keeps the name apart from the names of blocks compacted away, which a
    // store that is open may still list as sources.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let base = format!("b{range_start}_{range_end}_import{stamp}");
    let name = unused_block_name(&blocks_dir, base, |_| false);
    let fin = blocks_dir.join(&name);
    let pending = PendingBlock::new(&blocks_dir, &name);
    let mut writer = BlockWriter::create(&pending.tmp)?;
    let mut duplicates = 0u64;
    for (labels, mut ts, mut vs) in series {
        if let Some(&t) = ts.iter().find(|&&t| t < range_start || t >= range_end) {
            return Err(StoreError::Block(BlockError::Corrupt {
                path: fin,
                reason: format!(
                    "sample of {labels} at {t} lies outside the block range [{range_start}, {range_end})"
                ),
            }));
        }
        let before = ts.len();
        merge_overlapping(&mut ts, &mut vs);
        duplicates += (before - ts.len()) as u64;
        writer.push(&labels, &ts, &vs)?;
    }
    if writer.num_series() == 0 {
        return Ok((None, duplicates));
    }
    let meta = writer.finish(range_start, range_end, 0, Vec::new(), BlockOrigin::Import)?;
    pending.install(&fin)?;
    Ok((Some(meta), duplicates))
}

/// `base`, or `base_2`, `base_3`… : the first name with no directory (finished or
/// half-written) in `blocks_dir` that `taken` does not claim.
pub(super) fn unused_block_name(
    blocks_dir: &Path,
    base: String,
    taken: impl Fn(&str) -> bool,
) -> String {
    let mut name = base.clone();
    let mut n = 1;
    while taken(&name)
        || blocks_dir.join(&name).exists()
        || blocks_dir.join(format!("{name}.tmp")).exists()
    {
        n += 1;
        name = format!("{base}_{n}");
    }
    name
}

/// A block being written under a temporary name (`<name>.tmp`): removed when dropped
/// before [`install`](Self::install) renamed it into place, so a failed or empty
/// write leaves nothing behind.
pub(super) struct PendingBlock {
    pub(super) tmp: PathBuf,
    installed: bool,
}

impl PendingBlock {
    pub(super) fn new(blocks_dir: &Path, name: &str) -> PendingBlock {
        PendingBlock {
            tmp: blocks_dir.join(format!("{name}.tmp")),
            installed: false,
        }
    }

    /// Renames the finished block to `fin`, durably.
    pub(super) fn install(mut self, fin: &Path) -> Result<(), StoreError> {
        std::fs::rename(&self.tmp, fin).map_err(io_err(fin))?;
        self.installed = true;
        if let Some(dir) = fin.parent() {
            wal::sync_dir(dir).map_err(io_err(dir))?;
        }
        Ok(())
    }
}

impl Drop for PendingBlock {
    fn drop(&mut self) {
        if !self.installed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::write_imported_block;
    use crate::store::tests::series_of;

    #[test]
    fn a_failed_or_empty_import_leaves_no_block_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            write_imported_block(dir.path(), 0, 1000, vec![series_of("a", &[500, 1000], 1.0)])
                .unwrap_err()
                .to_string();
        assert!(err.contains("outside the block range [0, 1000)"), "{err}");
        let (meta, _) = write_imported_block(dir.path(), 0, 1000, Vec::new()).unwrap();
        assert!(meta.is_none());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("blocks"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
