//! The scalar path against `candle-core`'s quantized module (an independent implementation of
//! the ggml formats): block bytes from both quantisers, dequantisation, and dot products with
//! candle's own Q8_0 / Q8_1 activation blocks.

use super::act::QActs;
use super::scalar;
use super::tests::Rng;
use crate::quant::{dequantize_row, f16_to_f32, quantize_row, row_bytes, QuantType, QK};
use alloc::vec;
use alloc::vec::Vec;
use candle_core::quantized::k_quants::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, GgmlType};

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
    (0..n)
        .map(|i| {
            let scale = [1.0, 1e-3, 300.0, 0.0][i % 4];
            (0..4 * QK)
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
}

/// candle's activation blocks as our activation arrays (same integers, same scales).
fn acts_from_q8_0(blocks: &[BlockQ8_0]) -> QActs {
    let bytes = to_bytes(blocks);
    let nb = blocks.len();
    let mut a = QActs {
        nb,
        qs: vec![0; nb * QK],
        d: vec![0.0; nb],
        s: vec![0.0; nb],
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

        for qt in [QuantType::Q8_0, QuantType::Q4_0] {
            let mut wq = vec![0u8; row_bytes(qt, n)];
            quantize_row(qt, w, &mut wq);
            let ours = match qt {
                QuantType::Q8_0 => scalar::dot_q8_0(&wq, acts.row(0)),
                _ => scalar::dot_q4_0(&wq, acts.row(0)),
            };
            let theirs = match qt {
                QuantType::Q8_0 => BlockQ8_0::vec_dot(n, &to_blocks::<BlockQ8_0>(&wq), &xq),
                _ => BlockQ4_0::vec_dot(n, &to_blocks::<BlockQ4_0>(&wq), &xq),
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
    }
}
