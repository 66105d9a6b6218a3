//! Quantised weight formats, ggml-compatible block layouts.
//!
//! A matrix is `rows` rows of [`row_bytes`]`(qt, cols)` bytes, back to back, row-major
//! `[out, in]`. Quantised rows are whole blocks of [`QK`] values; a row whose length is not a
//! multiple of 32 is zero-padded up to the next block (stories260K has hidden = 172).
//!
//! Block layouts (little endian, byte for byte the ggml ones):
//! - Q8_0: `f16 d` + 32 × `i8 q`;                 value = q * d            (34 bytes)
//! - Q4_0: `f16 d` + 16 nibble bytes;            value = (q - 8) * d      (18 bytes)
//! - Q4_1: `f16 d`, `f16 m` + 16 nibble bytes;   value = q * d + m        (20 bytes)
//!
//! In the nibble bytes, byte `j`'s low nibble is element `j` and its high nibble element `j + 16`.

/// Values per quantisation block.
pub const QK: usize = 32;

/// Bytes in one block of each quantised type.
pub const Q8_0_BLOCK: usize = 2 + QK;
pub const Q4_0_BLOCK: usize = 2 + QK / 2;
pub const Q4_1_BLOCK: usize = 4 + QK / 2;

/// Storage type of a weight matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantType {
    F32,
    Q8_0,
    Q4_0,
    Q4_1,
}

impl QuantType {
    pub const ALL: [QuantType; 4] = [
        QuantType::F32,
        QuantType::Q8_0,
        QuantType::Q4_0,
        QuantType::Q4_1,
    ];

    /// Lower-case name used in model metadata: "f32", "q8_0", "q4_0", "q4_1".
    pub fn name(self) -> &'static str {
        match self {
            QuantType::F32 => "f32",
            QuantType::Q8_0 => "q8_0",
            QuantType::Q4_0 => "q4_0",
            QuantType::Q4_1 => "q4_1",
        }
    }

    /// Inverse of [`QuantType::name`] (case-insensitive).
    pub fn from_name(s: &str) -> Option<QuantType> {
        QuantType::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s))
    }

    /// Bytes of one block (F32: one value, 4 bytes).
    pub fn block_bytes(self) -> usize {
        match self {
            QuantType::F32 => 4,
            QuantType::Q8_0 => Q8_0_BLOCK,
            QuantType::Q4_0 => Q4_0_BLOCK,
            QuantType::Q4_1 => Q4_1_BLOCK,
        }
    }

    /// Values per block (F32: 1).
    pub fn block_values(self) -> usize {
        match self {
            QuantType::F32 => 1,
            _ => QK,
        }
    }
}

/// Number of blocks covering `cols` values (the last one zero-padded).
pub fn blocks_per_row(cols: usize) -> usize {
    cols.div_ceil(QK)
}

/// Bytes of one row of `cols` values: F32 is `4 * cols`, quantised types whole blocks.
pub fn row_bytes(qt: QuantType, cols: usize) -> usize {
    match qt {
        QuantType::F32 => 4 * cols,
        _ => blocks_per_row(cols) * qt.block_bytes(),
    }
}

/// Like [`row_bytes`] times `rows`, or `None` on overflow (for validating untrusted shapes).
pub fn matrix_bytes(qt: QuantType, rows: usize, cols: usize) -> Option<usize> {
    let blocks = match qt {
        QuantType::F32 => cols,
        _ => blocks_per_row(cols),
    };
    blocks.checked_mul(qt.block_bytes())?.checked_mul(rows)
}

// ---------------------------------------------------------------------------------------------
// IEEE 754 binary16 by hand (no_std, no `half`).

/// f16 bits -> f32 (exact).
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    if exp == 0 {
        // Zero or subnormal: man * 2^-24, exact in f32.
        let v = man as f32 * (1.0 / 16_777_216.0);
        return f32::from_bits(v.to_bits() | sign);
    }
    if exp == 31 {
        // Inf / NaN (keep the payload's top bits, force quiet).
        let nan = if man != 0 { 0x40_0000 | (man << 13) } else { 0 };
        return f32::from_bits(sign | 0x7f80_0000 | nan);
    }
    f32::from_bits(sign | ((exp + 112) << 23) | (man << 13))
}

/// f32 -> f16 bits, round to nearest even; overflow goes to infinity.
#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        let nan = if man != 0 {
            0x200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Result is an f16 subnormal (or zero): hm = m * 2^(e - 14).
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rem = m & ((1u32 << shift) - 1);
        let mut hm = m >> shift;
        if rem > half || (rem == half && hm & 1 == 1) {
            hm += 1; // may carry into the smallest normal: still the right encoding
        }
        return sign | hm as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) {
        h += 1; // carry may roll into the exponent, up to infinity: correct rounding
    }
    sign | h as u16
}

#[inline]
pub(crate) fn read_f16(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

#[inline]
fn write_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f32_to_f16(v).to_le_bytes());
}

