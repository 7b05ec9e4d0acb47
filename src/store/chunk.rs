//! Gorilla-style compressed sample chunks for the head (Facebook's "Gorilla" paper,
//! as Prometheus's XOR chunks): timestamps as delta-of-delta in variable-width
//! buckets, values as the XOR with the previous value, leading/trailing zeros
//! elided. Any f64 bit pattern round-trips exactly (staleness markers included).

/// Samples per head chunk before it is closed (Prometheus uses 120).
pub const CHUNK_SAMPLES: u16 = 120;

#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0..8); 0 when the last byte is full.
    free: u8,
}

impl BitWriter {
    #[inline]
    fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        if bit {
            if let Some(last) = self.bytes.last_mut() {
                *last |= 1 << (self.free - 1);
            }
        }
        self.free -= 1;
    }

    /// Writes the low `n` bits of `v`, most significant first.
    #[inline]
    fn write_bits(&mut self, v: u64, mut n: u32) {
        while n > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let take = n.min(self.free as u32);
            let shift = n - take;
            let chunk = ((v >> shift) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << (self.free as u32 - take);
            }
            self.free -= take as u8;
            n -= take;
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    #[inline]
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(bit)
    }

    #[inline]
    fn read_bits(&mut self, mut n: u32) -> Option<u64> {
        let mut out = 0u64;
        while n > 0 {
            let byte = *self.bytes.get(self.pos / 8)? as u64;
            let avail = 8 - (self.pos % 8) as u32;
            let take = n.min(avail);
            let bits = (byte >> (avail - take)) & ((1u64 << take) - 1);
            out = if take == 64 {
                bits
            } else {
                (out << take) | bits
            };
            self.pos += take as usize;
            n -= take;
        }
        Some(out)
    }
}

/// An appendable chunk. Encoder state lives beside the bytes so appends are O(1).
pub struct XorChunk {
    bits: BitWriter,
    count: u16,
    first_t: i64,
    last_t: i64,
    last_delta: i64,
    last_v: u64,
    leading: u8,
    trailing: u8,
}

impl XorChunk {
    pub fn new() -> XorChunk {
        XorChunk {
            bits: BitWriter::default(),
            count: 0,
            first_t: 0,
            last_t: 0,
            last_delta: 0,
            last_v: 0,
            leading: 0xff,
            trailing: 0,
        }
    }

    pub fn count(&self) -> u16 {
        self.count
    }
    pub fn first_t(&self) -> i64 {
        self.first_t
    }
    pub fn last_t(&self) -> i64 {
        self.last_t
    }
    pub fn last_value_bits(&self) -> u64 {
        self.last_v
    }

    /// Appends a sample; the caller guarantees `t` is after the last one.
    pub fn append(&mut self, t: i64, v: f64) {
        let v = v.to_bits();
        match self.count {
            0 => {
                self.bits.write_bits(t as u64, 64);
                self.bits.write_bits(v, 64);
                self.first_t = t;
            }
            _ => {
                let delta = t.wrapping_sub(self.last_t);
                let dod = delta.wrapping_sub(self.last_delta);
                self.write_dod(dod);
                self.last_delta = delta;
                self.write_value(v);
            }
        }
        self.last_t = t;
        self.last_v = v;
        self.count += 1;
    }

    fn write_dod(&mut self, dod: i64) {
        let w = &mut self.bits;
        if dod == 0 {
            w.write_bit(false);
        } else if (-(1 << 13)..(1 << 13)).contains(&dod) {
            w.write_bits(0b10, 2);
            w.write_bits(dod as u64, 14);
        } else if (-(1 << 16)..(1 << 16)).contains(&dod) {
            w.write_bits(0b110, 3);
            w.write_bits(dod as u64, 17);
        } else if (-(1 << 19)..(1 << 19)).contains(&dod) {
            w.write_bits(0b1110, 4);
            w.write_bits(dod as u64, 20);
        } else {
            w.write_bits(0b1111, 4);
            w.write_bits(dod as u64, 64);
        }
    }

