//! Quantised weight formats, ggml-compatible block layouts.
//!
//! A matrix is `rows` rows of [`row_bytes`]`(qt, cols)` bytes, back to back, row-major
//! `[out, in]`. Quantised rows are whole blocks of [`QuantType::block_values`] values: 32 for
//! the "legacy" types, 256 (a super-block, [`QK_K`]) for the K-quants. A row of a 32-block type
//! whose length is not a multiple of 32 is zero-padded up to the next block (stories260K has
//! hidden = 172). K-quant rows must be a whole number of super-blocks ([`check_row_len`]); as in
//! llama.cpp, tensors whose rows are not (Gemma 3's 640) are stored as Q5_0 / Q8_0 instead.
//!
//! Block layouts (little endian, byte for byte the ggml ones; `f16` is IEEE binary16):
//! - Q8_0 (34 bytes / 32): `f16 d`, `i8 q[32]`; value `j` = `q[j] * d`.
//! - Q4_0 (18 bytes / 32): `f16 d`, `u8 qs[16]`; value = `(q - 8) * d`.
//! - Q4_1 (20 bytes / 32): `f16 d`, `f16 m`, `u8 qs[16]`; value = `q * d + m`.
//! - Q5_0 (22 bytes / 32): `f16 d`, `u32 qh` (LE), `u8 qs[16]`; value = `(q - 16) * d`.
//! - Q5_1 (24 bytes / 32): `f16 d`, `f16 m`, `u32 qh`, `u8 qs[16]`; value = `q * d + m`.
//!
//!   In `qs`, byte `j`'s low nibble is the low 4 bits of element `j`, its high nibble those of
//!   element `j + 16`; Q5's fifth bit of element `j` is bit `j` of `qh`.
//! - Q4_K (144 bytes / 256): `f16 d`, `f16 dmin`, `u8 scales[12]`, `u8 qs[128]`. Eight
//!   sub-blocks of 32 with a 6-bit scale `sc` and 6-bit min `m` each; value =
//!   `d * sc * q - dmin * m`, `q` in 0..=15. Sub-block `2g` (values `64g..64g+32`) is the low
//!   nibbles of `qs[32g..32g+32]`, sub-block `2g + 1` the high nibbles. `scales`: for `j < 4`,
//!   `sc_j = scales[j] & 63`, `m_j = scales[j + 4] & 63`; for `j >= 4`,
//!   `sc_j = (scales[j + 4] & 15) | (scales[j - 4] >> 6) << 4`,
//!   `m_j = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4`.
//! - Q5_K (176 bytes / 256): `f16 d`, `f16 dmin`, `u8 scales[12]`, `u8 qh[32]`, `u8 qs[128]`:
//!   Q4_K plus a fifth bit: for value `64g + l` bit `2g` of `qh[l]`, for `64g + 32 + l` bit
//!   `2g + 1`; `q` in 0..=31.
//! - Q6_K (210 bytes / 256): `u8 ql[128]`, `u8 qh[64]`, `i8 scales[16]`, `f16 d`; value =
//!   `d * scales[s] * (q - 32)`, `q` in 0..=63. Half `h` (values `128h..128h+128`) uses
//!   `ql[64h..]`, `qh[32h..]`, `scales[8h..]`; its value `32k + l` (k in 0..4, l in 0..32) has
//!   low 4 bits from `ql[64h + 32(k & 1) + l]` (low nibble for k < 2, high for k >= 2), high 2
//!   bits `(qh[32h + l] >> 2k) & 3`, scale `scales[8h + 2k + l / 16]`.

/// Values per block of the 32-value types.
pub const QK: usize = 32;
/// Values per K-quant super-block.
pub const QK_K: usize = 256;

/// Bytes in one block of each quantised type.
pub const Q8_0_BLOCK: usize = 2 + QK;
pub const Q4_0_BLOCK: usize = 2 + QK / 2;
pub const Q4_1_BLOCK: usize = 4 + QK / 2;
pub const Q5_0_BLOCK: usize = 6 + QK / 2;
pub const Q5_1_BLOCK: usize = 8 + QK / 2;
pub const Q4_K_BLOCK: usize = 4 + 12 + QK_K / 2;
pub const Q5_K_BLOCK: usize = 4 + 12 + QK_K / 8 + QK_K / 2;
pub const Q6_K_BLOCK: usize = QK_K / 2 + QK_K / 4 + QK_K / 16 + 2;