#[inline]
pub(crate) fn abs(x: f32) -> f32 {
    f32::from_bits(x.to_bits() & 0x7fff_ffff)
}

/// Round half away from zero (C `roundf`), for values well inside i32 range.
#[inline]
pub(crate) fn round_i32(x: f32) -> i32 {
    if x >= 0.0 {
        (x + 0.5) as i32
    } else {
        (x - 0.5) as i32
    }
}

/// Copies block `b` of `src` into a zero-padded block of 32 values.
#[inline]
fn block_values(src: &[f32], b: usize) -> [f32; QK] {
    let mut v = [0.0f32; QK];
    let start = b * QK;
    let end = (start + QK).min(src.len());
    v[..end - start].copy_from_slice(&src[start..end]);
    v
}

/// Quantises one row of `src.len()` values into `dst` (exactly `row_bytes(qt, src.len())`
/// bytes). The tail of the last block is zero-padded.
///
/// Same rounding as ggml's reference quantisers, so our blocks match theirs for the same input.
pub fn quantize_row(qt: QuantType, src: &[f32], dst: &mut [u8]) {
    let cols = src.len();
    assert_eq!(dst.len(), row_bytes(qt, cols), "quantize_row: dst size");
    match qt {
        QuantType::F32 => {
            for (d, v) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&v.to_le_bytes());
            }
        }
        QuantType::Q8_0 => {
            for (b, blk) in dst.chunks_exact_mut(Q8_0_BLOCK).enumerate() {
                let v = block_values(src, b);
                let amax = v.iter().fold(0.0f32, |m, &x| m.max(abs(x)));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                write_f16(blk, 0, d);
                for (q, &x) in blk[2..].iter_mut().zip(&v) {
                    *q = round_i32(x * id) as i8 as u8;
                }
            }
        }
        QuantType::Q4_0 => {
            for (b, blk) in dst.chunks_exact_mut(Q4_0_BLOCK).enumerate() {
                let v = block_values(src, b);
                // The signed value of largest magnitude maps to -8 (the full 4-bit range).
                let (mut amax, mut max) = (0.0f32, 0.0f32);
                for &x in &v {
                    if abs(x) > amax {
                        amax = abs(x);
                        max = x;
                    }
                }
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                write_f16(blk, 0, d);
                for j in 0..QK / 2 {
                    let q0 = ((v[j] * id + 8.5) as i8).min(15) as u8;
                    let q1 = ((v[j + QK / 2] * id + 8.5) as i8).min(15) as u8;
                    blk[2 + j] = q0 | (q1 << 4);
                }
            }
        }
        QuantType::Q4_1 => {
            for (b, blk) in dst.chunks_exact_mut(Q4_1_BLOCK).enumerate() {
                let v = block_values(src, b);
                let min = v.iter().fold(f32::MAX, |m, &x| m.min(x));
                let max = v.iter().fold(f32::MIN, |m, &x| m.max(x));
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                write_f16(blk, 0, d);
                write_f16(blk, 2, min);
                for j in 0..QK / 2 {
                    let q0 = (((v[j] - min) * id + 0.5) as i8).min(15) as u8;
                    let q1 = (((v[j + QK / 2] - min) * id + 0.5) as i8).min(15) as u8;
                    blk[4 + j] = q0 | (q1 << 4);
                }
            }
        }
    }
}

/// Dequantises one row: `src` is `row_bytes(qt, dst.len())` bytes, exactly `dst.len()` values
/// are written (padding in the last block is dropped).
pub fn dequantize_row(qt: QuantType, src: &[u8], dst: &mut [f32]) {
    let cols = dst.len();
    assert_eq!(src.len(), row_bytes(qt, cols), "dequantize_row: src size");
    match qt {
        QuantType::F32 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
        _ => {
            for (b, blk) in src.chunks_exact(qt.block_bytes()).enumerate() {
                let v = dequantize_block(qt, blk);
                let start = b * QK;
                let end = (start + QK).min(cols);
                dst[start..end].copy_from_slice(&v[..end - start]);
            }
        }
    }
}

