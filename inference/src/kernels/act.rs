//! On-the-fly activation quantisation: each row of `x` becomes Q8 blocks kept as three flat
//! arrays (quants, scales, scaled sums) so SIMD code loads 32 contiguous quants per block.
//!
//! The scale is kept in f32 (ggml rounds it to f16; f32 costs nothing here and is more exact).
//! `s = d * sum(q)` is the Q8_1 extra term: it folds the Q4_0 offset (-8) and the Q4_1 minimum
//! into one multiply per block.

use crate::quant::{abs, round_i32, QK};
use alloc::vec;
use alloc::vec::Vec;

/// Quantises one whole block: writes 32 quants, returns `(d, d * sum(q))`.
pub(crate) type FullBlockFn = unsafe fn(&[f32; QK], &mut [i8; QK]) -> (f32, f32);

/// Reference block quantiser (`vals.len() <= 32`; the rest of `qs` is left zero):
/// d = max|v| / 127, q = round-half-away(v / d).
pub(crate) fn quantize_block(vals: &[f32], qs: &mut [i8; QK]) -> (f32, f32) {
    let amax = vals.iter().fold(0.0f32, |m, &v| m.max(abs(v)));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(vals) {
        let qi = round_i32(v * id);
        *q = qi as i8;
        sum += qi;
    }
    (d, d * sum as f32)
}

pub(crate) fn quantize_full_block(vals: &[f32; QK], qs: &mut [i8; QK]) -> (f32, f32) {
    quantize_block(vals, qs)
}

pub(crate) struct QActs {
    /// Blocks per row.
    pub nb: usize,
    /// `batch * nb * 32` quants, row after row; the padding of the last block is zero.
    pub qs: Vec<i8>,
    /// `batch * nb` block scales.
    pub d: Vec<f32>,
    /// `batch * nb` values of `d * sum(q)`.
    pub s: Vec<f32>,
}

/// One quantised activation row.
#[derive(Clone, Copy)]
pub(crate) struct ActRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
}

impl QActs {
    /// Quantises `batch` rows of `cols` values from `x`; whole blocks go through `full`, a
    /// variant's SIMD copy of [`quantize_block`] (same arithmetic, so the same bits).
    pub fn quantize(x: &[f32], cols: usize, batch: usize, full: FullBlockFn) -> QActs {
        let nb = cols.div_ceil(QK);
        let mut a = QActs {
            nb,
            qs: vec![0i8; batch * nb * QK],
            d: vec![0.0; batch * nb],
            s: vec![0.0; batch * nb],
        };
        for b in 0..batch {
            let row = &x[b * cols..(b + 1) * cols];
            for blk in 0..nb {
                let start = blk * QK;
                let vals = &row[start..(start + QK).min(cols)];
                let qs: &mut [i8; QK] =
                    (&mut a.qs[(b * nb + blk) * QK..][..QK]).try_into().unwrap();
                let (d, s) = match <&[f32; QK]>::try_from(vals) {
                    // SAFETY: `full` comes from the selected kernel table (features checked).
                    Ok(v) => unsafe { full(v, qs) },
                    Err(_) => quantize_block(vals, qs),
                };
                a.d[b * nb + blk] = d;
                a.s[b * nb + blk] = s;
            }
        }
        a
    }

    #[inline]
    pub fn row(&self, b: usize) -> ActRow<'_> {
        let nb = self.nb;
        ActRow {
            qs: &self.qs[b * nb * QK..(b + 1) * nb * QK],
            d: &self.d[b * nb..(b + 1) * nb],
            s: &self.s[b * nb..(b + 1) * nb],
        }
    }
}
