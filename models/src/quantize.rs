//! Error-minimising quantisers for the converters. They write the same ggml block layouts as
//! `inference::quant::quantize_row` (which rounds with the ggml reference rule: scale from the
//! largest value), but search the block scale (and min) for the least squared error, the idea
//! behind ggml's `make_qx_quants`. Decisive for tiny models: stories260K's teacher-forced Q4_0
//! top-1 agreement goes from 87.6% (reference rounding) to the figure in docs/BENCHMARKS.md.
//! Q8_0 keeps the reference rule (its error is already negligible).

use inference::quant::{
    dequantize_block, f16_to_f32, f32_to_f16, quantize_row, row_bytes, QuantType, QK,
};

fn f16_round(x: f32) -> f32 {
    f16_to_f32(f32_to_f16(x))
}

fn block(src: &[f32], b: usize) -> [f32; QK] {
    let mut v = [0.0f32; QK];
    let start = b * QK;
    let end = (start + QK).min(src.len());
    v[..end - start].copy_from_slice(&src[start..end]);
    v
}

/// Q4_0 level (0..=15) of `x` for scale `d`.
pub(crate) fn q4_0_level(d: f32, x: f32) -> u8 {
    if d == 0.0 {
        8
    } else {
        (((x / d).round() as i32).clamp(-8, 7) + 8) as u8
    }
}

/// Q4_1 level (0..=15) of `x` for scale `d` and min `m`.
pub(crate) fn q4_1_level(d: f32, m: f32, x: f32) -> u8 {
    if d == 0.0 {
        0
    } else {
        (((x - m) / d).round() as i32).clamp(0, 15) as u8
    }
}