/// Dequantises one block of a quantised type into 32 values.
pub fn dequantize_block(qt: QuantType, blk: &[u8]) -> [f32; QK] {
    let mut v = [0.0f32; QK];
    match qt {
        QuantType::F32 => panic!("dequantize_block: F32 has no blocks"),
        QuantType::Q8_0 => {
            let d = read_f16(blk, 0);
            for (o, &q) in v.iter_mut().zip(&blk[2..Q8_0_BLOCK]) {
                *o = (q as i8) as f32 * d;
            }
        }
        QuantType::Q4_0 => {
            let d = read_f16(blk, 0);
            for j in 0..QK / 2 {
                let byte = blk[2 + j];
                v[j] = ((byte & 0x0f) as i32 - 8) as f32 * d;
                v[j + QK / 2] = ((byte >> 4) as i32 - 8) as f32 * d;
            }
        }
        QuantType::Q4_1 => {
            let d = read_f16(blk, 0);
            let m = read_f16(blk, 2);
            for j in 0..QK / 2 {
                let byte = blk[4 + j];
                v[j] = (byte & 0x0f) as f32 * d + m;
                v[j + QK / 2] = (byte >> 4) as f32 * d + m;
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for q in QuantType::ALL {
            assert_eq!(QuantType::from_name(q.name()), Some(q));
        }
        assert_eq!(QuantType::from_name("Q4_1"), Some(QuantType::Q4_1));
        assert_eq!(QuantType::from_name("q5_0"), None);
    }

    #[test]
    fn row_sizes() {
        assert_eq!(row_bytes(QuantType::F32, 172), 688);
        assert_eq!(row_bytes(QuantType::Q8_0, 172), 6 * 34);
        assert_eq!(row_bytes(QuantType::Q4_0, 64), 2 * 18);
        assert_eq!(row_bytes(QuantType::Q4_1, 1), 20);
        assert_eq!(matrix_bytes(QuantType::Q4_1, 3, 33), Some(3 * 40));
        assert_eq!(matrix_bytes(QuantType::F32, usize::MAX, 2), None);
    }

    #[test]
    fn f16_all_values_round_trip() {
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            if f.is_nan() {
                assert!(f16_to_f32(f32_to_f16(f)).is_nan());
            } else {
                assert_eq!(f32_to_f16(f), h, "h={h:#06x} f={f}");
            }
        }
    }

    #[test]
    fn f16_rounding_edges() {
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00); // halfway to 2^16 rounds to even -> inf
        assert_eq!(f32_to_f16(1e10), 0x7c00);
        assert_eq!(f32_to_f16(-1e10), 0xfc00);
        assert_eq!(f32_to_f16(2.0f32.powi(-24)), 0x0001);
        assert_eq!(f32_to_f16(2.0f32.powi(-25)), 0x0000); // tie to even
        assert_eq!(f32_to_f16(2.0f32.powi(-25) * 1.01), 0x0001);
        assert_eq!(f32_to_f16(1.0 + 2.0f32.powi(-11)), 0x3c00); // tie to even
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2.0f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
    }

    #[test]
    fn quantize_known_block() {
        // Q8_0: amax 127 -> d = 1, values exact.
        let src: [f32; 32] = core::array::from_fn(|i| i as f32 * 8.0 - 127.0);
        let mut blk = [0u8; Q8_0_BLOCK];
        quantize_row(QuantType::Q8_0, &src, &mut blk);
        assert_eq!(read_f16(&blk, 0), 1.0);
        let mut out = [0.0f32; 32];
        dequantize_row(QuantType::Q8_0, &blk, &mut out);
        assert_eq!(out, src);

        // Q4_0: value of largest magnitude -8 -> d = 1, q = v + 8.
        let src: [f32; 32] = core::array::from_fn(|i| (i % 16) as f32 - 8.0);
        let mut blk = [0u8; Q4_0_BLOCK];
        quantize_row(QuantType::Q4_0, &src, &mut blk);
        assert_eq!(read_f16(&blk, 0), 1.0);
        assert_eq!(blk[2], 0x00);
        assert_eq!(blk[3], 0x11);
        dequantize_row(QuantType::Q4_0, &blk, &mut out);
        assert_eq!(out, src);

        // Q4_1: min 10, max 25 -> d = 1, m = 10.
        let src: [f32; 32] = core::array::from_fn(|i| 10.0 + (i % 16) as f32);
        let mut blk = [0u8; Q4_1_BLOCK];
        quantize_row(QuantType::Q4_1, &src, &mut blk);
        assert_eq!((read_f16(&blk, 0), read_f16(&blk, 2)), (1.0, 10.0));
        assert_eq!(blk[4 + 15], 0xff);
        dequantize_row(QuantType::Q4_1, &blk, &mut out);
        assert_eq!(out, src);
    }

    #[test]
    fn tails_are_zero_padded_and_dropped() {
        let src: [f32; 40] = core::array::from_fn(|i| (i as f32 - 20.0) * 0.1);
        for qt in QuantType::ALL {
            let mut row = alloc::vec![0xAAu8; row_bytes(qt, src.len())];
            quantize_row(qt, &src, &mut row);
            let mut out = [f32::NAN; 40];
            dequantize_row(qt, &row, &mut out);
            let max_err = match qt {
                QuantType::F32 => 0.0,
                QuantType::Q8_0 => 2.0 / 127.0,
                _ => 2.0 / 7.0,
            };
            for (a, b) in src.iter().zip(&out) {
                assert!((a - b).abs() <= max_err, "{qt:?}: {a} vs {b}");
            }
            if qt != QuantType::F32 {
                let last = dequantize_block(qt, &row[row.len() - qt.block_bytes()..]);
                // Q4_1 padding dequantises to the block minimum m, others to exactly 0.
                let pad = if qt == QuantType::Q4_1 { last[31] } else { 0.0 };
                assert!(last[8..].iter().all(|&v| v == pad), "{qt:?}: {last:?}");
            }
        }
    }
}
