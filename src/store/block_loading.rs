//! The store's blocks as directories: loading and verifying them at open (damaged
//! ones moved aside, leftovers of a finished compaction deleted), picking up blocks
//! `import` wrote while the store is open, and naming new ones.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::block::{Block, BlockError, BlockOrigin};
use super::head::StoreState;
use super::import_writer::unused_block_name;
use super::{io_err, lock, read, write, StoreError};

impl StoreState {
    fn move_aside(&self, path: &Path, why: &str) {
        let damaged = self.dir.join("damaged");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("block")
            .to_string();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let target = damaged.join(format!("{name}.{stamp}"));
        let res = std::fs::create_dir_all(&damaged).and_then(|()| std::fs::rename(path, &target));
        match res {
            Ok(()) => tracing::error!(
                block = %path.display(), moved_to = %target.display(), reason = %why,
                "damaged block moved aside; the rest of the store stays readable"
            ),
            Err(e) => tracing::error!(
                block = %path.display(), reason = %why, error = %e,
                "damaged block could not be moved aside; it is ignored"
            ),
        }
    }

    /// Keeps a copy of a damaged WAL file in `damaged/` (once per content): replay
    /// skips the damage and goes on, and the segment itself is deleted when the head
    /// is cut, so the copy is what is left to examine.
    pub(super) fn quarantine_wal_copy(&self, path: &Path, data: &[u8]) {
        let damaged = self.dir.join("damaged");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("segment");
        let target = damaged.join(format!("wal-{name}.{:08x}", crc32fast::hash(data)));
        if target.exists() {
            return;
        }
        let res = std::fs::create_dir_all(&damaged).and_then(|()| std::fs::write(&target, data));
        match res {
            Ok(()) => tracing::error!(
                wal = %path.display(), copied_to = %target.display(),
                "damaged WAL file copied aside"
            ),
            Err(e) => tracing::error!(
                wal = %path.display(), error = %e,
                "damaged WAL file could not be copied aside"
            ),
        }
    }

    pub(super) fn load_blocks(&self) -> Result<(), StoreError> {
        let dir = &self.blocks_dir;
        let mut blocks = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                self.move_aside(&path, "half-written block (its write never finished)");
                continue;
            }
            if let Some(b) = self.open_block(&path)? {
                blocks.push(b);
            }
        }
        // Sources of a compaction that finished are leftovers of a crash: drop them.
        let sources: HashSet<String> = blocks
            .iter()
            .flat_map(|b| b.meta.sources.iter().cloned())
            .collect();
        blocks.retain(|b| {
            if sources.contains(&b.name) {
                tracing::info!(block = %b.dir.display(), "deleting a block already compacted into another");
                b.delete_on_drop.store(true, Ordering::Release);
                false
            } else {
                true
            }
        });
        blocks.sort_by_key(|b| b.meta.range_start);
        lock(&self.block_names).extend(sources);
        // Blocks may overlap (imported ones); reads merge them. The head starts where
        // the blocks cut from it end.
        let head_end = blocks
            .iter()
            .filter(|b| b.meta.origin == BlockOrigin::Head)
            .map(|b| b.meta.range_end)
            .max();
        if let Some(end) = head_end {
            self.min_valid_t.store(end, Ordering::Release);
            self.head_min_t.store(end, Ordering::Release);
        }
        if let Some(maxt) = blocks.iter().map(|b| b.meta.maxt).max() {
            self.max_t.store(maxt, Ordering::Release);
        }
        *write(&self.blocks) = blocks;
        Ok(())
    }

    /// Points a new block's postings at those of a live block with the same series
    /// (the newest first: consecutive blocks of a steady set of series have them), so
    /// each live block holds its own series table but not its own postings.
    pub(super) fn share_postings(&self, block: &mut Block) {
        for other in read(&self.blocks).iter().rev() {
            if block.share_postings(other) {
                return;
            }
        }
    }

    /// Opens one block directory and notes its name; a damaged block is moved aside
    /// (`None`), a block of an unknown format version refuses the store.
    fn open_block(&self, path: &Path) -> Result<Option<Arc<Block>>, StoreError> {
        if !path.is_dir() {
            return Ok(None);
        }
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            lock(&self.block_names).insert(name.to_string());
        }
        let mut intern = |p: &[(&str, &str)]| self.intern_pairs(p);
        match Block::open(path, &mut intern) {
            Ok(mut b) => {
                self.share_postings(&mut b);
                Ok(Some(Arc::new(b)))
            }
            Err(e @ BlockError::UnknownVersion { .. }) => Err(e.into()),
            Err(e) => {
                self.move_aside(path, &e.to_string());
                Ok(None)
            }
        }
    }

    /// Picks up blocks that `import` wrote into the blocks directory while the store
    /// was open.
    pub(super) fn load_new_blocks(&self) -> Result<(), StoreError> {
        let dir = &self.blocks_dir;
        let mut fresh: Vec<PathBuf> = {
            let names = lock(&self.block_names);
            std::fs::read_dir(dir)
                .map_err(io_err(dir))?
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| !n.ends_with(".tmp") && !names.contains(n))
                })
                .map(|e| e.path())
                .collect()
        };
        fresh.sort();
        for path in fresh {
            let Some(b) = self.open_block(&path)? else {
                continue;
            };
            tracing::info!(
                block = %b.dir.display(), series = b.meta.num_series, samples = b.meta.num_samples,
                "new block picked up"
            );
            self.max_t.fetch_max(b.meta.maxt, Ordering::AcqRel);
            let mut blocks = write(&self.blocks);
            blocks.push(b);
            blocks.sort_by_key(|b| b.meta.range_start);
        }
        Ok(())
    }

    /// A block directory name for `[start, end)` that no block has had.
    pub(super) fn fresh_block_name(&self, start: i64, end: i64) -> String {
        let mut names = lock(&self.block_names);
        let name = unused_block_name(&self.blocks_dir, format!("b{start}_{end}"), |n| {
            names.contains(n)
        });
        names.insert(name.clone());
        name
    }
}
