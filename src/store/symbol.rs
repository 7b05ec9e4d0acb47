//! Interned label strings and label sets for the series of the head and the blocks.
//!
//! Every distinct label string is one `Arc<str>` store-wide. A label set is a
//! [`SeriesLabels`]: thin pointers to those strings, 8 bytes each (a label costs 16
//! bytes instead of the 32 of a [`Label`]'s two fat `Arc<str>`s), and every distinct
//! label set is itself one shared allocation: the head's series and every block that
//! holds the series point at the same one, so a block's series table costs a pointer
//! per series for labels, not a copy. [`Labels`] are built from them on demand.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::model::labels::{Label, Labels};

/// One interned string: a thin pointer to the shared `Arc<str>`.
#[derive(Clone)]
pub struct Symbol(Arc<Arc<str>>);

impl Symbol {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn shared(&self) -> &Arc<str> {
        &self.0
    }
}

impl Borrow<str> for Symbol {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Symbol {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.as_str() == other.as_str()
    }
}

impl Eq for Symbol {}

impl Hash for Symbol {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

/// The store-wide sets of label strings and of label sets.
#[derive(Default)]
pub struct Interner {
    set: HashSet<Symbol>,
    series: HashSet<SeriesLabels>,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn string(&mut self, s: &str) -> Arc<str> {
        match self.set.get(s) {
            Some(sym) => sym.shared().clone(),
            None => {
                let sym = Symbol(Arc::new(Arc::from(s)));
                self.set.insert(sym.clone());
                sym.shared().clone()
            }
        }
    }

    fn symbol_of_str(&mut self, s: &str) -> Symbol {
        match self.set.get(s) {
            Some(sym) => sym.clone(),
            None => {
                let sym = Symbol(Arc::new(Arc::from(s)));
                self.set.insert(sym.clone());
                sym
            }
        }
    }

    /// The symbol of `s`; a string seen for the first time is kept as given.
    fn symbol(&mut self, s: &Arc<str>) -> Symbol {
        match self.set.get(&**s) {
            Some(sym) => sym.clone(),
            None => {
                let sym = Symbol(Arc::new(s.clone()));
                self.set.insert(sym.clone());
                sym
            }
        }
    }

    /// A label set given as (name, value) pairs already in [`Labels`]' order (as a
    /// block stores them).
    pub fn series_labels_from_pairs(&mut self, pairs: &[(&str, &str)]) -> SeriesLabels {
        let symbols: Vec<Symbol> = pairs
            .iter()
            .flat_map(|(n, v)| [self.symbol_of_str(n), self.symbol_of_str(v)])
            .collect();
        self.shared_set(symbols)
    }

    pub fn series_labels(&mut self, labels: &Labels) -> SeriesLabels {
        let symbols: Vec<Symbol> = labels
            .iter()
            .flat_map(|l| [self.symbol(&l.name), self.symbol(&l.value)])
            .collect();
        self.shared_set(symbols)
    }

    fn shared_set(&mut self, symbols: Vec<Symbol>) -> SeriesLabels {
        let set = SeriesLabels(ThinSymbols::new(symbols));
        match self.series.get(&set) {
            Some(shared) => shared.clone(),
            None => {
                self.series.insert(set.clone());
                set
            }
        }
    }

    /// Forgets the label sets and strings nothing else holds any more (neither a
    /// head series nor a block).
    pub fn purge(&mut self) {
        self.series.retain(|s| s.0.strong_count() > 1);
        self.set
            .retain(|s| Arc::strong_count(&s.0) > 1 || Arc::strong_count(s.shared()) > 1);
    }
}

/// A series' label set: names and values alternating, in [`Labels`]' order, and
/// ordered as those `Labels` are. Cloning shares it. Equality and hashing go by the
/// identity of the interned strings: equal sets are made of the same strings.
///
/// A thin pointer (8 bytes, where an `Arc<[Symbol]>` takes 16): the head, the
/// interner and every live block hold one per series, so the 8 bytes count several
/// times over. The allocation is a count and a length followed by the symbols
/// ([`ThinSymbols`]).
#[derive(Clone)]
pub struct SeriesLabels(ThinSymbols);

impl PartialEq for SeriesLabels {
    fn eq(&self, other: &Self) -> bool {
        self.0.ptr_eq(&other.0)
            || (self.0.len() == other.0.len()
                && self
                    .0
                    .iter()
                    .zip(other.0.iter())
                    .all(|(a, b)| Arc::ptr_eq(&a.0, &b.0)))
    }
}

impl Eq for SeriesLabels {}

impl Hash for SeriesLabels {
    fn hash<H: Hasher>(&self, h: &mut H) {
        for s in self.0.iter() {
            h.write_usize(Arc::as_ptr(&s.0) as usize);
        }
    }
}

/// A shared, immutable `[Symbol]` behind one thin pointer: like `Arc<[Symbol]>`,
/// with the length in the allocation instead of in the pointer (and no weak count).
pub struct ThinSymbols(std::ptr::NonNull<ThinHeader>);

/// 8 bytes, so a label set of 6 labels (12 symbols) is a 104-byte request: glibc's
/// 112-byte chunk, where two `usize`s took its 128-byte one.
#[repr(C)]
struct ThinHeader {
    count: std::sync::atomic::AtomicU32,
    len: u32,
}

// SAFETY: the symbols are immutable once built and `Symbol` (an `Arc`) is Send and
// Sync; the count is atomic, as an `Arc`'s.
unsafe impl Send for ThinSymbols {}
unsafe impl Sync for ThinSymbols {}

impl ThinSymbols {
    /// The allocation of `len` symbols and where they start in it.
    fn layout(len: usize) -> (std::alloc::Layout, usize) {
        use std::alloc::Layout;
        // Overflows only past isize::MAX bytes of symbols, which could not exist.
        let (layout, offset) = Layout::new::<ThinHeader>()
            .extend(Layout::array::<Symbol>(len).expect("label set too large"))
            .expect("label set too large");
        (layout.pad_to_align(), offset)
    }

