//! Inverted index: label name → label value → sorted series ids ("postings"), and
//! matcher evaluation with Prometheus semantics over it. Used by the head (ids are
//! `SeriesId`s) and by each block (ids are the block's series ordinals).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::model::labels::{MatchKind, Matcher};

#[derive(Default)]
pub struct Postings {
    by_name: HashMap<Arc<str>, HashMap<Arc<str>, PostingList>>,
    all: AllIds,
}

/// The sorted ids of one label value.
pub enum PostingList {
    /// As built; the head's lists, which change.
    Open(Vec<u32>),
    /// Frozen ([`Postings::freeze`], a block's): the first id and then the gaps, as
    /// LEB128 varints. Ids in a block are label-sorted ordinals, so the gaps are
    /// small: about a byte an id where a `u32` takes four, in every live block.
    Packed(PackedIds),
}

/// Gap-encoded ids, with a skip entry every [`SKIP`] ids so that a few ids can be
/// looked up without decoding the whole list.
pub struct PackedIds {
    bytes: Box<[u8]>,
    /// For the ids from `(k + 1) * SKIP` on: the id before them and where their
    /// gaps start in `bytes`.
    skips: Box<[(u32, u32)]>,
}

const SKIP: usize = 128;

impl PackedIds {
    /// Decodes from byte `pos` with `id` the id before, calling `f` with each id
    /// until it returns false.
    fn decode_from(&self, mut pos: usize, mut id: u32, mut f: impl FnMut(u32) -> bool) {
        let (mut shift, mut gap) = (0u32, 0u32);
        while let Some(&byte) = self.bytes.get(pos) {
            pos += 1;
            gap |= ((byte & 0x7f) as u32).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 != 0 {
                shift += 7;
                continue;
            }
            id = id.wrapping_add(gap);
            if !f(id) {
                return;
            }
            (shift, gap) = (0, 0);
        }
    }

    /// Whether `x` is in the list: a binary search of the skips, then at most
    /// [`SKIP`] gaps decoded.
    fn contains(&self, x: u32) -> bool {
        let k = self.skips.partition_point(|s| s.0 < x);
        let (id, pos) = match k {
            0 => (0, 0),
            _ => self.skips[k - 1],
        };
        let mut found = false;
        self.decode_from(pos as usize, id, |id| {
            found = id == x;
            id < x
        });
        found
    }
}

impl PostingList {
    /// The ids of `ids` that are in the list (`in_list`), or that are not. A few ids
    /// against a long packed list (one host's series against a metric's in a block,
    /// a dozen CPU series against every idle one) are looked up instead of decoding
    /// the list.
    fn filter(&self, mut ids: Vec<u32>, in_list: bool) -> Vec<u32> {
        match self {
            PostingList::Packed(p) if ids.len().saturating_mul(64) < p.bytes.len() => {
                ids.retain(|&x| p.contains(x) == in_list);
                ids
            }
            l if in_list => intersect(&ids, &l.ids()),
            l => subtract(&ids, &l.ids()),
        }
    }

    /// The ids, decoded if packed.
    pub fn ids(&self) -> Cow<'_, [u32]> {
        match self {
            PostingList::Open(v) => Cow::Borrowed(v),
            PostingList::Packed(p) => {
                let mut out = Vec::with_capacity(p.bytes.len());
                p.decode_from(0, 0, |id| {
                    out.push(id);
                    true
                });
                Cow::Owned(out)
            }
        }
    }

    fn pack_ids(ids: &[u32]) -> PackedIds {
        let mut out = Vec::with_capacity(ids.len() + 4);
        let mut skips = Vec::new();
        let mut prev = 0u32;
        for (i, &id) in ids.iter().enumerate() {
            if i > 0 && i % SKIP == 0 {
                skips.push((prev, out.len() as u32));
            }
            // Sorted lists give gaps ≥ 0; wrapping keeps any list exact anyway.
            let mut gap = id.wrapping_sub(prev);
            prev = id;
            while gap >= 0x80 {
                out.push((gap as u8) | 0x80);
                gap >>= 7;
            }
            out.push(gap as u8);
        }
        PackedIds {
            bytes: out.into_boxed_slice(),
            skips: skips.into_boxed_slice(),
        }
    }

    /// Roughly how many ids (bytes, for a packed list: at least one a id).
    fn size(&self) -> usize {
        match self {
            PostingList::Open(v) => v.len(),
            PostingList::Packed(p) => p.bytes.len(),
        }
    }

    /// Packs an open list (see [`Postings::freeze`]).
    fn pack(&mut self) {
        if let PostingList::Open(ids) = self {
            *self = PostingList::Packed(PostingList::pack_ids(ids));
        }
    }

    /// Removes the ids of `dead` (sorted); a packed list is packed again only if it
    /// held any of them.
    fn remove(&mut self, dead: &[u32]) {
        let is_dead = |id: &u32| dead.binary_search(id).is_ok();
        match self {
            PostingList::Open(ids) => {
                ids.retain(|id| !is_dead(id));
                ids.shrink_to_fit();
            }
            PostingList::Packed(_) => {
                let kept: Option<Vec<u32>> = {
                    let ids = self.ids();
                    ids.iter()
                        .any(is_dead)
                        .then(|| ids.iter().copied().filter(|id| !is_dead(id)).collect())
                };
                if let Some(kept) = kept {
                    *self = PostingList::Packed(PostingList::pack_ids(&kept));
                }
            }
        }
    }

    fn open_mut(&mut self) -> &mut Vec<u32> {
        if let PostingList::Packed(_) = self {
            *self = PostingList::Open(self.ids().into_owned());
        }
        match self {
            PostingList::Open(v) => v,
            // Made open just above.
            PostingList::Packed(_) => unreachable!(),
        }
    }
}

