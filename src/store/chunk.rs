//! Head chunks: a series' samples as they arrive, a few bytes each. The same bytes
//! are the open chunk in memory and, once closed, the record payload in a head chunk
//! file ([`super::head_chunks`]), so closing a chunk does not re-encode it.
//!
//! Exporters print short decimals (counters as integers, gauges with a few digits),
//! on which Gorilla's XOR encoding spends 4–8 bytes a sample. Here a value is scaled
//! by a power of ten to an integer, and its delta-of-delta is written as a varint.
//! Timestamps are delta-of-delta too. A sample whose time and value both follow the
//! trend within a few units (a steady counter, a constant, scrape jitter of a few ms)
//! is one byte; others 2–4. Any f64 bit pattern round-trips exactly: a value that is
//! no decimal at the chunk's scale raises the scale or, failing that, is written as
//! its XOR with the previous value; a chunk of many such values switches to XOR for
//! the rest.
//!
//! ```text
//! first sample:  varint t | mode: scale 0..=9, or XOR_MODE | value
//! next samples:  0b0xxx_xttt: zigzag(dod(t)) = ttt and zigzag(dod(scaled)) = xxxx
//!                              (XOR mode: xxxx = 0, the value repeats)
//!              | 0b1mzz_zzzz [uvarint]: zigzag(dod(t)) = zzzzzz, more bits follow if m | value
//! value, decimal mode:  uvarint(zigzag(dod(scaled)) << 1)
//!                     | ESCAPE, then 1..=10 (the scale becomes n-1; a decimal value follows)
//!                                 or 0 (one value as XOR) or XOR_MODE (XOR from here on)
//! value, XOR mode:     trailing-zero byte | uvarint of the XOR'd bits (see wal::put_xor_value)
//! ```

use super::wal::{get_xor_value, Cursor};

/// Samples per head chunk before it is closed (Prometheus uses 120).
pub const CHUNK_SAMPLES: u16 = 120;
/// A chunk is closed once its bytes reach this, too: the open chunks are what the
/// head keeps in memory, and every series' open chunk is near full at once (all
/// close at a block boundary), so this bounds the head's memory for samples. Steady
/// counters and constants (a byte a sample) still fill 120 samples.
pub const CHUNK_BYTES: usize = 128;

