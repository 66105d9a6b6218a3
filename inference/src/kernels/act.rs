//! On-the-fly activation quantisation: each row of `x` becomes Q8 blocks kept as flat arrays
//! (quants, scales, and the sums the weight offsets need) so SIMD code loads contiguous quants.
//!
//! Two formats, as llama.cpp pairs them with the weight types:
//! - [`ActFormat::Q8`]: 32-value blocks, f32 scale `d`, and `s = d * sum(q)` (the Q8_1 term),
//!   which folds the Q4_0/Q5_0 offsets and the Q4_1/Q5_1 minima into one multiply per block.
//!   Used by Q8_0, Q4_0, Q4_1, Q5_0, Q5_1.
//! - [`ActFormat::Q8K`]: 256-value super-blocks (ggml's Q8_K), f32 scale `d`, and `bsums`, the
//!   integer sum of each 16 quants, which the K-quants' per-sub-block minima (Q4_K, Q5_K) and
//!   Q6_K's offset of 32 multiply.
//!
//! Both use `d = max|x| / 127`, `q = round-half-away(x / d)` (computed as `x * (1 / d)`). The
//! scale is kept in f32 (ggml rounds Q8_0's to f16; f32 costs nothing here and is more exact).

use crate::quant::{abs, round_i32, QK, QK_K};
use alloc::vec;
use alloc::vec::Vec;

/// Quantises one whole 32-value block: writes 32 quants, returns `(d, d * sum(q))`.
pub(crate) type FullBlockFn = unsafe fn(&[f32; QK], &mut [i8; QK]) -> (f32, f32);
/// Quantises one whole super-block: writes 256 quants and 16 sums of 16, returns `d`.
pub(crate) type FullSuperBlockFn = unsafe fn(&[f32; QK_K], &mut [i8; QK_K], &mut [i16; 16]) -> f32;

/// Quants of every value of `vals` with scale `1 / id`, into `qs` (the rest left as is).
#[inline]
fn quantize_with(vals: &[f32], id: f32, qs: &mut [i8]) {
    for (q, &v) in qs.iter_mut().zip(vals) {
        *q = round_i32(v * id) as i8;
    }
}

#[inline]
fn scale_of(vals: &[f32]) -> (f32, f32) {
    let amax = vals.iter().fold(0.0f32, |m, &v| m.max(abs(v)));
    let d = amax / 127.0;
    (d, if d != 0.0 { 1.0 / d } else { 0.0 })
}

/// Reference 32-block quantiser (`vals.len() <= 32`; the rest of `qs` is left zero).
pub(crate) fn quantize_block(vals: &[f32], qs: &mut [i8; QK]) -> (f32, f32) {
    let (d, id) = scale_of(vals);
    quantize_with(vals, id, qs);
    let sum: i32 = qs.iter().map(|&q| q as i32).sum();
    (d, d * sum as f32)
}

pub(crate) fn quantize_full_block(vals: &[f32; QK], qs: &mut [i8; QK]) -> (f32, f32) {
    quantize_block(vals, qs)
}

/// Reference super-block quantiser (`vals.len() <= 256`; the rest of `qs` is left zero).
pub(crate) fn quantize_super_block(
    vals: &[f32],
    qs: &mut [i8; QK_K],
    bsums: &mut [i16; 16],
) -> f32 {
    let (d, id) = scale_of(vals);
    quantize_with(vals, id, qs);
    for (s, q) in bsums.iter_mut().zip(qs.chunks_exact(16)) {
        *s = q.iter().map(|&q| q as i16).sum();
    }
    d
}

pub(crate) fn quantize_full_super_block(
    vals: &[f32; QK_K],
    qs: &mut [i8; QK_K],
    bsums: &mut [i16; 16],
) -> f32 {
    quantize_super_block(vals, qs, bsums)
}

/// Which activation blocks a weight type pairs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActFormat {
    Q8,
    Q8K,
}

impl ActFormat {
    pub fn block(self) -> usize {
        match self {
            ActFormat::Q8 => QK,
            ActFormat::Q8K => QK_K,
        }
    }
}

/// The SIMD block quantisers of a kernel variant (same arithmetic as the references, so the
/// same bits).
#[derive(Clone, Copy)]
pub(crate) struct ActFns {
    pub q8: FullBlockFn,
    pub q8k: FullSuperBlockFn,
}