/// Storage type of a weight matrix (ggml's type names).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantType {
    F32,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4_K,
    Q5_K,
    Q6_K,
}

impl QuantType {
    pub const ALL: [QuantType; 9] = [
        QuantType::F32,
        QuantType::Q8_0,
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q5_1,
        QuantType::Q4_K,
        QuantType::Q5_K,
        QuantType::Q6_K,
    ];

    /// Lower-case name used in model metadata: "f32", "q8_0", ..., "q6_k".
    pub fn name(self) -> &'static str {
        match self {
            QuantType::F32 => "f32",
            QuantType::Q8_0 => "q8_0",
            QuantType::Q4_0 => "q4_0",
            QuantType::Q4_1 => "q4_1",
            QuantType::Q5_0 => "q5_0",
            QuantType::Q5_1 => "q5_1",
            QuantType::Q4_K => "q4_k",
            QuantType::Q5_K => "q5_k",
            QuantType::Q6_K => "q6_k",
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
            QuantType::Q5_0 => Q5_0_BLOCK,
            QuantType::Q5_1 => Q5_1_BLOCK,
            QuantType::Q4_K => Q4_K_BLOCK,
            QuantType::Q5_K => Q5_K_BLOCK,
            QuantType::Q6_K => Q6_K_BLOCK,
        }
    }

    /// Values per block (F32: 1).
    pub fn block_values(self) -> usize {
        match self {
            QuantType::F32 => 1,
            QuantType::Q4_K | QuantType::Q5_K | QuantType::Q6_K => QK_K,
            _ => QK,
        }
    }

    /// Whether this is a 256-value super-block type.
    pub fn is_k_quant(self) -> bool {
        self.block_values() == QK_K
    }

    /// Blocks covering `cols` values (the last one zero-padded for the 32-value types).
    pub fn blocks(self, cols: usize) -> usize {
        cols.div_ceil(self.block_values())
    }
}

/// Why a row length cannot be stored in a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowLenError {
    pub qtype: QuantType,
    pub cols: usize,
}

impl core::fmt::Display for RowLenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} rows must be a multiple of {} values, not {}",
            self.qtype.name(),
            self.qtype.block_values(),
            self.cols
        )
    }
}

/// Whether rows of `cols` values can be stored in `qt`: K-quant rows are whole super-blocks
/// (the kernels and llama.cpp's files assume it); the other types pad the last block.
pub fn check_row_len(qt: QuantType, cols: usize) -> Result<(), RowLenError> {
    if qt.is_k_quant() && !cols.is_multiple_of(QK_K) {
        return Err(RowLenError { qtype: qt, cols });
    }
    Ok(())
}

/// Bytes of one row of `cols` values: F32 is `4 * cols`, quantised types whole blocks.
pub fn row_bytes(qt: QuantType, cols: usize) -> usize {
    qt.blocks(cols) * qt.block_bytes()
}

