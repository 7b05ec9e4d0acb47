//! Tests of the whole store through its public API, and the helpers the store's
//! tests share.

use crate::model::labels::{Labels, MatchKind, Matcher};

use super::{write_imported_block, AppendSample, BlockOrigin, Store, StoreOptions};

pub(super) fn sample(name: &str, job: &str, t: i64, v: f64) -> AppendSample {
    AppendSample {
        labels: Labels::from_pairs([("__name__", name), ("job", job)]),
        timestamp_ms: t,
        value: v,
    }
}

pub(super) fn opts() -> StoreOptions {
    StoreOptions {
        background: false,
        ..StoreOptions::default()
    }
}

pub(super) fn series_of(job: &str, ts: &[i64], v: f64) -> (Labels, Vec<i64>, Vec<f64>) {
    let l = Labels::from_pairs([("__name__", "m"), ("job", job)]);
    (l, ts.to_vec(), vec![v; ts.len()])
}

#[test]
fn append_then_select_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    let out = store.append(&[sample("up", "a", 1000, 1.0), sample("up", "b", 1000, 0.0)]);
    assert_eq!(out.series_created, 2);
    let out = store.append(&[sample("up", "a", 2000, 1.0), sample("up", "a", 1500, 9.0)]);
    assert_eq!((out.appended, out.out_of_order), (1, 1));
    let got = store
        .select(&[Matcher::equal("job", "a")], 0, 5000)
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].timestamps, vec![1000, 2000]);
    let re = Matcher::new(MatchKind::Regex, "__name__", "u.").unwrap();
    assert_eq!(store.select(&[re], 1500, 1500).unwrap().len(), 0);
    assert_eq!(store.label_values("job", &[], 0, 5000), vec!["a", "b"]);
    assert_eq!(store.label_names(&[], 0, 5000), vec!["__name__", "job"]);
    assert_eq!(
        store.series(&[Matcher::equal("job", "b")], 0, 5000).len(),
        1
    );
    assert!(store
        .series(&[Matcher::equal("job", "b")], 1001, 5000)
        .is_empty());
}

#[test]
fn stale_marker_bits_survive_head_wal_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let o = StoreOptions {
        block_range_ms: 100,
        ..opts()
    };
    let stale = crate::model::stale_nan();
    {
        let store = Store::open_with(dir.path(), o.clone()).unwrap();
        store.append(&[sample("x", "a", 1, 1.0), sample("x", "a", 2, stale)]);
        store.append(&[sample("x", "a", 150, 1.0), sample("x", "a", 160, stale)]);
        let got = store.select(&[], 0, 1000).unwrap();
        assert_eq!(got[0].values[1].to_bits(), stale.to_bits());
        store.cut_before(100).unwrap();
        assert_eq!(store.blocks().len(), 1);
    }
    let store = Store::open_with(dir.path(), o).unwrap();
    let got = store.select(&[], 0, 1000).unwrap();
    assert_eq!(got[0].timestamps, vec![1, 2, 150, 160]);
    let bits: Vec<u64> = got[0].values.iter().map(|v| v.to_bits()).collect();
    assert_eq!(
        bits,
        vec![
            1f64.to_bits(),
            stale.to_bits(),
            1f64.to_bits(),
            stale.to_bits()
        ]
    );
}