/// Every id, for selections without a positive matcher.
enum AllIds {
    /// Sorted; the head's ids have holes where series were removed.
    Listed(PostingList),
    /// `0..n`: a block's ordinals, kept as a count, not a list (4 bytes a series
    /// in every live block).
    Dense(u32),
}

impl Default for AllIds {
    fn default() -> Self {
        AllIds::Listed(PostingList::Open(Vec::new()))
    }
}

impl Postings {
    /// Postings whose ids will be exactly `0..n`, added in order (a block's).
    pub fn dense() -> Postings {
        Postings {
            by_name: HashMap::new(),
            all: AllIds::Dense(0),
        }
    }

    /// Adds a series. Ids must be added in increasing order so lists stay sorted
    /// without a sort (true for the head's monotonic ids and a block's ordinals).
    #[cfg(test)]
    pub fn add(&mut self, id: u32, labels: &crate::model::labels::Labels) {
        self.add_pairs(id, labels.iter().map(|l| (&l.name, &l.value)));
    }

    /// [`add`](Self::add) with the label names and values given as pairs.
    pub fn add_pairs<'a>(
        &mut self,
        id: u32,
        pairs: impl Iterator<Item = (&'a Arc<str>, &'a Arc<str>)>,
    ) {
        for (name, value) in pairs {
            let values = match self.by_name.get_mut(name) {
                Some(v) => v,
                None => self.by_name.entry(name.clone()).or_default(),
            };
            match values.get_mut(value) {
                Some(list) => push_sorted(list.open_mut(), id),
                None => {
                    values.insert(value.clone(), PostingList::Open(vec![id]));
                }
            }
        }
        match &mut self.all {
            AllIds::Listed(list) => push_sorted(list.open_mut(), id),
            AllIds::Dense(n) if *n == id => *n += 1,
            AllIds::Dense(n) => {
                // Not 0..n after all: list them.
                let mut list: Vec<u32> = (0..*n).collect();
                push_sorted(&mut list, id);
                self.all = AllIds::Listed(PostingList::Open(list));
            }
        }
    }

    /// Packs every list and drops the spare capacity the maps grew with: a block's
    /// postings once complete, the head's at each cut (a packed list takes about a
    /// byte an id where an open one takes four and what it grew by). Selecting
    /// decodes the lists it touches; adding to a list opens it again (the head's
    /// lists of a new series' labels, until the next cut packs them).
    pub fn freeze(&mut self) {
        for values in self.by_name.values_mut() {
            for list in values.values_mut() {
                list.pack();
            }
            values.shrink_to_fit();
        }
        self.by_name.shrink_to_fit();
        if let AllIds::Listed(list) = &mut self.all {
            list.pack();
        }
    }

    /// Removes a set of ids (sorted) from every list; empty lists are dropped. A
    /// packed list stays packed.
    pub fn remove(&mut self, dead: &[u32]) {
        if dead.is_empty() {
            return;
        }
        for values in self.by_name.values_mut() {
            for list in values.values_mut() {
                list.remove(dead);
            }
            values.retain(|_, l| l.size() > 0);
        }
        self.by_name.retain(|_, v| !v.is_empty());
        if let AllIds::Dense(n) = self.all {
            self.all = AllIds::Listed(PostingList::Open((0..n).collect()));
        }
        if let AllIds::Listed(list) = &mut self.all {
            list.remove(dead);
        }
    }

    pub fn label_names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.by_name.keys()
    }

    pub fn values(&self, name: &str) -> impl Iterator<Item = (&Arc<str>, &PostingList)> {
        self.by_name.get(name).into_iter().flat_map(|m| m.iter())
    }

    /// Ids of the series matching every matcher, sorted.
    ///
    /// A matcher that does not match the empty string selects the union of the lists
    /// of the values it matches (an `=` is one hash lookup). One that matches the
    /// empty string also selects series without the label, so it is applied as a
    /// subtraction of the values it rejects. With no positive matcher the result
    /// starts from every series.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<u32> {
        let mut positive: Vec<Candidate> = Vec::new();
        // Lists of values a matcher rejects, subtracted from the result one by one.
        let mut rejected: Vec<&PostingList> = Vec::new();
        for m in matchers {
            if m.matches_empty() {
                // e.g. job!="a", job="", job=~"a|", job!~"b": subtract what fails.
                match m.kind {
                    MatchKind::NotEqual => rejected.extend(
                        self.by_name
                            .get(m.name.as_str())
                            .and_then(|v| v.get(m.value.as_str())),
                    ),
                    _ => rejected.extend(
                        self.values(&m.name)
                            .filter(|(v, _)| !m.matches(v))
                            .map(|(_, l)| l),
                    ),
                }
            } else {
                let mut accepted: Vec<&PostingList> = match m.kind {
                    MatchKind::Equal => self
                        .by_name
                        .get(m.name.as_str())
                        .and_then(|v| v.get(m.value.as_str()))
                        .into_iter()
                        .collect(),
                    _ => self
                        .values(&m.name)
                        .filter(|(v, _)| m.matches(v))
                        .map(|(_, l)| l)
                        .collect(),
                };
                positive.push(match accepted.len() {
                    0 => return Vec::new(),
                    // Left as it is: a short list may only need lookups in it.
                    1 => match accepted.pop() {
                        Some(l) => Candidate::List(l),
                        None => return Vec::new(),
                    },
                    _ => Candidate::Ids(
                        union(accepted.into_iter().map(PostingList::ids).collect()).into_owned(),
                    ),
                });
            }
        }
        positive.sort_by_key(|c| match c {
            Candidate::List(l) => l.size(),
            Candidate::Ids(v) => v.len(),
        });
        let mut result = match positive.split_first() {
            Some((first, rest)) => {
                let first = match first {
                    Candidate::List(l) => l.ids().into_owned(),
                    Candidate::Ids(v) => v.clone(),
                };
                rest.iter().fold(first, |acc, c| match c {
                    Candidate::List(l) => l.filter(acc, true),
                    Candidate::Ids(v) => intersect(&acc, v),
                })
            }
            None => match &self.all {
                AllIds::Listed(list) => list.ids().into_owned(),
                AllIds::Dense(n) => (0..*n).collect(),
            },
        };
        for l in rejected {
            result = l.filter(result, false);
        }
        result
    }
}