/// Like [`row_bytes`] times `rows`, or `None` on overflow or when [`check_row_len`] refuses
/// `cols` (for validating untrusted shapes).
pub fn matrix_bytes(qt: QuantType, rows: usize, cols: usize) -> Option<usize> {
    check_row_len(qt, cols).ok()?;
    qt.blocks(cols)
        .checked_mul(qt.block_bytes())?
        .checked_mul(rows)
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

/// Copies block `b` (of `N` values) of `src` into a zero-padded array.
#[inline]
fn block_values<const N: usize>(src: &[f32], b: usize) -> [f32; N] {
    let mut v = [0.0f32; N];
    let start = (b * N).min(src.len());
    let end = (start + N).min(src.len());
    v[..end - start].copy_from_slice(&src[start..end]);
    v
}

/// Quantises one row of `src.len()` values into `dst` (exactly `row_bytes(qt, src.len())`
/// bytes). The tail of the last block is zero-padded.
///
/// The 32-value types round with ggml's reference quantisers, so our blocks match theirs for
/// the same input. The K-quants use a plain min/max rounding (no scale search): GGUF K-quant
/// blocks are kept bit for bit by the converter, so this only serves tests and synthetic models.
pub fn quantize_row(qt: QuantType, src: &[f32], dst: &mut [u8]) {
    let cols = src.len();
    assert_eq!(dst.len(), row_bytes(qt, cols), "quantize_row: dst size");
    if qt == QuantType::F32 {
        for (d, v) in dst.chunks_exact_mut(4).zip(src) {
            d.copy_from_slice(&v.to_le_bytes());
        }
        return;
    }
    for (b, blk) in dst.chunks_exact_mut(qt.block_bytes()).enumerate() {
        if qt.is_k_quant() {
            quantize_super_block(qt, &block_values::<QK_K>(src, b), blk);
        } else {
            quantize_block(qt, &block_values::<QK>(src, b), blk);
        }
    }
}

/// The signed value of largest magnitude (0.0 for an all-zero block).
fn signed_max(v: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &x in v {
        if abs(x) > amax {
            amax = abs(x);
            max = x;
        }
    }
    max
}

fn min_max(v: &[f32]) -> (f32, f32) {
    let min = v.iter().fold(f32::MAX, |m, &x| m.min(x));
    let max = v.iter().fold(f32::MIN, |m, &x| m.max(x));
    (min, max)
}

/// Writes 32 levels (< 32) as nibbles at `qs` and, for Q5, their fifth bits as the `u32` at `qh`.
fn encode_levels(levels: &[u8; QK], blk: &mut [u8], qs: usize, qh: Option<usize>) {
    let mut bits = 0u32;
    for j in 0..QK / 2 {
        let (l0, l1) = (levels[j], levels[j + QK / 2]);
        blk[qs + j] = (l0 & 0x0f) | (l1 & 0x0f) << 4;
        bits |= ((l0 as u32 >> 4) & 1) << j | ((l1 as u32 >> 4) & 1) << (j + QK / 2);
    }
    if let Some(at) = qh {
        blk[at..at + 4].copy_from_slice(&bits.to_le_bytes());
    }
}

/// The 32 levels of a Q4 / Q5 block (nibbles at `qs`, fifth bits in the `u32` at `qh`).
#[inline]
pub(crate) fn decode_levels(blk: &[u8], qs: usize, qh: Option<usize>) -> [u8; QK] {
    let bits = qh.map_or(0, |at| {
        u32::from_le_bytes([blk[at], blk[at + 1], blk[at + 2], blk[at + 3]])
    });
    let mut l = [0u8; QK];
    for j in 0..QK / 2 {
        let byte = blk[qs + j];
        l[j] = (byte & 0x0f) | (((bits >> j) & 1) << 4) as u8;
        l[j + QK / 2] = (byte >> 4) | (((bits >> (j + QK / 2)) & 1) << 4) as u8;
    }
    l
}

/// ggml's reference rounding for one block of a 32-value type.
fn quantize_block(qt: QuantType, v: &[f32; QK], blk: &mut [u8]) {
    match qt {
        QuantType::Q8_0 => {
            let amax = v.iter().fold(0.0f32, |m, &x| m.max(abs(x)));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            write_f16(blk, 0, d);
            for (q, &x) in blk[2..].iter_mut().zip(v) {
                *q = round_i32(x * id) as i8 as u8;
            }
        }
        QuantType::Q4_0 | QuantType::Q5_0 => {
            // The signed value of largest magnitude maps to the most negative level.
            let (half, top) = if qt == QuantType::Q4_0 {
                (8.0, 15)
            } else {
                (16.0, 31)
            };
            let d = signed_max(v) / -half;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            write_f16(blk, 0, d);
            let off = half + 0.5; // one rounding step, as ggml's `x * id + 8.5f`
            let levels = v.map(|x| ((x * id + off) as i8).min(top) as u8);
            let qh = (qt == QuantType::Q5_0).then_some(2);
            encode_levels(&levels, blk, if qh.is_some() { 6 } else { 2 }, qh);
        }
        QuantType::Q4_1 | QuantType::Q5_1 => {
            let top = if qt == QuantType::Q4_1 { 15 } else { 31 };
            let (min, max) = min_max(v);
            let d = (max - min) / top as f32;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            write_f16(blk, 0, d);
            write_f16(blk, 2, min);
            let levels = v.map(|x| {
                let t = (x - min) * id + 0.5;
                // ggml: Q4_1 goes through i8 and clamps, Q5_1 converts to u8 unclamped (the
                // largest value rounds to 31 either way).
                if top == 15 {
                    (t as i8).min(15) as u8
                } else {
                    (t as u8).min(31)
                }
            });
            let qh = (qt == QuantType::Q5_1).then_some(4);
            encode_levels(&levels, blk, if qh.is_some() { 8 } else { 4 }, qh);
        }
        _ => unreachable!("quantize_block: {qt:?} is not a 32-value type"),
    }
}

/// Round half away from zero into `lo..=hi`.
fn level(x: f32, lo: i32, hi: i32) -> i32 {
    round_i32(x).clamp(lo, hi)
}

/// Plain rounding for one K-quant super-block: per sub-block scale (and min) from its range,
/// sub-scales quantised against the super-block's f16 scales.
fn quantize_super_block(qt: QuantType, v: &[f32; QK_K], blk: &mut [u8]) {
    if qt == QuantType::Q6_K {
        // 16 groups of 16, q in -32..=31, i8 group scales.
        let scale: [f32; 16] =
            core::array::from_fn(|g| signed_max(&v[16 * g..16 * g + 16]) / -32.0);
        let smax = signed_max(&scale);
        let d = if smax != 0.0 { smax / -128.0 } else { 0.0 };
        write_f16(blk, 208, d);
        let d = read_f16(blk, 208);
        let sc: [i32; 16] = core::array::from_fn(|g| {
            if d != 0.0 {
                level(scale[g] / d, -128, 127)
            } else {
                0
            }
        });
        blk[..208].fill(0);
        for (g, &s) in sc.iter().enumerate() {
            blk[192 + g] = s as i8 as u8;
        }
        for (i, &x) in v.iter().enumerate() {
            let step = d * sc[i / 16] as f32;
            let q = if step != 0.0 {
                level(x / step, -32, 31)
            } else {
                0
            } + 32;
            let (h, r) = (i / 128, i % 128);
            let (k, l) = (r / 32, r % 32);
            let lo = 64 * h + 32 * (k & 1) + l;
            blk[lo] |= ((q & 15) as u8) << (4 * (k / 2));
            blk[128 + 32 * h + l] |= ((q >> 4) as u8) << (2 * k);
        }
        return;
    }
    let top = if qt == QuantType::Q4_K { 15 } else { 31 };
    // Sub-block j: value = scale_j * q - min_j with min_j >= 0 (the range always includes 0).
    let mut scale = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    for j in 0..8 {
        let (mn, mx) = min_max(&v[32 * j..32 * j + 32]);
        let mn = mn.min(0.0);
        scale[j] = (mx - mn) / top as f32;
        mins[j] = -mn;
    }
    let fmax = |a: &[f32; 8]| a.iter().fold(0.0f32, |m, &x| m.max(x));
    write_f16(blk, 0, fmax(&scale) / 63.0);
    write_f16(blk, 2, fmax(&mins) / 63.0);
    let (d, dmin) = (read_f16(blk, 0), read_f16(blk, 2));
    let q6 = |x: f32, unit: f32| {
        if unit != 0.0 {
            level(x / unit, 0, 63) as u8
        } else {
            0
        }
    };
    let sc: [u8; 8] = core::array::from_fn(|j| q6(scale[j], d));
    let m: [u8; 8] = core::array::from_fn(|j| q6(mins[j], dmin));
    let scales = &mut blk[4..16];
    for j in 0..4 {
        scales[j] = sc[j] | (sc[j + 4] >> 4) << 6;
        scales[j + 4] = m[j] | (m[j + 4] >> 4) << 6;
        scales[j + 8] = (sc[j + 4] & 15) | (m[j + 4] & 15) << 4;
    }
    let qs = if qt == QuantType::Q4_K { 16 } else { 48 };
    blk[16..].fill(0);
    for (i, &x) in v.iter().enumerate() {
        let j = i / 32;
        let step = d * sc[j] as f32;
        let q = if step != 0.0 {
            level((x + dmin * m[j] as f32) / step, 0, top)
        } else {
            0
        } as u8;
        let (g, l) = (i / 64, i % 32);
        blk[qs + 32 * g + l] |= (q & 15) << (4 * (j & 1));
        if qt == QuantType::Q5_K {
            blk[16 + l] |= (q >> 4) << j;
        }
    }
}

/// The 6-bit scales and mins of a Q4_K / Q5_K super-block from its 12 packed bytes.
#[inline]
pub(crate) fn k_scales_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 15) | (s[j] >> 6) << 4;
        m[j + 4] = (s[j + 8] >> 4) | (s[j + 4] >> 6) << 4;
    }
    (sc, m)
}