    fn new(symbols: Vec<Symbol>) -> ThinSymbols {
        let len = symbols.len();
        // A label set is far below this (the scrape's label limits, a WAL record's size).
        assert!(len <= u32::MAX as usize, "label set too large");
        let (layout, offset) = Self::layout(len);
        // SAFETY: the layout is never zero-sized (it holds the header); the header
        // and each symbol are written once into their place in the new allocation
        // before the pointer is used, and the symbols are moved (the Vec's buffer is
        // freed without dropping them).
        unsafe {
            let p = std::alloc::alloc(layout);
            let Some(header) = std::ptr::NonNull::new(p as *mut ThinHeader) else {
                std::alloc::handle_alloc_error(layout)
            };
            header.as_ptr().write(ThinHeader {
                count: std::sync::atomic::AtomicU32::new(1),
                len: len as u32,
            });
            let data = p.add(offset) as *mut Symbol;
            for (i, s) in symbols.into_iter().enumerate() {
                data.add(i).write(s);
            }
            ThinSymbols(header)
        }
    }

    fn header(&self) -> &ThinHeader {
        // SAFETY: the pointer is to a live allocation while any ThinSymbols holds it.
        unsafe { self.0.as_ref() }
    }

    fn as_slice(&self) -> &[Symbol] {
        let len = self.header().len as usize;
        let (_, offset) = Self::layout(len);
        // SAFETY: `len` initialised symbols start at `offset` (see `new`) and live as
        // long as the allocation, which outlives `&self`.
        unsafe {
            std::slice::from_raw_parts(
                (self.0.as_ptr() as *const u8).add(offset) as *const Symbol,
                len,
            )
        }
    }

    fn len(&self) -> usize {
        self.header().len as usize
    }

    fn iter(&self) -> std::slice::Iter<'_, Symbol> {
        self.as_slice().iter()
    }

    fn ptr_eq(&self, other: &ThinSymbols) -> bool {
        self.0 == other.0
    }

    fn as_ptr(&self) -> *const ThinHeader {
        self.0.as_ptr()
    }

    /// Holders of this allocation (as `Arc::strong_count`).
    fn strong_count(&self) -> usize {
        self.header()
            .count
            .load(std::sync::atomic::Ordering::Acquire) as usize
    }
}

impl Clone for ThinSymbols {
    fn clone(&self) -> Self {
        // Relaxed, as in `Arc::clone`: a new holder comes from an existing one.
        let old = self
            .header()
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if old > i32::MAX as u32 {
            // As `Arc`: a leaked-clone loop must not wrap the count.
            std::process::abort();
        }
        ThinSymbols(self.0)
    }
}

impl Drop for ThinSymbols {
    fn drop(&mut self) {
        use std::sync::atomic::{fence, Ordering};
        if self.header().count.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // As in `Arc::drop`: see every other holder's use before freeing.
        fence(Ordering::Acquire);
        let len = self.header().len as usize;
        let (layout, offset) = Self::layout(len);
        // SAFETY: this was the last holder: the symbols are dropped once and the
        // allocation is freed with the layout it was made with.
        unsafe {
            let p = self.0.as_ptr() as *mut u8;
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                p.add(offset) as *mut Symbol,
                len,
            ));
            std::alloc::dealloc(p, layout);
        }
    }
}