fn select_job(store: &Store, job: &str) -> (Vec<i64>, Vec<f64>) {
    let got = store
        .select(&[Matcher::equal("job", job)], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    (got[0].timestamps.clone(), got[0].values.clone())
}

#[test]
fn imported_blocks_overlap_the_head_and_blocks_and_reads_merge_them() {
    let dir = tempfile::tempdir().unwrap();
    let o = StoreOptions {
        block_range_ms: 1000,
        retention_ms: 0,
        ..opts()
    };
    let store = Store::open_with(dir.path(), o.clone()).unwrap();
    // Live data at 0, 200, …, 3800; the first two ranges cut into blocks.
    for k in 0..20 {
        store.append(&[sample("m", "a", k * 200, 1.0)]);
    }
    store.cut_before(2000).unwrap();
    assert_eq!(store.blocks().len(), 2);
    // A backfill over a cut range and over the head's range, with the same
    // timestamp as stored samples in places, written while the store is open.
    let (meta, dups) = write_imported_block(
        dir.path(),
        0,
        1000,
        vec![
            series_of("a", &[100, 300, 200, 100], 2.0),
            series_of("b", &[500], 2.0),
        ],
    )
    .unwrap();
    assert_eq!((meta.unwrap().origin, dups), (BlockOrigin::Import, 1));
    write_imported_block(
        dir.path(),
        3000,
        4000,
        vec![series_of("a", &[3100, 3200], 2.0)],
    )
    .unwrap();
    // Not seen before the next maintenance pass picks the blocks up.
    assert!(store
        .select(&[Matcher::equal("job", "b")], i64::MIN, i64::MAX)
        .unwrap()
        .is_empty());
    store.maintain().unwrap();
    let expect_ts: Vec<i64> = {
        let mut t: Vec<i64> = (0..20).map(|k| k * 200).chain([100, 300, 3100]).collect();
        t.sort();
        t
    };
    let check = |store: &Store| {
        let (ts, vs) = select_job(store, "a");
        assert_eq!(ts, expect_ts);
        // Where both have a timestamp, one sample is kept: at 200 the cut block's
        // (read first), at 3200 the imported block's (blocks are read before the head).
        assert_eq!(vs.iter().filter(|&&v| v == 2.0).count(), 4);
        assert_eq!(select_job(store, "b").0, vec![500]);
    };
    check(&store);
    // The imported block did not move the head's lower bound: live samples in its
    // range are still accepted, and survive a restart (the WAL replays them).
    let out = store.append(&[sample("m", "a", 3900, 1.0)]);
    assert_eq!(out.appended, 1);
    drop(store);
    let store = Store::open_with(dir.path(), o.clone()).unwrap();
    let (ts, _) = select_job(&store, "a");
    assert_eq!(ts.last(), Some(&3900));
    assert_eq!(ts.len(), expect_ts.len() + 1);
    // Cut and compact everything: one series per label set, in order, once.
    store.append(&[sample("m", "a", 9000, 1.0)]);
    store.cut_before(9000).unwrap();
    store.compact().unwrap();
    assert!(
        store.blocks().iter().any(|b| b.level > 0),
        "{:?}",
        store.blocks()
    );
    let (ts, _) = select_job(&store, "a");
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "{ts:?}");
    assert_eq!(ts.len(), expect_ts.len() + 2);
    drop(store);
    let store = Store::open_with(dir.path(), o).unwrap();
    assert_eq!(select_job(&store, "a").0, ts);
}

/// Segments written before values stood alone (XOR with the series' previous value)
/// still replay exactly; after a damaged stretch their samples records are skipped,
/// never decoded against a value that was lost.
#[test]
fn old_xor_segments_replay_and_skip_what_follows_damage() {
    use super::wal::{self, REC_SAMPLES_XOR, REC_SERIES};
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open_with(dir.path(), opts()).unwrap());
    let labels = Labels::from_pairs([("__name__", "m"), ("job", "old")]);
    let values = [
        1.5,
        1.5,
        2.25,
        f64::from_bits(0x7ff0_0000_0000_0002),
        7.0,
        8.0,
    ];
    let mut data = Vec::new();
    let mut rec = vec![REC_SERIES];
    wal::encode_series(&mut rec, 0, &labels);
    wal::frame(&mut data, &rec).unwrap();
    let mut prev = 0u64;
    let mut starts = Vec::new();
    for (k, v) in values.iter().enumerate() {
        let mut rec = vec![REC_SAMPLES_XOR];
        wal::put_varint(&mut rec, (k as i64 + 1) * 1000);
        wal::put_varint(&mut rec, 0);
        wal::put_varint(&mut rec, 0);
        wal::put_xor_value(&mut rec, prev, v.to_bits());
        prev = v.to_bits();
        starts.push(data.len());
        wal::frame(&mut data, &rec).unwrap();
    }
    let wal_dir = dir.path().join("wal");
    let seg = wal::segment_path(&wal_dir, 5);
    std::fs::write(&seg, &data).unwrap();
    let read = |store: &Store| {
        let got = store
            .select(&[Matcher::equal("job", "old")], 0, i64::MAX)
            .unwrap();
        let s = &got[0];
        let bits: Vec<u64> = s.values.iter().map(|v| v.to_bits()).collect();
        (s.timestamps.clone(), bits)
    };
    let store = Store::open_with(dir.path(), opts()).unwrap();
    let want: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
    assert_eq!(
        read(&store),
        (vec![1000, 2000, 3000, 4000, 5000, 6000], want.clone())
    );
    drop(store);
    // Damage the record of the fourth sample: the fifth and sixth were XOR'd
    // with it, so they are skipped too.
    for f in std::fs::read_dir(&wal_dir).unwrap() {
        let p = f.unwrap().path();
        if p != seg {
            std::fs::remove_file(p).unwrap();
        }
    }
    data[starts[3] + 9] ^= 0xff;
    std::fs::write(&seg, &data).unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert_eq!(read(&store), (vec![1000, 2000, 3000], want[..3].to_vec()));
}