    fn write_value(&mut self, v: u64) {
        let x = v ^ self.last_v;
        let w = &mut self.bits;
        if x == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            w.write_bit(false);
            let sig = 64 - self.leading as u32 - self.trailing as u32;
            w.write_bits(x >> self.trailing, sig);
        } else {
            w.write_bit(true);
            let sig = 64 - leading as u32 - trailing as u32;
            w.write_bits(leading as u64, 5);
            // 64 significant bits are written as 0 in 6 bits.
            w.write_bits((sig & 63) as u64, 6);
            w.write_bits(x >> trailing, sig);
            self.leading = leading;
            self.trailing = trailing;
        }
    }

    /// The encoded bytes (self-describing given the sample count).
    pub fn bytes(&self) -> &[u8] {
        &self.bits.bytes
    }

    /// Closes the chunk. Its samples are re-encoded the way blocks store them
    /// (delta-of-delta timestamps; values as scaled decimals' deltas when they are
    /// short decimals, else XOR'd bits), as varints: exporter values are mostly short
    /// decimals, on which XOR chunks spend 5–8 bytes per sample and this 2–3.
    pub fn into_frozen(self) -> FrozenChunk {
        let (mut ts, mut vs) = (
            Vec::with_capacity(self.count as usize),
            Vec::with_capacity(self.count as usize),
        );
        self.decode_range(i64::MIN, i64::MAX, &mut ts, &mut vs);
        let (mut tcol, mut vcol) = (Vec::with_capacity(ts.len()), Vec::with_capacity(vs.len()));
        super::block::encode_ts(&ts, &mut tcol);
        let (mode, scale) = super::block::encode_values(&vs, &mut vcol);
        let mut bytes = Vec::with_capacity(2 + ts.len() * 3);
        bytes.push(mode);
        bytes.push(scale);
        for &t in &tcol {
            super::wal::put_varint(&mut bytes, t);
        }
        for &v in &vcol {
            if mode == 0 {
                super::wal::put_xor_value(&mut bytes, 0, v as u64);
            } else {
                super::wal::put_varint(&mut bytes, v);
            }
        }
        FrozenChunk {
            bytes: bytes.into_boxed_slice(),
            count: ts.len() as u16,
            first_t: self.first_t,
            last_t: self.last_t,
        }
    }

    pub fn decode_range(&self, mint: i64, maxt: i64, ts: &mut Vec<i64>, vs: &mut Vec<f64>) {
        decode_range(self.bytes(), self.count, mint, maxt, ts, vs);
    }
}

impl Default for XorChunk {
    fn default() -> Self {
        XorChunk::new()
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
        decode_frozen(&self.bytes, self.count, mint, maxt, ts, vs);
    }
}

/// Decodes the samples with `mint <= t <= maxt` of a closed chunk's bytes onto
/// `ts`/`vs`. Bytes that end early (damage the caller's checksum did not catch)
/// stop the decoding rather than panic.
pub fn decode_frozen(
    bytes: &[u8],
    count: u16,
    mint: i64,
    maxt: i64,
    ts: &mut Vec<i64>,
    vs: &mut Vec<f64>,
) {
    let n = count as usize;
    let mut c = super::wal::Cursor::new(bytes);
    let (Some(mode), Some(scale)) = (c.byte(), c.byte()) else {
        return;
    };
    let (mut tcol, mut vcol) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let Some(t) = c.varint() else { return };
        tcol.push(t);
    }
    for _ in 0..n {
        let v = if mode == 0 {
            super::wal::get_xor_value(&mut c, 0).map(|x| x as i64)
        } else {
            c.varint()
        };
        let Some(v) = v else { return };
        vcol.push(v);
    }
    let (mut t, mut v) = (Vec::with_capacity(n), Vec::with_capacity(n));
    super::block::decode_ts(&tcol, &mut t);
    super::block::decode_values(&vcol, mode, scale, &mut v);
    let lo = t.partition_point(|&x| x < mint);
    let hi = t.partition_point(|&x| x <= maxt);
    if lo < hi {
        ts.extend_from_slice(&t[lo..hi]);
        vs.extend_from_slice(&v[lo..hi]);
    }
}

