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

use crate::labels::{Label, Labels};

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
        let set = SeriesLabels(symbols.into());
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
        self.series.retain(|s| Arc::strong_count(&s.0) > 1);
        self.set
            .retain(|s| Arc::strong_count(&s.0) > 1 || Arc::strong_count(s.shared()) > 1);
    }
}

/// A series' label set: names and values alternating, in [`Labels`]' order, and
/// ordered as those `Labels` are. Cloning shares it. Equality and hashing go by the
/// identity of the interned strings: equal sets are made of the same strings.
#[derive(Clone)]
pub struct SeriesLabels(Arc<[Symbol]>);

impl PartialEq for SeriesLabels {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
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
            .chunks_exact(2)
            .map(|p| (p[0].shared(), p[1].shared()))
    }

    pub fn to_labels(&self) -> Labels {
        Labels::new(
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

/// A label set compared and hashed by the identity of its shared allocation: the
/// head and the blocks hold one per distinct label set, so this finds a series again
/// across them with one pointer.
pub struct ByIdentity<'a>(pub &'a SeriesLabels);

impl PartialEq for ByIdentity<'_> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0 .0, &other.0 .0)
    }
}

impl Eq for ByIdentity<'_> {}

impl Hash for ByIdentity<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_usize(Arc::as_ptr(&self.0 .0) as *const Symbol as usize);
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
        assert!(Arc::ptr_eq(&again.0, &sa.0));
        assert!(ByIdentity(&again) == ByIdentity(&sa) && ByIdentity(&sb) != ByIdentity(&sa));
        drop((sa, sb, a, b, again));
        i.purge();
        assert!(!i.set.contains("node"));
        assert!(i.set.contains("up"));
        assert_eq!(i.series.len(), 1);
    }
}