/// The ids a positive matcher selects: one value's list as it is, or the union of
/// several.
enum Candidate<'a> {
    List(&'a PostingList),
    Ids(Vec<u32>),
}

#[inline]
fn push_sorted(list: &mut Vec<u32>, id: u32) {
    match list.last() {
        Some(&last) if last >= id => {
            if let Err(i) = list.binary_search(&id) {
                list.insert(i, id);
            }
        }
        _ => list.push(id),
    }
}

/// One list is passed on as it is: an `=` matcher on a head list copies nothing.
fn union(mut lists: Vec<Cow<'_, [u32]>>) -> Cow<'_, [u32]> {
    match lists.len() {
        0 => Cow::Borrowed(&[]),
        1 => lists.pop().unwrap_or(Cow::Borrowed(&[])),
        _ => {
            let mut out: Vec<u32> = lists.iter().flat_map(|l| l.iter().copied()).collect();
            out.sort_unstable();
            out.dedup();
            Cow::Owned(out)
        }
    }
}

/// The first index of `rest` whose id is `>= x`, found by galloping: exponential then
/// binary search, so that a few ids walk a long list in a few steps each.
fn seek(rest: &[u32], x: u32) -> usize {
    let mut hi = 1;
    while hi < rest.len() && rest[hi] < x {
        hi *= 2;
    }
    let lo = hi / 2;
    let end = hi.min(rest.len());
    lo + rest[lo..end].partition_point(|&y| y < x)
}

/// `a ∩ b` for `a` no longer than `b`. A short `a` (one host's series) against a
/// long `b` (every series of a metric) looks each id up by galloping through `b`
/// instead of walking all of it.
fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    if a.len().saturating_mul(16) < b.len() {
        let mut out = Vec::with_capacity(a.len());
        let mut rest = b;
        for &x in a {
            rest = &rest[seek(rest, x)..];
            match rest.first() {
                Some(&y) if y == x => out.push(x),
                Some(_) => {}
                None => break,
            }
        }
        return out;
    }
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// `a \ b`, galloping through `b` like [`intersect`].
fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len());
    let mut rest = b;
    for &x in a {
        rest = &rest[seek(rest, x)..];
        if rest.first() != Some(&x) {
            out.push(x);
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::Labels;

    fn m(kind: MatchKind, n: &str, v: &str) -> Matcher {
        Matcher::new(kind, n, v).unwrap()
    }

    fn index() -> (Postings, Vec<Labels>) {
        let sets = vec![
            Labels::from_pairs([("__name__", "up"), ("job", "node"), ("instance", "a")]),
            Labels::from_pairs([("__name__", "up"), ("job", "mysql"), ("instance", "a")]),
            Labels::from_pairs([("__name__", "cpu"), ("job", "node"), ("mode", "idle")]),
            Labels::from_pairs([("__name__", "cpu"), ("job", "node"), ("mode", "user\nx")]),
            Labels::from_pairs([("__name__", "nojob")]),
        ];
        let mut p = Postings::default();
        for (i, l) in sets.iter().enumerate() {
            p.add(i as u32, l);
        }
        (p, sets)
    }

    #[test]
    fn packed_lists_answer_lookups_through_their_skips() {
        let ids: Vec<u32> = (0..5000u32)
            .map(|i| i * 3 + (i % 7) * (i % 2) * 1000)
            .collect();
        let mut ids = ids;
        ids.sort_unstable();
        ids.dedup();
        let p = PostingList::pack_ids(&ids);
        assert!(!p.skips.is_empty());
        let list = PostingList::Packed(p);
        assert_eq!(&*list.ids(), &ids[..]);
        let PostingList::Packed(p) = &list else {
            unreachable!()
        };
        for x in 0..ids[ids.len() - 1] + 10 {
            assert_eq!(p.contains(x), ids.binary_search(&x).is_ok(), "{x}");
        }
    }

    #[test]
    fn galloping_and_walking_intersections_and_subtractions_agree() {
        let long: Vec<u32> = (0..50_000).filter(|x| x % 3 != 0).collect();
        for step in [1, 7, 97, 4999, 60_000] {
            let short: Vec<u32> = (0..50_100).step_by(step).collect();
            let (inside, outside): (Vec<u32>, Vec<u32>) =
                short.iter().partition(|x| long.binary_search(x).is_ok());
            assert_eq!(intersect(&short, &long), inside, "step {step}");
            assert_eq!(subtract(&short, &long), outside, "step {step}");
        }
        assert!(intersect(&[], &long).is_empty());
        assert!(intersect(&[5], &[]).is_empty());
        assert_eq!(subtract(&[5], &[]), [5]);
    }

    /// The ids of the label sets every matcher accepts, by a scan.
    fn scan(sets: &[Labels], ms: &[Matcher]) -> Vec<u32> {
        let accepted = |l: &Labels| ms.iter().all(|m| m.matches_labels(l));
        (0..sets.len() as u32)
            .filter(|&i| accepted(&sets[i as usize]))
            .collect()
    }

    /// The index must agree with a brute-force scan for every matcher shape.
    #[test]
    fn agrees_with_brute_force() {
        use MatchKind::*;
        let (p, sets) = index();
        let cases: Vec<Vec<Matcher>> = vec![
            vec![Matcher::equal("__name__", "up")],
            vec![m(Regex, "__name__", "u.|cp.")],
            vec![m(Regex, "__name__", ".*")],
            vec![m(Regex, "__name__", ".+")],
            vec![Matcher::equal("job", "")],
            vec![m(NotEqual, "job", "")],
            vec![m(NotEqual, "job", "node")],
            vec![m(Regex, "job", "node|")],
            vec![m(NotRegex, "job", "node")],
            vec![m(NotRegex, "job", ".*")],
            vec![
                Matcher::equal("__name__", "cpu"),
                m(Regex, "mode", "user.x"),
            ],
            vec![Matcher::equal("__name__", "cpu"), m(Regex, "mode", "user")],
            vec![Matcher::equal("nolabel", "x")],
            vec![m(Regex, "nolabel", ".*")],
            vec![
                Matcher::equal("__name__", "up"),
                m(NotEqual, "instance", "a"),
            ],
            vec![],
        ];
        for ms in cases {
            assert_eq!(p.select(&ms), scan(&sets, &ms), "{ms:?}");
        }
    }

    /// Few series against long lists of rejected values: the lookups in packed lists
    /// and the galloping subtraction agree with a scan.
    #[test]
    fn negative_matchers_against_long_lists_agree_with_brute_force() {
        use MatchKind::*;
        let modes = ["idle", "user", "system", "iowait"];
        let sets: Vec<Labels> = (0..20_000)
            .map(|i| {
                let name = if i % 499 == 0 {
                    "node_cpu"
                } else {
                    "synth_cpu"
                };
                Labels::from_pairs([
                    ("__name__", name),
                    ("cpu", &(i % 7).to_string()),
                    ("mode", modes[i % 4]),
                ])
            })
            .collect();
        let mut open = Postings::default();
        for (i, l) in sets.iter().enumerate() {
            open.add(i as u32, l);
        }
        let mut frozen = Postings::dense();
        for (i, l) in sets.iter().enumerate() {
            frozen.add(i as u32, l);
        }
        frozen.freeze();
        for name in ["node_cpu", "synth_cpu"] {
            for ms in [
                vec![
                    Matcher::equal("__name__", name),
                    m(NotEqual, "mode", "idle"),
                ],
                vec![
                    Matcher::equal("__name__", name),
                    m(NotRegex, "mode", "idle|user"),
                ],
                vec![
                    Matcher::equal("__name__", name),
                    m(NotEqual, "mode", "idle"),
                    m(NotEqual, "cpu", "3"),
                ],
                vec![
                    Matcher::equal("__name__", name),
                    m(NotEqual, "mode", "none"),
                ],
            ] {
                let want = scan(&sets, &ms);
                assert!(!want.is_empty(), "{ms:?}");
                assert_eq!(open.select(&ms), want, "open {ms:?}");
                assert_eq!(frozen.select(&ms), want, "frozen {ms:?}");
            }
        }
    }

    #[test]
    fn dense_ids_select_like_listed_ones() {
        let (listed, sets) = index();
        let mut dense = Postings::dense();
        for (i, l) in sets.iter().enumerate() {
            dense.add(i as u32, l);
        }
        assert!(matches!(dense.all, AllIds::Dense(5)));
        for ms in [vec![], vec![m(MatchKind::NotEqual, "job", "node")]] {
            assert_eq!(dense.select(&ms), listed.select(&ms));
        }
        // An id out of order turns the count back into a list.
        dense.add(7, &sets[0]);
        assert_eq!(dense.select(&[]), vec![0, 1, 2, 3, 4, 7]);
        dense.remove(&[1]);
        assert_eq!(dense.select(&[]), vec![0, 2, 3, 4, 7]);
    }

    #[test]
    fn frozen_postings_select_like_open_ones() {
        use MatchKind::*;
        let (open, _) = index();
        let (mut frozen, sets) = index();
        frozen.freeze();
        for ms in [
            vec![Matcher::equal("__name__", "up")],
            vec![m(Regex, "job", "node|")],
            vec![m(NotEqual, "job", "node")],
            vec![
                Matcher::equal("__name__", "cpu"),
                m(Regex, "mode", "user.x"),
            ],
            vec![],
        ] {
            assert_eq!(frozen.select(&ms), open.select(&ms), "{ms:?}");
        }
        // Gaps of every varint length, and changes after freezing.
        let ids = [0, 1, 127, 128, 300, 16_384, 2_097_152, u32::MAX - 1];
        let mut p = Postings::default();
        for &id in &ids {
            p.add(id, &sets[0]);
        }
        p.freeze();
        assert_eq!(p.select(&[Matcher::equal("job", "node")]), ids);
        p.remove(&[128]);
        p.add(u32::MAX, &sets[0]);
        let mut want: Vec<u32> = ids.iter().copied().filter(|&i| i != 128).collect();
        want.push(u32::MAX);
        assert_eq!(p.select(&[Matcher::equal("job", "node")]), want);
    }

    #[test]
    fn removal_keeps_lists_consistent() {
        let (mut p, _) = index();
        p.remove(&[0, 2]);
        assert_eq!(p.select(&[Matcher::equal("job", "node")]), vec![3]);
        assert_eq!(p.select(&[]), vec![1, 3, 4]);
        assert!(p.values("mode").all(|(v, _)| &**v != "idle"));
    }
}
