//! Interned label strings for the series of the head and of the blocks.
//!
//! Every distinct label string is one `Arc<str>` store-wide (shared with the blocks'
//! label sets). A series holds its labels as [`SeriesLabels`]: thin pointers to those
//! strings, 8 bytes each, so a label costs 16 bytes instead of the 32 of a
//! [`Label`]'s two fat `Arc<str>`s. [`Labels`] are built from them on demand.

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

/// The store-wide set of label strings.
#[derive(Default)]
pub struct Interner {
    set: HashSet<Symbol>,
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
        SeriesLabels(
            pairs
                .iter()
                .flat_map(|(n, v)| [self.symbol_of_str(n), self.symbol_of_str(v)])
                .collect(),
        )
    }

    pub fn series_labels(&mut self, labels: &Labels) -> SeriesLabels {
        SeriesLabels(
            labels
                .iter()
                .flat_map(|l| [self.symbol(&l.name), self.symbol(&l.value)])
                .collect(),
        )
    }

    /// Forgets the strings nothing else holds any more (neither a head series nor a
    /// block's label sets).
    pub fn purge(&mut self) {
        self.set
            .retain(|s| Arc::strong_count(&s.0) > 1 || Arc::strong_count(s.shared()) > 1);
    }
}

/// A series' label set: names and values alternating, in [`Labels`]' order, and
/// ordered as those `Labels` are.
#[derive(Clone, PartialEq, Eq)]
pub struct SeriesLabels(Box<[Symbol]>);

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

/// A label set compared and hashed by the identity of its interned strings: within
/// one store, equal label sets are made of the same strings, so this finds a series
/// again across blocks and the head without comparing any text.
pub struct ByIdentity<'a>(pub &'a SeriesLabels);

impl PartialEq for ByIdentity<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 .0.len() == other.0 .0.len()
            && self
                .0
                 .0
                .iter()
                .zip(other.0 .0.iter())
                .all(|(a, b)| Arc::ptr_eq(&a.0, &b.0))
    }
}

impl Eq for ByIdentity<'_> {}

impl Hash for ByIdentity<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        for s in self.0 .0.iter() {
            h.write_usize(Arc::as_ptr(&s.0) as usize);
        }
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
        drop((sa, sb, a, b));
        i.purge();
        assert!(!i.set.contains("node"));
        assert!(i.set.contains("up"));
    }
}
