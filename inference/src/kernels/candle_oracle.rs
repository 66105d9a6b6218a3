//! The scalar path against `candle-core`'s quantized module (an independent implementation of
//! the ggml formats): block bytes from both quantisers (the 32-value types, which both round
//! with ggml's reference rule), dequantisation of every type, and dot products with candle's
//! own Q8_0 / Q8_1 / Q8_K activation blocks.

use super::act::{ActFormat, QActs};
use super::scalar;
use super::tests::{random_blocks, Rng};
use crate::quant::{dequantize_row, f16_to_f32, quantize_row, row_bytes, QuantType, QK, QK_K};
use alloc::vec;
use alloc::vec::Vec;
use candle_core::quantized::k_quants::{
    BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0,
    BlockQ8_1, GgmlType,
};

/// Our bytes reinterpreted as candle blocks (both are the ggml layout).
fn to_blocks<T: GgmlType>(bytes: &[u8]) -> Vec<T> {
    let size = core::mem::size_of::<T>();
    assert_eq!(bytes.len() % size, 0);
    let mut v = vec![T::zeros(); bytes.len() / size];
    // SAFETY: T is a repr(C) block of f16 / integer fields: any bytes are a valid value.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr() as *mut u8, bytes.len())
    };
    v
}

fn to_bytes<T: GgmlType>(blocks: &[T]) -> Vec<u8> {
    let n = core::mem::size_of_val(blocks);
    // SAFETY: reading plain-old-data blocks as bytes.
    unsafe { core::slice::from_raw_parts(blocks.as_ptr() as *const u8, n) }.to_vec()
}

fn rows(rng: &mut Rng, n: usize) -> Vec<Vec<f32>> {
    rows_of(rng, n, 4 * QK)
}

fn rows_of(rng: &mut Rng, n: usize, len: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            let scale = [1.0, 1e-3, 300.0, 0.0][i % 4];
            (0..len)
                .map(|_| rng.f32() * scale + if i % 5 == 1 { 0.7 } else { 0.0 })
                .collect()
        })
        .collect()
}

fn check_type<T: GgmlType>(qt: QuantType) {
    let mut rng = Rng::new(11);
    for src in rows(&mut rng, 24) {
        let mut ours = vec![0u8; row_bytes(qt, src.len())];
        quantize_row(qt, &src, &mut ours);
        let mut theirs = vec![T::zeros(); src.len() / QK];
        T::from_float(&src, &mut theirs);
        assert_eq!(
            ours,
            to_bytes(&theirs),
            "{qt:?}: block bytes differ from candle's quantiser"
        );

        let mut a = vec![0.0f32; src.len()];
        let mut b = vec![0.0f32; src.len()];
        dequantize_row(qt, &ours, &mut a);
        T::to_float(&to_blocks::<T>(&ours), &mut b);
        assert_eq!(a, b, "{qt:?}: dequantised values differ from candle's");
    }
}

#[test]
fn quantise_and_dequantise_match_candle() {
    check_type::<BlockQ8_0>(QuantType::Q8_0);
    check_type::<BlockQ4_0>(QuantType::Q4_0);
    check_type::<BlockQ4_1>(QuantType::Q4_1);
    check_type::<BlockQ5_0>(QuantType::Q5_0);
    check_type::<BlockQ5_1>(QuantType::Q5_1);
}

/// Dequantisation of random blocks (every bit pattern in every field) and of candle's own
/// quantiser output, for the K-quants (our quantiser is a plainer one than ggml's search).
fn check_dequant<T: GgmlType>(qt: QuantType) {
    let mut rng = Rng::new(13);
    for (i, src) in rows_of(&mut rng, 12, 2 * QK_K).into_iter().enumerate() {
        let blocks = if i % 2 == 0 {
            random_blocks(qt, &mut rng, 1, src.len(), 2.0)
        } else {
            let mut theirs = vec![T::zeros(); src.len() / T::BLCK_SIZE];
            T::from_float(&src, &mut theirs);
            to_bytes(&theirs)
        };
        let mut a = vec![0.0f32; src.len()];
        let mut b = vec![0.0f32; src.len()];
        dequantize_row(qt, &blocks, &mut a);
        T::to_float(&to_blocks::<T>(&blocks), &mut b);
        assert_eq!(a, b, "{qt:?}: dequantised values differ from candle's");
    }
}

