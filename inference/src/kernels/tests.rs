//! Kernel tests: scalar path against an f64 reference built from dequantised blocks, and every
//! SIMD path the host (or qemu's `-cpu max`) can run against the scalar path.

use super::*;
use crate::exec::Inline;
use crate::quant::{dequantize_row, f32_to_f16, quantize_row, Q8_0_BLOCK, QK, QK_K};
use alloc::vec;
use alloc::vec::Vec;
use std::sync::atomic::{AtomicUsize, Ordering};

/// xorshift64*: deterministic test data without a dependency.
pub(crate) struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Std-thread executor (tests only): task i runs on thread i % workers.
pub(crate) struct Threads(pub usize);
impl Executor for Threads {
    fn workers(&self) -> usize {
        self.0
    }
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..self.0 {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= tasks {
                        break;
                    }
                    f(i);
                });
            }
        });
    }
}

pub(crate) fn quantize_matrix(qt: QuantType, w: &[f32], rows: usize, cols: usize) -> Vec<u8> {
    let rb = row_bytes(qt, cols);
    let mut data = vec![0u8; rows * rb];
    for r in 0..rows {
        quantize_row(
            qt,
            &w[r * cols..(r + 1) * cols],
            &mut data[r * rb..(r + 1) * rb],
        );
    }
    data
}

/// f64 reference of what the quantised kernels compute: dequantised weights times the
/// dequantised Q8 activations. Returns (values, sum of |terms| per output for tolerances).
fn reference(w: MatRef, x: &[f32], batch: usize) -> (Vec<f64>, Vec<f64>) {
    let (rows, cols) = (w.rows, w.cols);
    let rb = row_bytes(w.qtype, cols);
    let acts = SCALAR
        .quantised(w.qtype)
        .map(|(_, fmt)| QActs::quantize(x, cols, batch, fmt, &act::SCALAR_ACT));
    let mut out = vec![0.0; batch * rows];
    let mut mag = vec![0.0; batch * rows];
    let mut wrow = vec![0.0f32; cols];
    for r in 0..rows {
        dequantize_row(w.qtype, &w.data[r * rb..(r + 1) * rb], &mut wrow);
        for b in 0..batch {
            let (mut s, mut m) = (0.0f64, 0.0f64);
            for c in 0..cols {
                let xv = match &acts {
                    None => x[b * cols + c] as f64,
                    Some(a) => a.value(b, c) as f64,
                };
                s += wrow[c] as f64 * xv;
                m += (wrow[c] as f64 * xv).abs();
            }
            out[b * rows + r] = s;
            mag[b * rows + r] = m;
        }
    }
    (out, mag)
}

fn random_vec(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.f32() * scale).collect()
}

/// K-quant rows are whole super-blocks: a test shape's `cols` rounded up to 256.
pub(crate) fn cols_for(qt: QuantType, cols: usize) -> usize {
    if qt.is_k_quant() {
        cols.div_ceil(QK_K).max(1) * QK_K
    } else {
        cols
    }
}

/// Byte offsets of the f16 fields (scales, minima) in a block of `qt`.
pub(crate) fn f16_fields(qt: QuantType) -> &'static [usize] {
    match qt {
        QuantType::F32 => &[],
        QuantType::Q8_0 | QuantType::Q4_0 | QuantType::Q5_0 => &[0],
        QuantType::Q6_K => &[208],
        _ => &[0, 2],
    }
}

