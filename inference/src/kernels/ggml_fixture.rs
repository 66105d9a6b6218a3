//! Our formats and kernels against an independent implementation: `testdata/ggml_blocks.bin`,
//! made once by llama.cpp's `gguf` Python package (`testdata/make_ggml_blocks.py`). Random
//! blocks of every quantised type with gguf's dequantisation of them, and f32 rows with gguf's
//! quantisation of them (the 32-value types, whose reference rounding we share).

use super::tests::{runnable_variants, Rng};
use super::*;
use crate::exec::Inline;
use crate::quant::{dequantize_row, quantize_row, QK_K};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

const FIXTURE: &[u8] = include_bytes!("testdata/ggml_blocks.bin");

struct Section {
    qtype: QuantType,
    /// 0: `blocks` dequantise to `values`; 1: `values` quantise to `blocks`.
    kind: u32,
    values: Vec<f32>,
    blocks: Vec<u8>,
}

fn sections() -> Vec<Section> {
    assert_eq!(&FIXTURE[..8], b"MKQBLK01");
    let u32_at = |at: usize| u32::from_le_bytes(FIXTURE[at..at + 4].try_into().unwrap()) as usize;
    let mut at = 8;
    let mut out = Vec::new();
    while at < FIXTURE.len() {
        let name = String::from_utf8(FIXTURE[at..at + 8].to_vec()).unwrap();
        let qtype = QuantType::from_name(name.trim_end_matches('\0')).unwrap();
        let (kind, nv, nb) = (u32_at(at + 8) as u32, u32_at(at + 12), u32_at(at + 16));
        at += 20;
        let floats = |at: usize| -> Vec<f32> {
            FIXTURE[at..at + 4 * nv]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        };
        let (values, blocks) = if kind == 0 {
            (floats(at + nb), FIXTURE[at..at + nb].to_vec())
        } else {
            (floats(at), FIXTURE[at + 4 * nv..at + 4 * nv + nb].to_vec())
        };
        at += 4 * nv + nb;
        out.push(Section {
            qtype,
            kind,
            values,
            blocks,
        });
    }
    out
}

#[test]
fn fixture_covers_every_quantised_type() {
    let s = sections();
    for qt in QuantType::ALL.into_iter().filter(|&q| q != QuantType::F32) {
        assert!(s.iter().any(|x| x.qtype == qt && x.kind == 0), "{qt:?}");
    }
}

#[test]
fn dequantisation_matches_gguf() {
    for s in sections().iter().filter(|s| s.kind == 0) {
        assert_eq!(s.blocks.len(), row_bytes(s.qtype, s.values.len()));
        let mut ours = vec![f32::NAN; s.values.len()];
        dequantize_row(s.qtype, &s.blocks, &mut ours);
        for (i, (a, b)) in ours.iter().zip(&s.values).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{:?} value {i}: ours {a}, gguf {b}",
                s.qtype
            );
        }
    }
}

#[test]
fn quantisation_matches_gguf() {
    for s in sections().iter().filter(|s| s.kind == 1) {
        let mut ours = vec![0u8; row_bytes(s.qtype, s.values.len())];
        quantize_row(s.qtype, &s.values, &mut ours);
        assert_eq!(
            ours, s.blocks,
            "{:?}: block bytes differ from gguf's",
            s.qtype
        );
    }
}

/// Every kernel variant this machine runs, decode and prefill, on the fixture's blocks (as rows
/// of 256 values) against f64 sums of gguf's dequantised weights times our quantised
/// activations.
#[test]
fn kernels_match_gguf_dequantisation() {
    let scalar = Kernels::with_variant(KernelVariant::Scalar, &CpuFeatures::default()).unwrap();
    let mut rng = Rng::new(21);
    for s in sections().iter().filter(|s| s.kind == 0) {
        let cols = QK_K;
        let rows = s.values.len() / cols;
        let w = MatRef::new(s.qtype, rows, cols, &s.blocks).unwrap();
        for batch in [1, 3, 5] {
            let x: Vec<f32> = (0..batch * cols).map(|_| rng.f32() * 2.0).collect();
            let (_, fmt) = SCALAR.quantised(s.qtype).unwrap();
            let acts = QActs::quantize(&x, cols, batch, fmt, &act::SCALAR_ACT);
            for k in core::iter::once(scalar).chain(runnable_variants()) {
                let mut out = vec![f32::NAN; batch * rows];
                k.matmul(w, &x, batch, &mut out, &Inline);
                for b in 0..batch {
                    for r in 0..rows {
                        let (mut want, mut mag) = (0.0f64, 0.0f64);
                        for c in 0..cols {
                            let t = s.values[r * cols + c] as f64 * acts.value(b, c) as f64;
                            want += t;
                            mag += t.abs();
                        }
                        let got = out[b * rows + r] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * mag + 1e-30,
                            "{} {:?} b{batch} [{b}][{r}]: {got} vs {want}",
                            k.variant().name(),
                            s.qtype
                        );
                    }
                }
            }
        }
    }
}