#[test]
fn k_quants_dequantise_like_candle() {
    check_dequant::<BlockQ4K>(QuantType::Q4_K);
    check_dequant::<BlockQ5K>(QuantType::Q5_K);
    check_dequant::<BlockQ6K>(QuantType::Q6_K);
    check_dequant::<BlockQ5_0>(QuantType::Q5_0);
    check_dequant::<BlockQ5_1>(QuantType::Q5_1);
}
/// candle's activation blocks as our activation arrays (same integers, same scales).
fn acts_from_q8_0(blocks: &[BlockQ8_0]) -> QActs {
    let bytes = to_bytes(blocks);
    let nb = blocks.len();
    let mut a = QActs {
        format: ActFormat::Q8,
        nb,
        qs: vec![0; nb * QK],
        d: vec![0.0; nb],
        s: vec![0.0; nb],
        bsums: Vec::new(),
        stream: false,
    };
    for (i, blk) in bytes.chunks_exact(34).enumerate() {
        let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
        let mut sum = 0i32;
        for j in 0..QK {
            a.qs[i * QK + j] = blk[2 + j] as i8;
            sum += blk[2 + j] as i8 as i32;
        }
        a.d[i] = d;
        a.s[i] = d * sum as f32;
    }
    a
}

#[test]
fn dot_products_match_candle() {
    let mut rng = Rng::new(12);
    let all = rows(&mut rng, 40);
    for pair in all.chunks_exact(2) {
        let (w, x) = (&pair[0], &pair[1]);
        let n = w.len();
        let mut xq = vec![BlockQ8_0::zeros(); n / QK];
        BlockQ8_0::from_float(x, &mut xq);
        let acts = acts_from_q8_0(&xq);
        let mut mag = 0.0f32;
        for (a, b) in w.iter().zip(x) {
            mag += (a * b).abs();
        }
        let tol = 1e-5 * mag + 1e-30;

        for qt in [QuantType::Q8_0, QuantType::Q4_0, QuantType::Q5_0] {
            let mut wq = vec![0u8; row_bytes(qt, n)];
            quantize_row(qt, w, &mut wq);
            let ours = match qt {
                QuantType::Q8_0 => scalar::dot_q8_0(&wq, acts.row(0)),
                QuantType::Q4_0 => scalar::dot_q4_0(&wq, acts.row(0)),
                _ => scalar::dot_q5::<false>(&wq, acts.row(0)),
            };
            let theirs = match qt {
                QuantType::Q8_0 => BlockQ8_0::vec_dot(n, &to_blocks::<BlockQ8_0>(&wq), &xq),
                QuantType::Q4_0 => BlockQ4_0::vec_dot(n, &to_blocks::<BlockQ4_0>(&wq), &xq),
                _ => BlockQ5_0::vec_dot(n, &to_blocks::<BlockQ5_0>(&wq), &xq),
            };
            assert!(
                (ours - theirs).abs() <= tol,
                "{qt:?}: ours {ours} candle {theirs}"
            );
        }

        // Q4_1 pairs with Q8_1 activations, whose s = d * sum(q) is rounded to f16: allow for
        // that rounding on top of the summation-order tolerance.
        let mut wq = vec![0u8; row_bytes(QuantType::Q4_1, n)];
        quantize_row(QuantType::Q4_1, w, &mut wq);
        let mut x1 = vec![BlockQ8_1::zeros(); n / QK];
        BlockQ8_1::from_float(x, &mut x1);
        let ours = scalar::dot_q4_1(&wq, acts.row(0));
        let theirs = BlockQ4_1::vec_dot(n, &to_blocks::<BlockQ4_1>(&wq), &x1);
        let ms: f32 = wq
            .chunks_exact(20)
            .zip(&acts.s)
            .map(|(b, s)| (f16_to_f32(u16::from_le_bytes([b[2], b[3]])) * s).abs())
            .sum();
        assert!(
            (ours - theirs).abs() <= tol + 2e-3 * ms,
            "Q4_1: ours {ours} candle {theirs}"
        );
        let mut wq = vec![0u8; row_bytes(QuantType::Q5_1, n)];
        quantize_row(QuantType::Q5_1, w, &mut wq);
        let ours = scalar::dot_q5::<true>(&wq, acts.row(0));
        let theirs = BlockQ5_1::vec_dot(n, &to_blocks::<BlockQ5_1>(&wq), &x1);
        let ms: f32 = wq
            .chunks_exact(24)
            .zip(&acts.s)
            .map(|(b, s)| (f16_to_f32(u16::from_le_bytes([b[2], b[3]])) * s).abs())
            .sum();
        assert!(
            (ours - theirs).abs() <= tol + 2e-3 * ms,
            "Q5_1: ours {ours} candle {theirs}"
        );
    }
}