/// Random bytes in every quant, scale and bit field (so every packing path is exercised,
/// unlike quantiser output), with the f16 fields set to finite values of about `scale`.
pub(crate) fn random_blocks(
    qt: QuantType,
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    scale: f32,
) -> Vec<u8> {
    let mut data: Vec<u8> = (0..rows * row_bytes(qt, cols))
        .map(|_| rng.next_u64() as u8)
        .collect();
    for blk in data.chunks_exact_mut(qt.block_bytes()) {
        for &at in f16_fields(qt) {
            let h = f32_to_f16(rng.f32() * scale);
            blk[at..at + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    data
}

const SHAPES: [(usize, usize, usize); 10] = [
    // (rows, cols, batch): tails, odd row counts, batch 1 and > 1
    (1, 32, 1),
    (3, 32, 1),
    (5, 64, 3),
    (7, 172, 1),
    (9, 172, 5),
    (64, 96, 4),
    (17, 33, 2),
    (13, 288, 7),
    (4, 1, 1),
    (133, 40, 5), // several ROW_BLOCKs, the last one partial
];

#[test]
fn scalar_matches_reference() {
    let k = Kernels::with_variant(KernelVariant::Scalar, &CpuFeatures::default()).unwrap();
    let mut rng = Rng::new(1);
    for qt in QuantType::ALL {
        for (i, &(rows, cols, batch)) in SHAPES.iter().enumerate() {
            let cols = cols_for(qt, cols);
            let x = random_vec(&mut rng, batch * cols, 3.0);
            let data = if i % 2 == 1 && qt != QuantType::F32 {
                random_blocks(qt, &mut rng, rows, cols, 0.05)
            } else {
                let wf = random_vec(&mut rng, rows * cols, 2.0);
                quantize_matrix(qt, &wf, rows, cols)
            };
            let w = MatRef::new(qt, rows, cols, &data).unwrap();
            let mut out = vec![f32::NAN; batch * rows];
            k.matmul(w, &x, batch, &mut out, &Inline);
            let (want, mag) = reference(w, &x, batch);
            for i in 0..out.len() {
                let tol = 1e-5 * mag[i] + 1e-6;
                assert!(
                    (out[i] as f64 - want[i]).abs() <= tol,
                    "{qt:?} {rows}x{cols} b{batch} [{i}]: {} vs {}",
                    out[i],
                    want[i]
                );
            }
        }
    }
}

#[test]
fn quantised_matmul_close_to_f32_maths() {
    // Independent of the activation quantiser: the result must be near the exact product.
    let k = Kernels::select(&CpuFeatures::default());
    let mut rng = Rng::new(2);
    let (rows, cols, batch) = (16, 256, 2);
    let wf = random_vec(&mut rng, rows * cols, 1.0);
    let x = random_vec(&mut rng, batch * cols, 1.0);
    for (qt, rel) in [
        (QuantType::Q8_0, 0.02),
        (QuantType::Q4_0, 0.15),
        (QuantType::Q4_1, 0.15),
        (QuantType::Q5_0, 0.08),
        (QuantType::Q5_1, 0.08),
        (QuantType::Q4_K, 0.15),
        (QuantType::Q5_K, 0.08),
        (QuantType::Q6_K, 0.04),
    ] {
        let data = quantize_matrix(qt, &wf, rows, cols);
        let mut out = vec![0.0; batch * rows];
        k.matmul(
            MatRef::new(qt, rows, cols, &data).unwrap(),
            &x,
            batch,
            &mut out,
            &Inline,
        );
        let mut err = 0.0f64;
        let mut norm = 0.0f64;
        for b in 0..batch {
            for r in 0..rows {
                let exact: f64 = (0..cols)
                    .map(|c| wf[r * cols + c] as f64 * x[b * cols + c] as f64)
                    .sum();
                err += (out[b * rows + r] as f64 - exact).powi(2);
                norm += exact * exact;
            }
        }
        assert!(
            (err / norm).sqrt() < rel,
            "{qt:?}: relative rms error {}",
            (err / norm).sqrt()
        );
    }
}

#[test]
fn f32_is_sequential_sum_bit_exact() {
    let k = Kernels::select(&CpuFeatures::default());
    let mut rng = Rng::new(3);
    let (rows, cols, batch) = (11, 172, 3);
    let wf = random_vec(&mut rng, rows * cols, 1.0);
    let x = random_vec(&mut rng, batch * cols, 1.0);
    let data = quantize_matrix(QuantType::F32, &wf, rows, cols);
    let mut out = vec![0.0; batch * rows];
    k.matmul(
        MatRef::new(QuantType::F32, rows, cols, &data).unwrap(),
        &x,
        batch,
        &mut out,
        &Threads(2),
    );
    for b in 0..batch {
        for r in 0..rows {
            let mut val = 0.0f32;
            for c in 0..cols {
                val += wf[r * cols + c] * x[b * cols + c];
            }
            assert_eq!(out[b * rows + r].to_bits(), val.to_bits());
        }
    }
}

#[test]
fn threads_give_same_result_as_inline() {
    let k = Kernels::select(&CpuFeatures::default());
    let mut rng = Rng::new(4);
    for workers in [2, 3, 8] {
        for &(rows, cols, batch) in &SHAPES {
            let wf = random_vec(&mut rng, rows * cols, 1.0);
            let x = random_vec(&mut rng, batch * cols, 1.0);
            let data = quantize_matrix(QuantType::Q4_1, &wf, rows, cols);
            let w = MatRef::new(QuantType::Q4_1, rows, cols, &data).unwrap();
            let mut a = vec![0.0; batch * rows];
            let mut b = vec![1.0; batch * rows];
            k.matmul(w, &x, batch, &mut a, &Inline);
            k.matmul(w, &x, batch, &mut b, &Threads(workers));
            assert_eq!(a, b);
        }
    }
}

#[test]
fn matref_rejects_bad_sizes() {
    let data = [0u8; 40];
    assert!(MatRef::new(QuantType::Q8_0, 1, 32, &data[..34]).is_ok());
    assert!(MatRef::new(QuantType::Q8_0, 1, 33, &data).is_err());
    assert!(MatRef::new(QuantType::Q4_0, 2, 32, &data[..35]).is_err());
    assert!(MatRef::new(QuantType::F32, usize::MAX, 8, &data).is_err());
    // K-quants: whole super-blocks only, an error (not a panic) otherwise.
    let big = vec![0u8; 2 * 210];
    assert!(MatRef::new(QuantType::Q6_K, 1, 512, &big).is_ok());
    let e = MatRef::new(QuantType::Q6_K, 1, 640, &big).unwrap_err();
    assert!(matches!(e, MatError::RowLen(_)), "{e:?}");
    assert_eq!(
        alloc::format!("{e}"),
        "q6_k rows must be a multiple of 256 values, not 640"
    );
}

#[test]
fn selection_prefers_the_best_supported_variant() {
    let avx2 = CpuFeatures {
        avx2: true,
        fma: true,
        f16c: true,
        ..CpuFeatures::default()
    };
    let avx512 = CpuFeatures {
        avx512f: true,
        avx512bw: true,
        avx512vl: true,
        ..avx2
    };
    let vnni = CpuFeatures {
        avx512vnni: true,
        ..avx512
    };
    let neon = CpuFeatures {
        neon: true,
        ..CpuFeatures::default()
    };
    let dot = CpuFeatures {
        dotprod: true,
        ..neon
    };
    let mm = CpuFeatures { i8mm: true, ..dot };
    let x86 = cfg!(target_arch = "x86_64");
    let arm = cfg!(target_arch = "aarch64");
    let cases = [
        (
            avx2,
            if x86 {
                KernelVariant::Avx2
            } else {
                KernelVariant::Scalar
            },
        ),
        (
            avx512,
            if x86 {
                KernelVariant::Avx512
            } else {
                KernelVariant::Scalar
            },
        ),
        (
            vnni,
            if x86 {
                KernelVariant::Avx512Vnni
            } else {
                KernelVariant::Scalar
            },
        ),
        // AVX2 without FMA is not enough for the AVX2 kernels.
        (CpuFeatures { fma: false, ..avx2 }, KernelVariant::Scalar),
        (
            neon,
            if arm {
                KernelVariant::Neon
            } else {
                KernelVariant::Scalar
            },
        ),
        (
            dot,
            if arm {
                KernelVariant::NeonDotprod
            } else {
                KernelVariant::Scalar
            },
        ),
        (
            mm,
            if arm {
                KernelVariant::NeonI8mm
            } else {
                KernelVariant::Scalar
            },
        ),
        // i8mm without dotprod: the i8mm variant uses sdot for decode.
        (
            CpuFeatures {
                dotprod: false,
                ..mm
            },
            if arm {
                KernelVariant::Neon
            } else {
                KernelVariant::Scalar
            },
        ),
    ];
    for (f, want) in cases {
        assert_eq!(Kernels::select(&f).variant(), want, "{f:?}");
    }
}

#[test]
fn selection_follows_features() {
    assert_eq!(
        Kernels::select(&CpuFeatures::default()).variant(),
        KernelVariant::Scalar
    );
    for v in KernelVariant::ALL {
        let k = Kernels::with_variant(v, &CpuFeatures::default());
        assert_eq!(k.is_some(), v == KernelVariant::Scalar, "{v:?}");
    }
}

/// SIMD variants this machine can run; prints the ones it cannot so a skipped path is visible.
pub(crate) fn runnable_variants() -> Vec<Kernels> {
    let f = host_features();
    let mut v = Vec::new();
    for var in KernelVariant::ALL {
        if var == KernelVariant::Scalar {
            continue;
        }
        match Kernels::with_variant(var, &f) {
            Some(k) => v.push(k),
            None => std::println!("variant {} not runnable here ({f:?})", var.name()),
        }
    }
    v
}

/// Inputs that stress the kernels: random, extreme and tiny scales, zero blocks, saturating
/// quants (-128 in Q8_0 weights), random bytes in every field (case 5).
fn edge_case_matrix(
    qt: QuantType,
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    case: usize,
) -> Vec<u8> {
    if case == 5 && qt != QuantType::F32 {
        return random_blocks(qt, rng, rows, cols, 0.1);
    }
    let scale = match case {
        0 => 1.0,
        1 => 6.0e4, // near the f16 maximum
        2 => 1.0e-6,
        _ => 3.0,
    };
    let mut wf = random_vec(rng, rows * cols, scale);
    if case == 3 {
        // zero blocks: every other block of every row
        for r in 0..rows {
            for c in 0..cols {
                if (c / QK).is_multiple_of(2) {
                    wf[r * cols + c] = 0.0;
                }
            }
        }
    }
    let mut data = quantize_matrix(qt, &wf, rows, cols);
    if case == 4 && qt == QuantType::Q8_0 {
        // raw blocks with -128 (a valid ggml block the quantiser never makes)
        for (i, b) in data.iter_mut().enumerate() {
            if i % Q8_0_BLOCK >= 2 && i % 5 == 0 {
                *b = 0x80;
            }
        }
    }
    data
}

#[test]
fn simd_matches_scalar() {
    let scalar = Kernels::with_variant(KernelVariant::Scalar, &CpuFeatures::default()).unwrap();
    let mut rng = Rng::new(5);
    let shapes = [
        (1, 32, 1),
        (4, 32, 1),
        (5, 64, 2),
        (7, 172, 1),
        (9, 172, 5),
        (16, 96, 4),
        (17, 33, 3),
        (33, 288, 7),
        (8, 576, 9),
        (3, 1, 1),
        (133, 40, 5),
    ];
    for k in runnable_variants() {
        for qt in QuantType::ALL {
            for &(rows, cols, batch) in &shapes {
                let cols = cols_for(qt, cols);
                for case in 0..6 {
                    let data = edge_case_matrix(qt, &mut rng, rows, cols, case);
                    let x = random_vec(&mut rng, batch * cols, if case == 2 { 1e-3 } else { 2.0 });
                    let w = MatRef::new(qt, rows, cols, &data).unwrap();
                    let mut want = vec![f32::NAN; batch * rows];
                    let mut got = vec![f32::NAN; batch * rows];
                    scalar.matmul(w, &x, batch, &mut want, &Inline);
                    k.matmul(w, &x, batch, &mut got, &Threads(2));
                    let (_, mag) = reference(w, &x, batch);
                    for i in 0..got.len() {
                        let tol = 2e-6 * mag[i] + f32::MIN_POSITIVE as f64;
                        assert!(
                            (got[i] as f64 - want[i] as f64).abs() <= tol,
                            "{} {qt:?} {rows}x{cols} b{batch} case {case} [{i}]: {} vs scalar {} (tol {tol})",
                            k.variant().name(),
                            got[i],
                            want[i]
                        );
                    }
                    if qt == QuantType::F32 {
                        assert_eq!(got, want, "{}: f32 must stay bit-exact", k.variant().name());
                    }
                }
            }
        }
    }
}

#[test]
fn simd_activation_quantiser_is_bit_identical() {
    let mut rng = Rng::new(6);
    for k in runnable_variants() {
        for case in 0..6 {
            let scale = [1.0, 1e-30, 3e4, 0.0, 1.0, 100.0][case];
            let mut v: [f32; QK] = core::array::from_fn(|_| rng.f32() * scale);
            if case == 4 {
                // exact halves: round-half-away-from-zero must agree
                v = core::array::from_fn(|i| {
                    (i as f32 - 16.0) * 0.5 + if i == 0 { 127.0 * 0.5 } else { 0.0 }
                });
            }
            let (mut a, mut b) = ([0i8; QK], [0i8; QK]);
            let want = super::act::quantize_full_block(&v, &mut a);
            // SAFETY: the variant is runnable on this CPU.
            let got = unsafe { (k.table.act.q8)(&v, &mut b) };
            assert_eq!(
                (want.0.to_bits(), want.1.to_bits(), a),
                (got.0.to_bits(), got.1.to_bits(), b),
                "{} case {case}",
                k.variant().name()
            );

            // Q8_K: the same values spread over a super-block (one scale for all 256).
            let vk: [f32; QK_K] =
                core::array::from_fn(|i| v[i % QK] * (1.0 + (i / QK) as f32 * 0.01));
            let (mut a, mut b) = ([0i8; QK_K], [0i8; QK_K]);
            let (mut sa, mut sb) = ([0i16; 16], [0i16; 16]);
            let want = super::act::quantize_full_super_block(&vk, &mut a, &mut sa);
            // SAFETY: the variant is runnable on this CPU.
            let got = unsafe { (k.table.act.q8k)(&vk, &mut b, &mut sb) };
            assert_eq!(
                (want.to_bits(), a, sa),
                (got.to_bits(), b, sb),
                "{} Q8_K case {case}",
                k.variant().name()
            );
        }
    }
}

#[test]
fn weights_at_odd_addresses() {
    // Tensors inside a model file start wherever the file puts them: no alignment assumed.
    let mut rng = Rng::new(7);
    let scalar = Kernels::with_variant(KernelVariant::Scalar, &CpuFeatures::default()).unwrap();
    let (rows, batch) = (9, 3);
    for qt in QuantType::ALL {
        let cols = cols_for(qt, 100);
        let wf = random_vec(&mut rng, rows * cols, 1.0);
        let xbuf = random_vec(&mut rng, batch * cols + 1, 1.0);
        let x = &xbuf[1..]; // activations off their natural alignment too
        let data = quantize_matrix(qt, &wf, rows, cols);
        let mut want = vec![0.0; batch * rows];
        scalar.matmul(
            MatRef::new(qt, rows, cols, &data).unwrap(),
            x,
            batch,
            &mut want,
            &Inline,
        );
        for off in 1..4 {
            let mut buf = vec![0u8; data.len() + off];
            buf[off..].copy_from_slice(&data);
            let w = MatRef::new(qt, rows, cols, &buf[off..]).unwrap();
            for k in core::iter::once(scalar).chain(runnable_variants()) {
                let mut got = vec![0.0; batch * rows];
                k.matmul(w, x, batch, &mut got, &Inline);
                for (g, s) in got.iter().zip(&want) {
                    let ok = (g - s).abs() <= 1e-4 * s.abs().max(1.0);
                    assert!(ok, "{} {qt:?} off {off}: {g} vs {s}", k.variant().name());
                }
            }
        }
    }
}

#[test]
fn streamed_decode_matches_tiled_decode() {
    // The driver asks for row-by-row streaming only for Q8_0 matrices of 4 MiB or more; call
    // the tiles directly with and without the hint so both paths run on a small matrix.
    let mut rng = Rng::new(8);
    let cols = 288;
    for k in core::iter::once(Kernels::select(&CpuFeatures::default())).chain(runnable_variants()) {
        for qt in [QuantType::Q8_0, QuantType::Q4_0, QuantType::Q5_0] {
            let (tile, fmt) = k.table.quantised(qt).unwrap();
            for nr in 1..=TILE {
                let data = random_blocks(qt, &mut rng, nr, cols, 0.1);
                let x = random_vec(&mut rng, cols, 1.0);
                let mut acts = QActs::quantize(&x, cols, 1, fmt, &k.table.act);
                let mut plain: Tile = [[0.0; TILE]; TILE];
                let mut streamed: Tile = [[0.0; TILE]; TILE];
                // SAFETY: the variant is runnable on this CPU; shapes match.
                unsafe { tile(&data, nr, &acts, 0, 1, &mut plain) };
                acts.stream = true;
                unsafe { tile(&data, nr, &acts, 0, 1, &mut streamed) };
                let (_, mag) = reference(MatRef::new(qt, nr, cols, &data).unwrap(), &x, 1);
                for r in 0..nr {
                    let tol = 2e-6 * mag[r] + f32::MIN_POSITIVE as f64;
                    assert!(
                        ((plain[0][r] - streamed[0][r]) as f64).abs() <= tol,
                        "{} {qt:?} nr {nr} row {r}: {} vs {}",
                        k.variant().name(),
                        plain[0][r],
                        streamed[0][r]
                    );
                }
            }
        }
    }
}