/// Dequantises one row: `src` is `row_bytes(qt, dst.len())` bytes, exactly `dst.len()` values
/// are written (padding in the last block is dropped).
pub fn dequantize_row(qt: QuantType, src: &[u8], dst: &mut [f32]) {
    let cols = dst.len();
    assert_eq!(src.len(), row_bytes(qt, cols), "dequantize_row: src size");
    if qt == QuantType::F32 {
        for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
            *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        }
        return;
    }
    let n = qt.block_values();
    for (out, blk) in dst.chunks_mut(n).zip(src.chunks_exact(qt.block_bytes())) {
        if qt.is_k_quant() {
            out.copy_from_slice(&dequantize_super_block(qt, blk)[..out.len()]);
        } else {
            out.copy_from_slice(&dequantize_block(qt, blk)[..out.len()]);
        }
    }
}

/// Dequantises one block of a 32-value quantised type.
///
/// Panics for F32 and the K-quants (use [`dequantize_super_block`]).
pub fn dequantize_block(qt: QuantType, blk: &[u8]) -> [f32; QK] {
    let d = read_f16(blk, 0);
    match qt {
        QuantType::Q8_0 => core::array::from_fn(|j| (blk[2 + j] as i8) as f32 * d),
        QuantType::Q4_0 => decode_levels(blk, 2, None).map(|q| (q as i32 - 8) as f32 * d),
        QuantType::Q5_0 => decode_levels(blk, 6, Some(2)).map(|q| (q as i32 - 16) as f32 * d),
        QuantType::Q4_1 => {
            let m = read_f16(blk, 2);
            decode_levels(blk, 4, None).map(|q| q as f32 * d + m)
        }
        QuantType::Q5_1 => {
            let m = read_f16(blk, 2);
            decode_levels(blk, 8, Some(4)).map(|q| q as f32 * d + m)
        }
        _ => panic!("dequantize_block: {qt:?} has no 32-value blocks"),
    }
}