/// candle's Q8_K blocks (f32 d, 256 × i8, 16 × i16 sums) as our activation arrays.
fn acts_from_q8k(blocks: &[BlockQ8K]) -> QActs {
    let bytes = to_bytes(blocks);
    let nb = blocks.len();
    let mut a = QActs {
        format: ActFormat::Q8K,
        nb,
        qs: vec![0; nb * QK_K],
        d: vec![0.0; nb],
        s: Vec::new(),
        bsums: vec![0; nb * 16],
        stream: false,
    };
    for (i, blk) in bytes.chunks_exact(4 + QK_K + 32).enumerate() {
        a.d[i] = f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
        for j in 0..QK_K {
            a.qs[i * QK_K + j] = blk[4 + j] as i8;
        }
        for j in 0..16 {
            let at = 4 + QK_K + 2 * j;
            a.bsums[i * 16 + j] = i16::from_le_bytes([blk[at], blk[at + 1]]);
        }
    }
    a
}

#[test]
fn k_quant_dot_products_match_candle() {
    let mut rng = Rng::new(14);
    for (i, x) in rows_of(&mut rng, 16, 2 * QK_K).into_iter().enumerate() {
        let n = x.len();
        let mut xq = vec![BlockQ8K::zeros(); n / QK_K];
        BlockQ8K::from_float(&x, &mut xq);
        let acts = acts_from_q8k(&xq);
        for qt in [QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K] {
            let wq = random_blocks(qt, &mut rng, 1, n, if i % 2 == 0 { 1.0 } else { 1e-3 });
            let (ours, theirs) = match qt {
                QuantType::Q4_K => (
                    scalar::dot_qk_min::<false>(&wq, acts.row(0)),
                    BlockQ4K::vec_dot(n, &to_blocks::<BlockQ4K>(&wq), &xq),
                ),
                QuantType::Q5_K => (
                    scalar::dot_qk_min::<true>(&wq, acts.row(0)),
                    BlockQ5K::vec_dot(n, &to_blocks::<BlockQ5K>(&wq), &xq),
                ),
                _ => (
                    scalar::dot_q6_k(&wq, acts.row(0)),
                    BlockQ6K::vec_dot(n, &to_blocks::<BlockQ6K>(&wq), &xq),
                ),
            };
            // Tolerance from the magnitude of the terms: dequantised weights times activations.
            let mut wf = vec![0.0f32; n];
            dequantize_row(qt, &wq, &mut wf);
            let mag: f32 = (0..n).map(|c| (wf[c] * acts.value(0, c)).abs()).sum();
            assert!(
                (ours - theirs).abs() <= 1e-5 * mag + 1e-30,
                "{qt:?} row {i}: ours {ours} candle {theirs}"
            );
        }
    }
}