const MAX_SCALE: u8 = 9;
const POW10: [f64; MAX_SCALE as usize + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Scaled values stay below this, so every delta-of-delta fits its varint.
const MAX_SCALED: i64 = 9_000_000_000_000_000;
const XOR_MODE: u8 = 0xff;
/// A value token of 1 (odd: no zigzag'd delta-of-delta shifted left is odd).
const ESCAPE: u8 = 1;
const ONE_XOR: u8 = 0;
/// Values that are no decimal, in one chunk, before it switches to XOR mode.
const XOR_AFTER: u8 = 3;

/// `v` as an integer at `scale`, if that round-trips bit-exactly (so not -0.0).
#[inline]
fn scaled(v: f64, scale: u8) -> Option<i64> {
    let p = *POW10.get(scale as usize)?;
    let i = (v * p).round();
    if i.is_nan() || i.abs() > MAX_SCALED as f64 {
        return None;
    }
    let x = i as i64;
    ((x as f64 / p).to_bits() == v.to_bits()).then_some(x)
}

/// The smallest scale at which `v` is a decimal, at least `from`.
fn scale_of(v: f64, from: u8) -> Option<(u8, i64)> {
    (from..=MAX_SCALE).find_map(|s| scaled(v, s).map(|x| (s, x)))
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// The bytes of one sample, built on the stack (at most 23 of them).
struct Token {
    b: [u8; 32],
    n: usize,
}

impl Token {
    fn new() -> Token {
        Token { b: [0; 32], n: 0 }
    }

    #[inline]
    fn byte(&mut self, x: u8) {
        self.b[self.n] = x;
        self.n += 1;
    }

    #[inline]
    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    #[inline]
    fn varint(&mut self, v: i64) {
        self.uvarint(zigzag(v));
    }

    /// A zigzag'd timestamp delta-of-delta after the long-form flag: 6 bits in the
    /// first byte, the rest as a uvarint.
    #[inline]
    fn time(&mut self, zt: u64) {
        let more = if zt >= 64 { 0x40 } else { 0 };
        self.byte(0x80 | more | (zt & 0x3f) as u8);
        if zt >= 64 {
            self.uvarint(zt >> 6);
        }
    }

    /// As [`super::wal::put_xor_value`].
    #[inline]
    fn xor(&mut self, prev: u64, v: u64) {
        let x = prev ^ v;
        if x == 0 {
            self.byte(64);
        } else {
            let tz = x.trailing_zeros();
            self.byte(tz as u8);
            self.uvarint(x >> tz);
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.b[..self.n]
    }
}

/// `n` rounded up to a size that uses a glibc allocation to its end (requests plus
/// an 8-byte header are rounded up to 16).
fn malloc_size(n: usize) -> usize {
    (n + 8).div_ceil(16) * 16 - 8
}

/// The chunk a series appends to. Its bytes grow by about a quarter at a time (not
/// doubling), and the encoder's state lives beside them, so an append is O(1).
pub struct OpenChunk {
    buf: Box<[u8]>,
    len: u32,
    count: u16,
    /// Decimal scale, or `XOR_MODE`.
    scale: u8,
    /// Values written as XOR in decimal mode so far.
    xor_values: u8,
    last_t: i64,
    last_dt: i64,
    /// Last decimal value (scaled) and its delta.
    x: i64,
    dx: i64,
    last_bits: u64,
}

impl OpenChunk {
    pub fn new() -> OpenChunk {
        OpenChunk {
            buf: Box::default(),
            len: 0,
            count: 0,
            scale: 0,
            xor_values: 0,
            last_t: 0,
            last_dt: 0,
            x: 0,
            dx: 0,
            last_bits: 0,
        }
    }

    /// An empty chunk whose bytes start with room for `bytes` (rounded to what the
    /// allocator hands out anyway): the size of the series' previous chunk, which
    /// the next one usually matches, so it is not grown a quarter at a time past
    /// it with up to a quarter unused.
    pub fn with_capacity(bytes: usize) -> OpenChunk {
        let mut c = OpenChunk::new();
        if bytes > 0 {
            c.buf = vec![0u8; malloc_size(bytes)].into_boxed_slice();
        }
        c
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    /// Time of the first sample (meaningless while the chunk is empty).
    pub fn first_t(&self) -> i64 {
        Cursor::new(self.bytes()).varint().unwrap_or(self.last_t)
    }

    pub fn last_t(&self) -> i64 {
        self.last_t
    }

    pub fn last_value_bits(&self) -> u64 {
        self.last_bits
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// Appends `tail` to the bytes, growing them by a quarter (rounded to what the
    /// allocator hands out anyway) when full.
    fn put(&mut self, tail: &[u8]) {
        let len = self.len as usize;
        let need = len + tail.len();
        if need > self.buf.len() {
            let cap = self.buf.len();
            let grown = malloc_size((cap + cap / 4 + 16).max(need));
            let mut buf = vec![0u8; grown].into_boxed_slice();
            buf[..len].copy_from_slice(&self.buf[..len]);
            self.buf = buf;
        }
        self.buf[len..need].copy_from_slice(tail);
        self.len = need as u32;
    }

    /// Appends a sample; the caller guarantees `t` is after the last one.
    pub fn append(&mut self, t: i64, v: f64) {
        let bits = v.to_bits();
        let mut tok = Token::new();
        if self.count == 0 {
            tok.varint(t);
            match scale_of(v, 0) {
                Some((s, x)) => {
                    tok.byte(s);
                    tok.varint(x);
                    (self.scale, self.x) = (s, x);
                }
                None => {
                    tok.byte(XOR_MODE);
                    tok.xor(0, bits);
                    self.scale = XOR_MODE;
                }
            }
        } else {
            let dt = t.wrapping_sub(self.last_t);
            let zt = zigzag(dt.wrapping_sub(self.last_dt));
            self.last_dt = dt;
            match self.short_value(zt, v, bits) {
                Some(zx) => tok.byte((zt | zx << 3) as u8),
                None => {
                    tok.time(zt);
                    self.encode_value(&mut tok, v, bits);
                }
            }
        }
        self.put(tok.as_slice());
        self.last_t = t;
        self.last_bits = bits;
        self.count += 1;
    }

    /// The 4-bit value part of a one-byte sample, if the sample fits one: its time
    /// and value delta-of-deltas are small (the decimal state is then updated).
    fn short_value(&mut self, zt: u64, v: f64, bits: u64) -> Option<u64> {
        if zt >= 8 {
            return None;
        }
        if self.scale == XOR_MODE {
            return (bits == self.last_bits).then_some(0);
        }
        let x = scaled(v, self.scale)?;
        let dx = x.wrapping_sub(self.x);
        let zx = zigzag(dx.wrapping_sub(self.dx));
        if zx >= 16 {
            return None;
        }
        (self.x, self.dx) = (x, dx);
        Some(zx)
    }

    fn encode_value(&mut self, tok: &mut Token, v: f64, bits: u64) {
        if self.scale == XOR_MODE {
            tok.xor(self.last_bits, bits);
            return;
        }
        if let Some(x) = scaled(v, self.scale) {
            self.put_decimal(tok, x);
            return;
        }
        // A finer scale, if the state scales up with it.
        if let Some((s, x)) = scale_of(v, self.scale + 1) {
            let k = POW10[(s - self.scale) as usize] as i64;
            let up = self
                .x
                .checked_mul(k)
                .zip(self.dx.checked_mul(k))
                .filter(|(x, dx)| x.abs() <= MAX_SCALED && dx.abs() <= 2 * MAX_SCALED);
            if let Some((px, pdx)) = up {
                tok.byte(ESCAPE);
                tok.byte(s + 1);
                (self.scale, self.x, self.dx) = (s, px, pdx);
                self.put_decimal(tok, x);
                return;
            }
        }
        tok.byte(ESCAPE);
        self.xor_values += 1;
        if self.xor_values >= XOR_AFTER {
            tok.byte(XOR_MODE);
            self.scale = XOR_MODE;
        } else {
            tok.byte(ONE_XOR);
        }
        tok.xor(self.last_bits, bits);
    }

    fn put_decimal(&mut self, tok: &mut Token, x: i64) {
        let dx = x.wrapping_sub(self.x);
        tok.uvarint(zigzag(dx.wrapping_sub(self.dx)) << 1);
        (self.x, self.dx) = (x, dx);
    }

    /// Closes the chunk: its bytes, trimmed, with the times a read needs.
    pub fn close(self) -> FrozenChunk {
        FrozenChunk {
            first_t: self.first_t(),
            last_t: self.last_t,
            count: self.count,
            bytes: self.bytes().into(),
        }
    }

    pub fn decode_range(&self, mint: i64, maxt: i64, ts: &mut Vec<i64>, vs: &mut Vec<f64>) {
        decode_range(self.bytes(), self.count, mint, maxt, ts, vs);
    }
}

impl Default for OpenChunk {
    fn default() -> Self {
        OpenChunk::new()
    }
}

/// A closed, immutable chunk.
pub struct FrozenChunk {
    pub bytes: Box<[u8]>,
    pub count: u16,
    pub first_t: i64,
    pub last_t: i64,
}

impl FrozenChunk {
    pub fn decode_range(&self, mint: i64, maxt: i64, ts: &mut Vec<i64>, vs: &mut Vec<f64>) {
        decode_range(&self.bytes, self.count, mint, maxt, ts, vs);
    }
}

/// Appends a decoded sample if it lies in `[mint, maxt]`; false once past `maxt`,
/// where decoding stops (samples only get later).
#[inline(always)]
fn keep_in_range(
    t: i64,
    bits: u64,
    mint: i64,
    maxt: i64,
    ts: &mut Vec<i64>,
    vs: &mut Vec<f64>,
) -> bool {
    if t > maxt {
        return false;
    }
    if t >= mint {
        ts.push(t);
        vs.push(f64::from_bits(bits));
    }
    true
}

/// Decodes the samples with `mint <= t <= maxt` onto `ts`/`vs`. Bytes that end early
/// or make no sense (damage a checksum did not catch) stop the decoding; it never
/// panics.
pub fn decode_range(
    bytes: &[u8],
    count: u16,
    mint: i64,
    maxt: i64,
    ts: &mut Vec<i64>,
    vs: &mut Vec<f64>,
) {
    let mut c = Cursor::new(bytes);
    let (Some(mut t), Some(mut scale)) = (c.varint(), c.byte()) else {
        return;
    };
    if t <= maxt {
        ts.reserve(count as usize);
        vs.reserve(count as usize);
    }
    let (mut dt, mut x, mut dx, mut bits) = (0i64, 0i64, 0i64, 0u64);
    for i in 0..count {
        if i == 0 {
            if scale == XOR_MODE {
                let Some(b) = get_xor_value(&mut c, 0) else {
                    return;
                };
                bits = b;
            } else {
                let Some(p) = POW10.get(scale as usize) else {
                    return;
                };
                let Some(v) = c.varint() else { return };
                x = v;
                bits = (x as f64 / p).to_bits();
            }
        } else {
            let Some(first) = c.byte() else { return };
            if first < 0x80 {
                // One byte: small time and value delta-of-deltas.
                dt = dt.wrapping_add(unzigzag((first & 7) as u64));
                t = t.wrapping_add(dt);
                let zx = (first >> 3) as u64;
                if scale == XOR_MODE {
                    if zx != 0 {
                        return;
                    }
                } else {
                    dx = dx.wrapping_add(unzigzag(zx));
                    x = x.wrapping_add(dx);
                    bits = (x as f64 / POW10[scale as usize]).to_bits();
                }
                if !keep_in_range(t, bits, mint, maxt, ts, vs) {
                    return;
                }
                continue;
            }
            let mut zt = (first & 0x3f) as u64;
            if first & 0x40 != 0 {
                let Some(more) = c.uvarint() else { return };
                zt |= more << 6;
            }
            dt = dt.wrapping_add(unzigzag(zt));
            t = t.wrapping_add(dt);
            if scale == XOR_MODE {
                let Some(b) = get_xor_value(&mut c, bits) else {
                    return;
                };
                bits = b;
            } else {
                let Some(tok) = c.uvarint() else { return };
                // The decimal token to apply, if the value is a decimal.
                let decimal = if tok != ESCAPE as u64 {
                    Some(tok)
                } else {
                    match c.byte() {
                        Some(kind @ (ONE_XOR | XOR_MODE)) => {
                            if kind == XOR_MODE {
                                scale = XOR_MODE;
                            }
                            let Some(b) = get_xor_value(&mut c, bits) else {
                                return;
                            };
                            bits = b;
                            None
                        }
                        Some(n) if (1..=MAX_SCALE + 1).contains(&n) && n - 1 > scale => {
                            let k = POW10[(n - 1 - scale) as usize] as i64;
                            scale = n - 1;
                            x = x.wrapping_mul(k);
                            dx = dx.wrapping_mul(k);
                            let Some(next) = c.uvarint() else { return };
                            Some(next)
                        }
                        _ => return,
                    }
                };
                if let Some(tok) = decimal {
                    if tok & 1 == 1 {
                        return;
                    }
                    dx = dx.wrapping_add(unzigzag(tok >> 1));
                    x = x.wrapping_add(dx);
                    bits = (x as f64 / POW10[scale as usize]).to_bits();
                }
            }
        }
        if !keep_in_range(t, bits, mint, maxt, ts, vs) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[(i64, f64)]) -> OpenChunk {
        let mut c = OpenChunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        let (mut ts, mut vs) = (vec![], vec![]);
        c.decode_range(i64::MIN, i64::MAX, &mut ts, &mut vs);
        assert_eq!(ts, samples.iter().map(|s| s.0).collect::<Vec<_>>());
        let bits: Vec<u64> = vs.iter().map(|v| v.to_bits()).collect();
        let want: Vec<u64> = samples.iter().map(|s| s.1.to_bits()).collect();
        assert_eq!(bits, want, "{samples:?}");
        c
    }

    #[test]
    fn round_trips_every_bit_pattern() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let samples: Vec<(i64, f64)> = vec![
            (1000, 1.0),
            (6000, 1.0),
            (11003, 2.5),
            (16000, -0.0),
            (16001, stale),
            (99_999_999, f64::INFINITY),
            (100_000_000, 1e300),
            (100_000_001, f64::MIN_POSITIVE),
            (200_000_001, 123456.789),
            (i64::MAX / 2, 3.0),
        ];
        let c = round_trip(&samples);
        let (mut ts, mut vs) = (vec![], vec![]);
        let frozen = c.close();
        frozen.decode_range(6000, 16000, &mut ts, &mut vs);
        assert_eq!(ts, vec![6000, 11003, 16000]);
        assert_eq!(vs[2].to_bits(), (-0.0f64).to_bits());
        // Each first value of another kind, and scale changes in between.
        for first in [stale, -0.0, 0.1 + 0.2, 7.0, 7.25, f64::NAN, -1e20] {
            let mut s = vec![(5, first)];
            for (i, v) in [
                1.5,
                1.25,
                3.0,
                0.1 + 0.2,
                -0.0,
                1e-9,
                4.125,
                stale,
                5.0,
                6.0,
            ]
            .into_iter()
            .enumerate()
            {
                s.push((10 + i as i64 * 7, v));
            }
            round_trip(&s);
        }
        // Extremes of the scaled range and of time.
        round_trip(&[
            (i64::MIN, 9.0e15),
            (0, -9.0e15),
            (i64::MAX, 8_999_999_999.999_999),
        ]);
    }

    #[test]
    fn a_chunk_sized_like_the_previous_one_takes_its_samples_without_growing() {
        let samples: Vec<(i64, f64)> = (0..120).map(|i| (i * 5000, i as f64 * 1.5)).collect();
        let first = round_trip(&samples);
        let mut next = OpenChunk::with_capacity(first.bytes().len());
        let room = next.buf.len();
        assert!(room >= first.bytes().len() && (room + 8) % 16 == 0);
        for &(t, v) in &samples {
            next.append(t, v);
        }
        assert_eq!(next.buf.len(), room);
        assert_eq!(next.bytes(), first.bytes());
        assert!(OpenChunk::with_capacity(0).buf.is_empty());
    }

    #[test]
    fn exporter_values_cost_a_few_bytes() {
        // A counter rising about 1234 per scrape and a gauge with 2 decimals, 5 s
        // scrapes with a few ms of jitter.
        let mut counter = OpenChunk::new();
        let mut gauge = OpenChunk::new();
        for i in 0..120i64 {
            let t = 1_700_000_000_000 + i * 5000 + i % 3;
            counter.append(t, (1_000_000_000 + i * 1234 + i % 2) as f64);
            let g = 500.0 + ((i as f64 * 0.37).sin() * 2000.0).round() / 100.0;
            gauge.append(t, g);
        }
        assert!(
            counter.bytes().len() < 120 * 2 + 16,
            "{}",
            counter.bytes().len()
        );
        assert!(
            gauge.bytes().len() < 120 * 3 + 16,
            "{}",
            gauge.bytes().len()
        );
        // Room for growth is a quarter, not double.
        assert!(gauge.buf.len() < gauge.bytes().len() * 5 / 4 + 32);
    }

    #[test]
    fn random_values_round_trip() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let mut s = Vec::new();
            let mut t = (next() % 1_000_000) as i64;
            for _ in 0..(next() % 130) {
                t += (next() % 20_000) as i64;
                let v = match next() % 6 {
                    0 => f64::from_bits(next()),
                    1 => (next() % 10_000) as f64 / 100.0,
                    2 => (next() % 1000) as f64,
                    3 => -((next() % 1_000_000) as f64) / 1000.0,
                    4 => s.last().map_or(1.0, |p: &(i64, f64)| p.1),
                    _ => (next() % 7) as f64 * 1e12,
                };
                s.push((t, v));
            }
            round_trip(&s);
        }
    }

    #[test]
    fn damaged_bytes_stop_decoding_without_panic() {
        let mut c = OpenChunk::new();
        for i in 0..50 {
            c.append(i * 1000, i as f64 * 0.5);
        }
        let bytes = c.bytes().to_vec();
        for cut in 0..bytes.len() {
            let (mut ts, mut vs) = (vec![], vec![]);
            decode_range(&bytes[..cut], 50, i64::MIN, i64::MAX, &mut ts, &mut vs);
            assert!(ts.len() < 50);
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] = 0xff;
            let (mut ts, mut vs) = (vec![], vec![]);
            decode_range(&b, 50, i64::MIN, i64::MAX, &mut ts, &mut vs);
            assert_eq!(ts.len(), vs.len());
        }
    }
}