/// What a follower of the WAL read: the series defined (id, job) and the samples
/// (job, t, value bits), in WAL order.
type Followed = (Vec<(u32, String)>, Vec<(String, i64, u64)>);

/// Everything a follower of the WAL reads from `tail` up to the store's end.
fn follow(store: &Store, tail: &mut super::WalTail) -> Followed {
    let mut series = std::collections::HashMap::new();
    let mut defined = Vec::new();
    let mut samples = Vec::new();
    loop {
        let mut recs = Vec::new();
        let read = tail.read(store.wal_end(), |r, _| recs.push(r)).unwrap();
        for r in recs {
            match r {
                super::WalRecord::Series(list) => {
                    for (id, l) in list {
                        let job = l.get("job").unwrap().to_string();
                        defined.push((id, job.clone()));
                        series.insert(id, job);
                    }
                }
                super::WalRecord::Samples(list) => {
                    for s in list {
                        let job = series
                            .get(&s.id)
                            .cloned()
                            .or_else(|| {
                                store
                                    .series_labels_by_id(s.id)
                                    .map(|l| l.get("job").unwrap().to_string())
                            })
                            .unwrap();
                        samples.push((job, s.timestamp_ms, s.value.to_bits()));
                    }
                }
            }
        }
        if read.bytes == 0 && tail.position() == store.wal_end() {
            return (defined, samples);
        }
    }
}

#[test]
fn a_wal_tail_reads_every_sample_in_order_across_segments_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let o = StoreOptions {
        wal_segment_bytes: 1024,
        ..opts()
    };
    let store = Store::open_with(dir.path(), o.clone()).unwrap();
    let start = store.wal_end();
    let mut tail = super::WalTail::new(store.wal_dir(), start);
    let stale = f64::from_bits(crate::model::value::STALE_NAN_BITS);
    let mut want = Vec::new();
    for i in 0..400i64 {
        let jobs = ["a", "b", "c"];
        let batch: Vec<_> = jobs
            .iter()
            .map(|j| {
                let v = if i % 50 == 49 { stale } else { i as f64 * 0.5 };
                want.push((j.to_string(), 1000 + i * 1000, v.to_bits()));
                sample("m", j, 1000 + i * 1000, v)
            })
            .collect();
        store.append(&batch);
        if i == 200 {
            // Half-way: read what is written, then go on from a saved position.
            store.flush().unwrap();
            let (defined, got) = follow(&store, &mut tail);
            assert_eq!(defined.len(), 3);
            assert_eq!(got, want);
        }
    }
    store.flush().unwrap();
    assert!(store.wal_segments().unwrap().len() > 3, "several segments");
    let saved = tail.position();
    let mut resumed = super::WalTail::new(store.wal_dir(), saved);
    let (defined, got) = follow(&store, &mut resumed);
    assert!(
        defined.is_empty(),
        "series were defined before the saved position"
    );
    assert_eq!(got, want[603..].to_vec());
    // After a restart the old segments are closed and a new one is open.
    drop(store);
    let store = Store::open_with(dir.path(), o).unwrap();
    store.append(&[sample("m", "a", 999_000, 1.0)]);
    store.flush().unwrap();
    let (_, got) = follow(&store, &mut resumed);
    assert_eq!(got, vec![("a".to_string(), 999_000, 1f64.to_bits())]);
}

#[test]
fn a_wal_tail_skips_segments_deleted_before_it_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let o = StoreOptions {
        wal_segment_bytes: 1024,
        ..opts()
    };
    let store = Store::open_with(dir.path(), o).unwrap();
    let mut tail = super::WalTail::new(store.wal_dir(), store.wal_end());
    for i in 0..200i64 {
        store.append(&[sample("m", "a", 1000 + i * 1000, i as f64)]);
    }
    store.flush().unwrap();
    let segments = store.wal_segments().unwrap();
    assert!(segments.len() > 3);
    // What truncation after a cut does to segments nobody needs any more.
    for s in &segments[..2] {
        std::fs::remove_file(store.wal_dir().join(format!("{s:08}"))).unwrap();
    }
    let read = tail.read(store.wal_end(), |_, _| {}).unwrap();
    assert_eq!(read.skipped_segments, Some((segments[0], segments[1])));
    let (_, got) = follow(&store, &mut tail);
    assert!(!got.is_empty() && got.last().unwrap().1 == 200_000);
}