/// Dequantises one K-quant super-block (ggml's `dequantize_row_q*_K` arithmetic, in f32).
///
/// Panics for the types that are not K-quants.
pub fn dequantize_super_block(qt: QuantType, blk: &[u8]) -> [f32; QK_K] {
    let mut v = [0.0f32; QK_K];
    match qt {
        QuantType::Q4_K | QuantType::Q5_K => {
            let (d, dmin) = (read_f16(blk, 0), read_f16(blk, 2));
            let (sc, m) = k_scales_mins(&blk[4..16]);
            let qs = if qt == QuantType::Q4_K { 16 } else { 48 };
            for (i, o) in v.iter_mut().enumerate() {
                let (j, g, l) = (i / 32, i / 64, i % 32);
                let mut q = (blk[qs + 32 * g + l] >> (4 * (j & 1))) & 15;
                if qt == QuantType::Q5_K {
                    q |= ((blk[16 + l] >> j) & 1) << 4;
                }
                *o = d * sc[j] as f32 * q as f32 - dmin * m[j] as f32;
            }
        }
        QuantType::Q6_K => {
            let d = read_f16(blk, 208);
            for (i, o) in v.iter_mut().enumerate() {
                let (h, r) = (i / 128, i % 128);
                let (k, l) = (r / 32, r % 32);
                let lo = (blk[64 * h + 32 * (k & 1) + l] >> (4 * (k / 2))) & 15;
                let hi = (blk[128 + 32 * h + l] >> (2 * k)) & 3;
                let q = (lo | hi << 4) as i32 - 32;
                let s = blk[192 + 8 * h + 2 * k + l / 16] as i8;
                *o = d * s as f32 * q as f32;
            }
        }
        _ => panic!("dequantize_super_block: {qt:?} is not a K-quant"),
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
        assert_eq!(QuantType::from_name("Q6_K"), Some(QuantType::Q6_K));
        assert_eq!(QuantType::from_name("q3_k"), None);
    }

    #[test]
    fn block_sizes_are_ggml_sizes() {
        let sizes = [
            (QuantType::Q5_0, 22),
            (QuantType::Q5_1, 24),
            (QuantType::Q4_K, 144),
        ];
        for (qt, n) in sizes
            .into_iter()
            .chain([(QuantType::Q5_K, 176), (QuantType::Q6_K, 210)])
        {
            assert_eq!(qt.block_bytes(), n, "{qt:?}");
        }
    }

    #[test]
    fn k_quant_rows_are_whole_super_blocks() {
        assert_eq!(row_bytes(QuantType::Q4_K, 1024), 4 * 144);
        assert_eq!(matrix_bytes(QuantType::Q6_K, 3, 512), Some(3 * 2 * 210));
        // Gemma 3's 640-wide rows cannot be K-quants: refused, not padded.
        assert_eq!(matrix_bytes(QuantType::Q4_K, 1, 640), None);
        let e = check_row_len(QuantType::Q5_K, 640).unwrap_err();
        assert_eq!(
            alloc::format!("{e}"),
            "q5_k rows must be a multiple of 256 values, not 640"
        );
        assert!(check_row_len(QuantType::Q5_0, 640).is_ok());
        assert!(check_row_len(QuantType::Q5_0, 33).is_ok());
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
    fn q5_known_blocks() {
        // Q5_0: value of largest magnitude -16 -> d = 1, q = v + 16; the fifth bit lands in qh.
        let src: [f32; 32] = core::array::from_fn(|i| (i % 32) as f32 - 16.0);
        let mut blk = [0u8; Q5_0_BLOCK];
        quantize_row(QuantType::Q5_0, &src, &mut blk);
        assert_eq!(read_f16(&blk, 0), 1.0);
        assert_eq!(
            u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]),
            0xffff_0000
        );
        assert_eq!(blk[6], 0x00);
        assert_eq!(blk[6 + 15], 0xff);
        let mut out = [0.0f32; 32];
        dequantize_row(QuantType::Q5_0, &blk, &mut out);
        assert_eq!(out, src);

        // Q5_1: min 3, max 34 -> d = 1, m = 3.
        let src: [f32; 32] = core::array::from_fn(|i| 3.0 + ((i * 7) % 32) as f32);
        let mut blk = [0u8; Q5_1_BLOCK];
        quantize_row(QuantType::Q5_1, &src, &mut blk);
        assert_eq!((read_f16(&blk, 0), read_f16(&blk, 2)), (1.0, 3.0));
        dequantize_row(QuantType::Q5_1, &blk, &mut out);
        assert_eq!(out, src);
    }

    #[test]
    fn k_quant_round_trip_error() {
        // Plain rounding: every value within about one quantisation step of the source.
        let src: [f32; 512] = core::array::from_fn(|i| {
            let x = (i as f32 * 0.7371).sin() * (1.0 + (i / 32) as f32 * 0.3);
            if i / 32 == 5 {
                x.abs() + 0.5 // a sub-block that does not include 0
            } else {
                x
            }
        });
        for (qt, levels) in [
            (QuantType::Q4_K, 15.0),
            (QuantType::Q5_K, 31.0),
            (QuantType::Q6_K, 63.0),
        ] {
            let mut row = alloc::vec![0u8; row_bytes(qt, src.len())];
            quantize_row(qt, &src, &mut row);
            let mut out = [0.0f32; 512];
            dequantize_row(qt, &row, &mut out);
            for (g, (a, b)) in src.chunks(32).zip(out.chunks(32)).enumerate() {
                let (mn, mx) = min_max(a);
                let step = (mx - mn.min(0.0)).max(mx.abs()) / levels * 2.2;
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= step,
                        "{qt:?} group {g}: {x} vs {y} (step {step})"
                    );
                }
            }
        }
    }

    #[test]
    fn tails_are_zero_padded_and_dropped() {
        let src: [f32; 40] = core::array::from_fn(|i| (i as f32 - 20.0) * 0.1);
        for qt in QuantType::ALL.into_iter().filter(|q| !q.is_k_quant()) {
            let mut row = alloc::vec![0xAAu8; row_bytes(qt, src.len())];
            quantize_row(qt, &src, &mut row);
            let mut out = [f32::NAN; 40];
            dequantize_row(qt, &row, &mut out);
            let max_err = match qt {
                QuantType::F32 => 0.0,
                QuantType::Q8_0 => 2.0 / 127.0,
                QuantType::Q5_0 | QuantType::Q5_1 => 2.0 / 15.0,
                _ => 2.0 / 7.0,
            };
            for (a, b) in src.iter().zip(&out) {
                assert!((a - b).abs() <= max_err, "{qt:?}: {a} vs {b}");
            }
            if qt != QuantType::F32 {
                let last = dequantize_block(qt, &row[row.len() - qt.block_bytes()..]);
                // Q4_1/Q5_1 padding dequantises to the block minimum m, others to exactly 0.
                let pad = if matches!(qt, QuantType::Q4_1 | QuantType::Q5_1) {
                    last[31]
                } else {
                    0.0
                };
                assert!(last[8..].iter().all(|&v| v == pad), "{qt:?}: {last:?}");
            }
        }
    }
}