/// Decodes the samples with `mint <= t <= maxt` onto `ts`/`vs`. A chunk is produced by
/// this process only (head chunks are never read from disk), so a short buffer can only
/// mean a bug; decoding then stops rather than panicking.
pub fn decode_range(
    bytes: &[u8],
    count: u16,
    mint: i64,
    maxt: i64,
    ts: &mut Vec<i64>,
    vs: &mut Vec<f64>,
) {
    let mut r = BitReader { bytes, pos: 0 };
    let (mut t, mut v) = match (r.read_bits(64), r.read_bits(64)) {
        (Some(t), Some(v)) => (t as i64, v),
        _ => return,
    };
    let (mut delta, mut leading, mut trailing) = (0i64, 0u32, 0u32);
    for i in 0..count {
        if i > 0 {
            let Some(dod) = read_dod(&mut r) else { return };
            delta = delta.wrapping_add(dod);
            t = t.wrapping_add(delta);
            match r.read_bit() {
                Some(false) => {}
                Some(true) => {
                    match r.read_bit() {
                        Some(false) => {}
                        Some(true) => {
                            let (Some(l), Some(s)) = (r.read_bits(5), r.read_bits(6)) else {
                                return;
                            };
                            let sig = if s == 0 { 64 } else { s as u32 };
                            leading = l as u32;
                            trailing = 64 - leading - sig;
                        }
                        None => return,
                    }
                    let sig = 64 - leading - trailing;
                    let Some(bits) = r.read_bits(sig) else { return };
                    v ^= bits << trailing;
                }
                None => return,
            }
        }
        if t > maxt {
            return;
        }
        if t >= mint {
            ts.push(t);
            vs.push(f64::from_bits(v));
        }
    }
}

#[inline]
fn read_dod(r: &mut BitReader) -> Option<i64> {
    let mut prefix = 0;
    while prefix < 4 && r.read_bit()? {
        prefix += 1;
    }
    let bits = match prefix {
        0 => return Some(0),
        1 => 14,
        2 => 17,
        3 => 20,
        _ => 64,
    };
    let raw = r.read_bits(bits)?;
    if bits == 64 {
        return Some(raw as i64);
    }
    // Sign-extend.
    let shift = 64 - bits;
    Some(((raw << shift) as i64) >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_bit_pattern() {
        let mut c = XorChunk::new();
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
        for &(t, v) in &samples {
            c.append(t, v);
        }
        let (mut ts, mut vs) = (vec![], vec![]);
        c.decode_range(i64::MIN, i64::MAX, &mut ts, &mut vs);
        assert_eq!(ts, samples.iter().map(|s| s.0).collect::<Vec<_>>());
        let bits: Vec<u64> = vs.iter().map(|v| v.to_bits()).collect();
        assert_eq!(
            bits,
            samples.iter().map(|s| s.1.to_bits()).collect::<Vec<_>>()
        );
        let (mut ts, mut vs) = (vec![], vec![]);
        let frozen = c.into_frozen();
        frozen.decode_range(6000, 16000, &mut ts, &mut vs);
        assert_eq!(ts, vec![6000, 11003, 16000]);
        let (mut ts, mut vs) = (vec![], vec![]);
        frozen.decode_range(i64::MIN, i64::MAX, &mut ts, &mut vs);
        let bits: Vec<u64> = vs.iter().map(|v| v.to_bits()).collect();
        assert_eq!(
            bits,
            samples.iter().map(|s| s.1.to_bits()).collect::<Vec<_>>()
        );
        // Short decimals freeze to a few bytes per sample.
        let mut c = XorChunk::new();
        for i in 0..120 {
            c.append(
                1_700_000_000_000 + i * 5000 + i % 3,
                500.0 + (i as f64 * 0.37).sin().mul_add(20.0, 0.0).round() / 100.0,
            );
        }
        let f = c.into_frozen();
        assert!(f.bytes.len() < 120 * 3, "{}", f.bytes.len());
    }

    #[test]
    fn regular_series_are_small() {
        let mut c = XorChunk::new();
        for i in 0..120 {
            c.append(1_700_000_000_000 + i * 5000, 42.0);
        }
        // 16 bytes for the first sample, 17 bits for the second, then 2 bits each.
        assert!(c.bytes().len() <= 16 + 3 + 30, "{}", c.bytes().len());
    }
}
