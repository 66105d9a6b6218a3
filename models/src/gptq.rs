//! GPTQ-style 4-bit rounding (Frantar et al. 2022, "GPTQ: Accurate Post-Training
//! Quantization for Generative Pre-trained Transformers", Algorithm 1 without lazy batching):
//! columns are quantised left to right and each column's rounding error is pushed onto the
//! not-yet-quantised columns through the inverse Hessian of the layer's inputs, H = X^T X.
//! Block parameters (d, m) are chosen when a 32-column block is entered, from the
//! error-updated values, by the same weighted search as `quantize.rs`.

use inference::quant::{row_bytes, QuantType, QK};

use crate::quantize::{encode_q4, q4_0_level, q4_0_scale, q4_1_level, q4_1_params};

/// Lower Cholesky factor of a symmetric positive definite n x n matrix (row-major), or None.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Inverse of the SPD matrix whose lower Cholesky factor is `l`.
fn inverse_from_cholesky(l: &[f64], n: usize) -> Vec<f64> {
    // L^{-1} by forward substitution, column by column.
    let mut li = vec![0.0f64; n * n];
    for c in 0..n {
        for i in c..n {
            let mut s = if i == c { 1.0 } else { 0.0 };
            for k in c..i {
                s -= l[i * n + k] * li[k * n + c];
            }
            li[i * n + c] = s / l[i * n + i];
        }
    }
    // A^{-1} = L^{-T} L^{-1}.
    let mut inv = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = 0.0;
            for k in i..n {
                s += li[k * n + i] * li[k * n + j];
            }
            inv[i * n + j] = s;
            inv[j * n + i] = s;
        }
    }
    inv
}

/// Upper factor U (row-major) with H^{-1} = U^T U, for the damped Gram matrix of `x`
/// (`x` = samples x n). Also returns diag(H) (the per-column importance).
fn inverse_hessian_factor(x: &[f32], n: usize) -> (Vec<f64>, Vec<f32>) {
    let samples = x.len() / n.max(1);
    let mut h = vec![0.0f64; n * n];
    for row in x.chunks_exact(n).take(samples) {
        for i in 0..n {
            let xi = row[i] as f64;
            if xi == 0.0 {
                continue;
            }
            for j in 0..=i {
                h[i * n + j] += xi * row[j] as f64;
            }
        }
    }
    for i in 0..n {
        for j in 0..i {
            h[j * n + i] = h[i * n + j];
        }
    }
    let diag: Vec<f32> = (0..n).map(|i| h[i * n + i] as f32).collect();
    let mean_diag = diag.iter().map(|&d| d as f64).sum::<f64>() / n as f64;
    for i in 0..n {
        // A column never active gets unit curvature (its error is then not propagated much).
        if h[i * n + i] == 0.0 {
            h[i * n + i] = 1.0;
        }
    }
    let mut damp = 0.01 * mean_diag.max(1e-12);
    loop {
        let mut hd = h.clone();
        for i in 0..n {
            hd[i * n + i] += damp;
        }
        if let Some(l) = cholesky(&hd, n) {
            let inv = inverse_from_cholesky(&l, n);
            if let Some(m) = cholesky(&inv, n) {
                // U = M^T.
                let mut u = vec![0.0f64; n * n];
                for i in 0..n {
                    for j in 0..=i {
                        u[j * n + i] = m[i * n + j];
                    }
                }
                return (u, diag);
            }
        }
        damp *= 10.0;
    }
}