/// Writes a Q4_0 (`m` ignored) or Q4_1 block from its parameters and 32 levels.
pub(crate) fn encode_q4(qt: QuantType, d: f32, m: f32, levels: &[u8; QK], out: &mut [u8]) {
    out[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    let at = if qt == QuantType::Q4_1 {
        out[2..4].copy_from_slice(&f32_to_f16(m).to_le_bytes());
        4
    } else {
        2
    };
    for j in 0..QK / 2 {
        out[at + j] = levels[j] | (levels[j + QK / 2] << 4);
    }
}

fn q4_0_block(v: &[f32; QK], w: &[f32; QK], out: &mut [u8]) {
    let d = q4_0_scale(v, w);
    let levels: [u8; QK] = core::array::from_fn(|j| q4_0_level(d, v[j]));
    encode_q4(QuantType::Q4_0, d, 0.0, &levels, out);
}

fn q4_1_block(v: &[f32; QK], w: &[f32; QK], out: &mut [u8]) {
    let (d, m) = q4_1_params(v, w);
    let levels: [u8; QK] = core::array::from_fn(|j| q4_1_level(d, m, v[j]));
    encode_q4(QuantType::Q4_1, d, m, &levels, out);
}

/// Q4_0 (value = (q - 8) * d): try scales around max/-8, keep the least weighted squared
/// error (computed with the f16-rounded scale actually stored). Returns d.
pub(crate) fn q4_0_scale(v: &[f32; QK], w: &[f32; QK]) -> f32 {
    let mut max = 0.0f32;
    for (&x, &wj) in v.iter().zip(w) {
        if wj > 0.0 && x.abs() > max.abs() {
            max = x;
        }
    }
    let mut best_err = f32::INFINITY;
    let mut best_d = 0.0f32;
    let quant = |d: f32, x: f32| -> i32 {
        if d == 0.0 {
            0
        } else {
            ((x / d).round() as i32).clamp(-8, 7)
        }
    };
    if max != 0.0 {
        for step in -20..=20 {
            let denom = -8.0 + step as f32 * 0.1;
            let d0 = f16_round(max / denom);
            // Least-squares refit of d for the chosen integer levels.
            let (mut sxq, mut sqq) = (0.0f32, 0.0f32);
            for (&x, &wj) in v.iter().zip(w) {
                let q = quant(d0, x) as f32;
                sxq += wj * x * q;
                sqq += wj * q * q;
            }
            for d in [d0, if sqq > 0.0 { f16_round(sxq / sqq) } else { d0 }] {
                let err: f32 = v
                    .iter()
                    .zip(w)
                    .map(|(&x, &wj)| {
                        let e = x - quant(d, x) as f32 * d;
                        wj * e * e
                    })
                    .sum();
                if err < best_err {
                    best_err = err;
                    best_d = d;
                }
            }
        }
    }
    best_d
}

/// Q4_1 (value = q * d + m): alternate between rounding to levels and a least-squares fit of
/// (d, m), from several starting ranges; keep the least weighted squared error. Returns (d, m).
pub(crate) fn q4_1_params(v: &[f32; QK], w: &[f32; QK]) -> (f32, f32) {
    let live = || v.iter().zip(w).filter(|(_, &wj)| wj > 0.0).map(|(&x, _)| x);
    let min = live().fold(f32::MAX, f32::min);
    let max = live().fold(f32::MIN, f32::max);
    if min > max {
        // No live value (all weights zero): an all-zero block.
        return (0.0, 0.0);
    }
    let quant = |d: f32, m: f32, x: f32| -> i32 {
        if d == 0.0 {
            0
        } else {
            (((x - m) / d).round() as i32).clamp(0, 15)
        }
    };
    let err_of = |d: f32, m: f32| -> f32 {
        v.iter()
            .zip(w)
            .map(|(&x, &wj)| {
                let e = x - (quant(d, m, x) as f32 * d + m);
                wj * e * e
            })
            .sum()
    };
    let (mut best_d, mut best_m) = (f16_round((max - min) / 15.0), f16_round(min));
    let mut best_err = err_of(best_d, best_m);
    if max > min {
        for shrink in 0..8 {
            let span = (max - min) * (1.0 - 0.03 * shrink as f32);
            let (mut d, mut m) = (span / 15.0, min + (max - min - span) * 0.5);
            for _ in 0..4 {
                let (dr, mr) = (f16_round(d), f16_round(m));
                let err = err_of(dr, mr);
                if err < best_err {
                    best_err = err;
                    best_d = dr;
                    best_m = mr;
                }
                // Fit x ~ d*q + m for the current levels.
                let (mut sq, mut sqq, mut sx, mut sxq) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
                let mut n = 0.0f32;
                for (&x, &wj) in v.iter().zip(w) {
                    let q = quant(dr, mr, x) as f32;
                    n += wj;
                    sq += wj * q;
                    sqq += wj * q * q;
                    sx += wj * x;
                    sxq += wj * x * q;
                }
                let det = n * sqq - sq * sq;
                if det.abs() < 1e-12 {
                    break;
                }
                d = (n * sxq - sq * sx) / det;
                m = (sx - d * sq) / n;
                if d <= 0.0 {
                    break;
                }
            }
        }
    }
    (best_d, best_m)
}

fn block_err(qt: QuantType, v: &[f32; QK], w: &[f32; QK], blk: &[u8]) -> f32 {
    let d = dequantize_block(qt, blk);
    v.iter()
        .zip(&d)
        .zip(w)
        .map(|((a, b), wj)| wj * (a - b) * (a - b))
        .sum()
}

/// Quantises one row with the error-minimising search (Q4_0/Q4_1) or the reference rule.
/// `importance[c]` weighs the squared error of column c (e.g. the mean square of the
/// activations that multiply it, as llama.cpp's imatrix); `None` weighs all columns equally.
pub fn quantize_row_best(qt: QuantType, src: &[f32], importance: Option<&[f32]>, dst: &mut [u8]) {
    match qt {
        QuantType::Q4_0 | QuantType::Q4_1 => {
            let bb = qt.block_bytes();
            let mut reference = [0u8; 20];
            for (b, out) in dst.chunks_exact_mut(bb).enumerate() {
                let v = block(src, b);
                // Padding columns weigh nothing.
                let n = src.len().saturating_sub(b * QK).min(QK);
                let mut w = [0.0f32; QK];
                for (j, wj) in w.iter_mut().enumerate().take(n) {
                    // A small floor keeps columns never seen active from being ignored.
                    *wj = importance.map_or(1.0, |imp| imp[b * QK + j] + 1e-6);
                }
                if qt == QuantType::Q4_0 {
                    q4_0_block(&v, &w, out)
                } else {
                    q4_1_block(&v, &w, out)
                }
                // Never worse than the reference rounding (which can win by a hair because it
                // rounds levels against the unrounded scale).
                quantize_row(qt, &v, &mut reference[..bb]);
                if block_err(qt, &v, &w, &reference[..bb]) < block_err(qt, &v, &w, out) {
                    out.copy_from_slice(&reference[..bb]);
                }
            }
        }
        _ => quantize_row(qt, src, dst),
    }
}

/// Quantises a row-major [rows, cols] f32 matrix (`importance`: one weight per column).
pub fn quantize_matrix(
    qt: QuantType,
    rows: usize,
    cols: usize,
    values: &[f32],
    importance: Option<&[f32]>,
) -> Vec<u8> {
    let rb = row_bytes(qt, cols);
    let mut out = vec![0u8; rows * rb];
    if cols > 0 {
        for (src, dst) in values
            .chunks_exact(cols)
            .zip(out.chunks_exact_mut(rb))
            .take(rows)
        {
            quantize_row_best(qt, src, importance, dst);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use inference::quant::dequantize_row;

    fn sq_err(qt: QuantType, v: &[f32], q: &[u8]) -> f32 {
        let mut d = vec![0.0; v.len()];
        dequantize_row(qt, q, &mut d);
        v.iter().zip(&d).map(|(a, b)| (a - b) * (a - b)).sum()
    }

    #[test]
    fn search_is_never_worse_than_reference_rounding() {
        let mut seed = 12345u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        };
        for qt in [QuantType::Q4_0, QuantType::Q4_1] {
            let (mut ours_total, mut ref_total) = (0.0, 0.0);
            for trial in 0..200 {
                let cols = if trial % 3 == 0 { 43 } else { 64 };
                let v: Vec<f32> = (0..cols).map(|_| rnd() * rnd() * 3.0).collect();
                let rb = row_bytes(qt, cols);
                let (mut ours, mut reference) = (vec![0u8; rb], vec![0u8; rb]);
                quantize_row_best(qt, &v, None, &mut ours);
                quantize_row(qt, &v, &mut reference);
                let (eo, er) = (sq_err(qt, &v, &ours), sq_err(qt, &v, &reference));
                assert!(
                    eo <= er * 1.0001 + 1e-9,
                    "{qt:?} trial {trial}: {eo} > {er}"
                );
                ours_total += eo;
                ref_total += er;
            }
            assert!(
                ours_total < ref_total * 0.95,
                "{qt:?}: {ours_total} vs {ref_total}"
            );
        }
    }
}