pub(crate) const SCALAR_ACT: ActFns = ActFns {
    q8: quantize_full_block,
    q8k: quantize_full_super_block,
};

pub(crate) struct QActs {
    pub format: ActFormat,
    /// Blocks per row.
    pub nb: usize,
    /// `batch * nb * block` quants, row after row; the padding of the last block is zero.
    pub qs: Vec<i8>,
    /// `batch * nb` block scales.
    pub d: Vec<f32>,
    /// Q8: `batch * nb` values of `d * sum(q)`; Q8K: empty.
    pub s: Vec<f32>,
    /// Q8K: `batch * nb * 16` sums of 16 quants; Q8: empty.
    pub bsums: Vec<i16>,
    /// Hint from the driver: the weights are far larger than the caches and should be read
    /// as one sequential stream (decode of a big Q8_0 classifier).
    pub stream: bool,
}

/// One quantised activation row.
#[derive(Clone, Copy)]
pub(crate) struct ActRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub bsums: &'a [i16],
}

impl QActs {
    /// Quantises `batch` rows of `cols` values from `x`; whole blocks go through `f`, a
    /// variant's SIMD copy of the reference quantiser.
    pub fn quantize(x: &[f32], cols: usize, batch: usize, format: ActFormat, f: &ActFns) -> QActs {
        let bl = format.block();
        let nb = cols.div_ceil(bl);
        let mut a = QActs {
            format,
            nb,
            qs: vec![0i8; batch * nb * bl],
            d: vec![0.0; batch * nb],
            s: vec![
                0.0;
                if format == ActFormat::Q8 {
                    batch * nb
                } else {
                    0
                }
            ],
            bsums: vec![
                0;
                if format == ActFormat::Q8K {
                    batch * nb * 16
                } else {
                    0
                }
            ],
            stream: false,
        };
        for b in 0..batch {
            let row = &x[b * cols..(b + 1) * cols];
            for blk in 0..nb {
                let i = b * nb + blk;
                let vals = &row[blk * bl..(blk * bl + bl).min(cols)];
                match format {
                    ActFormat::Q8 => {
                        let qs: &mut [i8; QK] = (&mut a.qs[i * QK..][..QK]).try_into().unwrap();
                        let (d, s) = match <&[f32; QK]>::try_from(vals) {
                            // SAFETY: `f` comes from the selected kernel table (features checked).
                            Ok(v) => unsafe { (f.q8)(v, qs) },
                            Err(_) => quantize_block(vals, qs),
                        };
                        a.d[i] = d;
                        a.s[i] = s;
                    }
                    ActFormat::Q8K => {
                        let qs: &mut [i8; QK_K] =
                            (&mut a.qs[i * QK_K..][..QK_K]).try_into().unwrap();
                        let bs: &mut [i16; 16] = (&mut a.bsums[i * 16..][..16]).try_into().unwrap();
                        a.d[i] = match <&[f32; QK_K]>::try_from(vals) {
                            // SAFETY: as above.
                            Ok(v) => unsafe { (f.q8k)(v, qs, bs) },
                            Err(_) => quantize_super_block(vals, qs, bs),
                        };
                    }
                }
            }
        }
        a
    }

    #[inline]
    pub fn row(&self, b: usize) -> ActRow<'_> {
        let (nb, bl) = (self.nb, self.format.block());
        ActRow {
            qs: &self.qs[b * nb * bl..(b + 1) * nb * bl],
            d: &self.d[b * nb..(b + 1) * nb],
            s: if self.s.is_empty() {
                &[]
            } else {
                &self.s[b * nb..(b + 1) * nb]
            },
            bsums: if self.bsums.is_empty() {
                &[]
            } else {
                &self.bsums[b * nb * 16..(b + 1) * nb * 16]
            },
        }
    }

    /// The value activation `c` of row `b` stands for (`q * d`), for references in tests.
    #[cfg(test)]
    pub fn value(&self, b: usize, c: usize) -> f32 {
        let bl = self.format.block();
        self.qs[b * self.nb * bl + c] as f32 * self.d[b * self.nb + c / bl]
    }
}