/// Quantises a row-major [rows, cols] matrix to Q4_0 or Q4_1 with GPTQ error feedback, given
/// calibration inputs `x` (samples x cols) of this matrix.
pub fn gptq_quantize(qt: QuantType, rows: usize, cols: usize, w: &[f32], x: &[f32]) -> Vec<u8> {
    assert!(matches!(qt, QuantType::Q4_0 | QuantType::Q4_1));
    let (u, diag) = inverse_hessian_factor(x, cols);
    let rb = row_bytes(qt, cols);
    let bb = qt.block_bytes();
    let mut out = vec![0u8; rows * rb];
    let quantize_row = |r: usize, dst: &mut [u8]| {
        let mut row: Vec<f64> = w[r * cols..(r + 1) * cols]
            .iter()
            .map(|&v| v as f64)
            .collect();
        for (b, blk) in dst.chunks_exact_mut(bb).enumerate() {
            let start = b * QK;
            let n = (cols - start).min(QK);
            let mut v = [0.0f32; QK];
            let mut imp = [0.0f32; QK];
            for j in 0..n {
                v[j] = row[start + j] as f32;
                imp[j] = diag[start + j] + 1e-6;
            }
            let (d, m) = match qt {
                QuantType::Q4_0 => (q4_0_scale(&v, &imp), 0.0),
                _ => q4_1_params(&v, &imp),
            };
            let mut levels = [0u8; QK];
            for (j, level) in levels.iter_mut().enumerate().take(n) {
                let c = start + j;
                let x = row[c] as f32;
                let (lv, deq) = match qt {
                    QuantType::Q4_0 => {
                        let l = q4_0_level(d, x);
                        (l, (l as f32 - 8.0) * d)
                    }
                    _ => {
                        let l = q4_1_level(d, m, x);
                        (l, l as f32 * d + m)
                    }
                };
                *level = lv;
                let err = (row[c] - deq as f64) / u[c * cols + c];
                let urow = &u[c * cols..(c + 1) * cols];
                for k in c + 1..cols {
                    row[k] -= err * urow[k];
                }
            }
            // Padding levels encode zero-ish values that are never read.
            if qt == QuantType::Q4_0 {
                for l in levels.iter_mut().skip(n) {
                    *l = 8;
                }
            }
            encode_q4(qt, d, m, &levels, blk);
        }
    };
    // Rows are independent: split them over the host's cores.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let per = rows.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (t, chunk) in out.chunks_mut(per * rb).enumerate() {
            let quantize_row = &quantize_row;
            s.spawn(move || {
                for (i, dst) in chunk.chunks_exact_mut(rb).enumerate() {
                    quantize_row(t * per + i, dst);
                }
            });
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use inference::quant::dequantize_row;

    #[test]
    fn cholesky_inverse_roundtrip() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let l = cholesky(&a, 3).unwrap();
        let inv = inverse_from_cholesky(&l, 3);
        for i in 0..3 {
            for j in 0..3 {
                let s: f64 = (0..3).map(|k| a[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!((s - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }

    /// On correlated inputs GPTQ's output error ||(W - Q) X|| beats per-block rounding.
    #[test]
    fn gptq_reduces_output_error_on_correlated_inputs() {
        let (rows, cols, samples) = (8, 72, 400);
        let mut s = 99u64;
        let mut rnd = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        };
        let w: Vec<f32> = (0..rows * cols).map(|_| rnd()).collect();
        // Inputs share a few latent factors, so columns are strongly correlated.
        let factors: Vec<f32> = (0..4 * cols).map(|_| rnd()).collect();
        let mut x = vec![0.0f32; samples * cols];
        for t in 0..samples {
            let z: Vec<f32> = (0..4).map(|_| rnd()).collect();
            for c in 0..cols {
                x[t * cols + c] =
                    (0..4).map(|f| z[f] * factors[f * cols + c]).sum::<f32>() + 0.05 * rnd();
            }
        }
        let out_err = |q: &[u8], qt: QuantType| {
            let rb = row_bytes(qt, cols);
            let mut e = 0.0f64;
            for r in 0..rows {
                let mut deq = vec![0.0f32; cols];
                dequantize_row(qt, &q[r * rb..(r + 1) * rb], &mut deq);
                for t in 0..samples {
                    let d: f32 = (0..cols)
                        .map(|c| (w[r * cols + c] - deq[c]) * x[t * cols + c])
                        .sum();
                    e += (d * d) as f64;
                }
            }
            e
        };
        for qt in [QuantType::Q4_0, QuantType::Q4_1] {
            let g = gptq_quantize(qt, rows, cols, &w, &x);
            let plain = crate::quantize::quantize_matrix(qt, rows, cols, &w, None);
            let (eg, ep) = (out_err(&g, qt), out_err(&plain, qt));
            assert!(eg < 0.7 * ep, "{qt:?}: gptq {eg} vs plain {ep}");
        }
    }
}