impl Ord for SeriesLabels {
    fn cmp(&self, other: &SeriesLabels) -> Ordering {
        for ((an, av), (bn, bv)) in self.pairs().zip(other.pairs()) {
            let o = an.cmp(bn).then_with(|| av.cmp(bv));
            if o != Ordering::Equal {
                return o;
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl PartialOrd for SeriesLabels {
    fn partial_cmp(&self, other: &SeriesLabels) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl SeriesLabels {
    pub fn pairs(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>)> {
        self.0
            .as_slice()
            .chunks_exact(2)
            .map(|p| (p[0].shared(), p[1].shared()))
    }

    pub fn to_labels(&self) -> Labels {
        // Stored sets are sorted, without empty values or repeated names.
        Labels::from_sorted(
            self.pairs()
                .map(|(n, v)| Label {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
        )
    }

    pub fn eq_labels(&self, labels: &Labels) -> bool {
        self.0.len() == 2 * labels.len()
            && self.pairs().zip(labels.iter()).all(|((n, v), l)| {
                (Arc::ptr_eq(n, &l.name) || **n == *l.name)
                    && (Arc::ptr_eq(v, &l.value) || **v == *l.value)
            })
    }
}

impl crate::model::LabelsView for SeriesLabels {
    fn for_each_label(&self, f: &mut dyn FnMut(&Arc<str>, &Arc<str>)) {
        for (n, v) in self.pairs() {
            f(n, v);
        }
    }

    fn to_labels(&self) -> Labels {
        SeriesLabels::to_labels(self)
    }
}

/// A label set compared and hashed by the identity of its shared allocation: the
/// head and the blocks hold one per distinct label set, so this finds a series again
/// across them with one pointer.
pub struct ByIdentity<'a>(pub &'a SeriesLabels);

impl PartialEq for ByIdentity<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 .0.ptr_eq(&other.0 .0)
    }
}

impl Eq for ByIdentity<'_> {}

impl Hash for ByIdentity<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_usize(self.0 .0.as_ptr() as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_for_their_labels_and_share_strings() {
        let mut i = Interner::default();
        let a = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
        let b = Labels::from_pairs([("__name__", "up"), ("job", "mysql")]);
        let c = Labels::from_pairs([("__name__", "up")]);
        let (sa, sb, sc) = (
            i.series_labels(&a),
            i.series_labels(&b),
            i.series_labels(&c),
        );
        assert_eq!(sa.to_labels(), a);
        assert!(sa.eq_labels(&a) && !sa.eq_labels(&b) && !sc.eq_labels(&a));
        assert_eq!(sa.cmp(&sb), a.cmp(&b));
        assert_eq!(sc.cmp(&sa), c.cmp(&a));
        assert_eq!(sa.cmp(&sa), Ordering::Equal);
        let pairs = i.series_labels_from_pairs(&[("__name__", "up"), ("job", "node")]);
        assert!(pairs == sa);
        drop(pairs);
        // One string per distinct value, shared with what blocks get.
        let up = i.string("up");
        assert!(Arc::ptr_eq(&up, sa.pairs().next().unwrap().1));
        // One allocation per distinct label set.
        let again = i.series_labels(&a);
        assert!(again.0.ptr_eq(&sa.0));
        assert!(ByIdentity(&again) == ByIdentity(&sa) && ByIdentity(&sb) != ByIdentity(&sa));
        drop((sa, sb, a, b, again));
        i.purge();
        assert!(!i.set.contains("node"));
        assert!(i.set.contains("up"));
        assert_eq!(i.series.len(), 1);
    }

    #[test]
    fn thin_symbols_share_and_free() {
        let mut i = Interner::default();
        let a = i.series_labels(&Labels::from_pairs([("a", "1"), ("b", "2")]));
        assert_eq!(std::mem::size_of::<SeriesLabels>(), 8);
        // Six labels: a 104-byte request, glibc's 112-byte chunk.
        assert_eq!(ThinSymbols::layout(12).0.size(), 104);
        assert_eq!(a.0.len(), 4);
        let b = a.clone();
        // The interner's, a's and b's.
        assert_eq!(a.0.strong_count(), 3);
        let sym = a.0.as_slice()[1].clone();
        drop(a);
        assert_eq!(b.0.strong_count(), 2);
        drop(b);
        i.purge();
        assert!(i.series.is_empty());
        // The symbols went with the set: only `sym` holds "1" now.
        assert_eq!(Arc::strong_count(&sym.0), 2);
        let empty = i.series_labels(&Labels::new(vec![]));
        assert_eq!(empty.pairs().count(), 0);
        // Shared across threads.
        let c = i.series_labels(&Labels::from_pairs([("x", "y")]));
        let t = std::thread::spawn({
            let c = c.clone();
            move || c.to_labels()
        });
        assert_eq!(t.join().unwrap(), c.to_labels());
    }
}
