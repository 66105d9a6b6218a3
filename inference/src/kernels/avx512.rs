//! x86_64 AVX-512 (F + BW + VL) kernels, with and without VNNI (`vpdpbusd`).
//!
//! Two 32-value blocks per zmm (activation blocks are contiguous; weight blocks are loaded one
//! per ymm half). Without VNNI the u8 × i8 products use `vpmaddubsw` + `vpmaddwd`, with VNNI a
//! single `vpdpbusd`. Q8_0 weights are made unsigned with `vpabsb` and their sign moved onto the
//! activations with a masked subtract. Q4 offsets / minima are folded in per block through
//! `s = d_a * sum(q_a)` (see avx2.rs). A tile of 4 weight rows × up to 4 activation rows expands
//! each weight block once and reuses it for every activation row (prefill), and 32 zmm registers
//! hold the 16 accumulators.
//!
//! The same source is stamped out twice by `avx512_kernels!`, once per feature set, so the
//! non-VNNI copy never contains a VNNI instruction.

macro_rules! avx512_kernels {
    ($modname:ident, $feat:literal, $vnni:literal) => {
        pub(crate) mod $modname {
            use super::super::act::{ActRow, QActs};
            use super::super::Tile;
            use crate::quant::{Q4_0_BLOCK, Q4_1_BLOCK, Q8_0_BLOCK, QK};
            use core::arch::x86_64::*;

            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn f16_at(p: *const u8) -> f32 {
                let h = (p as *const u16).read_unaligned();
                _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
            }

            /// Sixteen i32 partial sums of u8 × i8 products.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn dot_u8_i8(u: __m512i, s: __m512i) -> __m512i {
                if $vnni {
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s)
                } else {
                    _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1))
                }
            }

            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn join(lo: __m256i, hi: __m256i) -> __m512i {
                _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
            }

            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn nibbles(p: *const u8) -> __m256i {
                let x = _mm_loadu_si128(p as *const __m128i);
                let v = _mm256_set_m128i(_mm_srli_epi16(x, 4), x);
                _mm256_and_si256(v, _mm256_set1_epi8(0x0f))
            }

            /// [a x 8, b x 8]
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn pair(a: f32, b: f32) -> __m512 {
                _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(a), _mm512_set1_ps(b))
            }

            /// Activation blocks i and i + 1 (zeros past the row end).
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn load_act(a: &ActRow, i: usize, two: bool) -> (__m512i, f32, f32, f32, f32) {
                let p = a.qs.as_ptr().add(i * QK) as *const i8;
                if two {
                    let v = _mm512_loadu_si512(p as *const _);
                    (
                        v,
                        *a.d.get_unchecked(i),
                        *a.d.get_unchecked(i + 1),
                        *a.s.get_unchecked(i),
                        *a.s.get_unchecked(i + 1),
                    )
                } else {
                    let v = _mm512_maskz_loadu_epi8(0xffff_ffff, p);
                    (v, *a.d.get_unchecked(i), 0.0, *a.s.get_unchecked(i), 0.0)
                }
            }

            /// Weight blocks i, i + 1 of one row as (unsigned quants, d0, d1, m0, m1).
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn load_w<const Q: u8>(
                row: *const u8,
                i: usize,
                two: bool,
                pf: usize,
            ) -> (__m512i, f32, f32, f32, f32) {
                // Q: 0 = Q8_0, 1 = Q4_0, 2 = Q4_1
                let bs = [Q8_0_BLOCK, Q4_0_BLOCK, Q4_1_BLOCK][Q as usize];
                let b0 = row.add(i * bs);
                let b1 = b0.add(bs);
                _mm_prefetch::<_MM_HINT_T0>(b0.add(pf) as *const i8);
                if Q == 0 {
                    _mm_prefetch::<_MM_HINT_T0>(b1.add(pf) as *const i8);
                }
                let d0 = f16_at(b0);
                let d1 = if two { f16_at(b1) } else { 0.0 };
                match Q {
                    0 => {
                        let lo = _mm256_loadu_si256(b0.add(2) as *const __m256i);
                        let hi = if two {
                            _mm256_loadu_si256(b1.add(2) as *const __m256i)
                        } else {
                            _mm256_setzero_si256()
                        };
                        (join(lo, hi), d0, d1, 0.0, 0.0)
                    }
                    1 => {
                        let hi = if two {
                            nibbles(b1.add(2))
                        } else {
                            _mm256_setzero_si256()
                        };
                        (join(nibbles(b0.add(2)), hi), d0, d1, -8.0 * d0, -8.0 * d1)
                    }
                    _ => {
                        let hi = if two {
                            nibbles(b1.add(4))
                        } else {
                            _mm256_setzero_si256()
                        };
                        let m1 = if two { f16_at(b1.add(2)) } else { 0.0 };
                        (join(nibbles(b0.add(4)), hi), d0, d1, f16_at(b0.add(2)), m1)
                    }
                }
            }

            /// NR weight rows × NC activation rows.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn tile<const Q: u8, const NR: usize, const NC: usize>(
                w: *const u8,
                rb: usize,
                acts: &QActs,
                b0: usize,
                out: &mut Tile,
            ) {
                let a: [ActRow; NC] = core::array::from_fn(|c| acts.row(b0 + c));
                let nb = acts.nb;
                let mut acc = [[_mm512_setzero_ps(); NR]; NC];
                let pf = super::super::avx2::prefetch_distance(NR, rb);
                let mut i = 0;
                while i < nb {
                    let two = i + 1 < nb;
                    let wb: [_; NR] =
                        core::array::from_fn(|r| load_w::<Q>(w.add(r * rb), i, two, pf));
                    // Q8_0: |w| as the unsigned operand, sign(w) moved onto the activations.
                    let neg: [__mmask64; NR] = core::array::from_fn(|r| {
                        if Q == 0 {
                            _mm512_movepi8_mask(wb[r].0)
                        } else {
                            0
                        }
                    });
                    let wu: [__m512i; NR] = core::array::from_fn(|r| {
                        if Q == 0 {
                            _mm512_abs_epi8(wb[r].0)
                        } else {
                            wb[r].0
                        }
                    });
                    // Per-row scale and offset vectors ([block i] x 8, [block i+1] x 8); the
                    // offset is spread over 8 lanes (m / 8 each) so it folds into the same
                    // accumulator with one FMA instead of scalar work per row and column.
                    let dwv: [__m512; NR] = core::array::from_fn(|r| pair(wb[r].1, wb[r].2));
                    let mv: [__m512; NR] =
                        core::array::from_fn(|r| pair(wb[r].3 * 0.125, wb[r].4 * 0.125));
                    for c in 0..NC {
                        let (av, da0, da1, sa0, sa1) = load_act(&a[c], i, two);
                        let dav = pair(da0, da1);
                        let sv = pair(sa0, sa1);
                        for r in 0..NR {
                            let s = if Q == 0 {
                                _mm512_mask_sub_epi8(av, neg[r], _mm512_setzero_si512(), av)
                            } else {
                                av
                            };
                            let p = _mm512_cvtepi32_ps(dot_u8_i8(wu[r], s));
                            acc[c][r] = _mm512_fmadd_ps(_mm512_mul_ps(dwv[r], dav), p, acc[c][r]);
                            if Q != 0 {
                                acc[c][r] = _mm512_fmadd_ps(mv[r], sv, acc[c][r]);
                            }
                        }
                    }
                    i += 2;
                }
                for c in 0..NC {
                    for r in 0..NR {
                        out[c][r] = _mm512_reduce_add_ps(acc[c][r]);
                    }
                }
            }

            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn tile_q<const Q: u8>(
                w: &[u8],
                nr: usize,
                acts: &QActs,
                b0: usize,
                nc: usize,
                out: &mut Tile,
            ) {
                let rb = w.len() / nr;
                let wp = w.as_ptr();
                if nr == 4 && nc == 4 {
                    return tile::<Q, 4, 4>(wp, rb, acts, b0, out);
                }
                let mut one: Tile = [[0.0; 4]; 4];
                for c in 0..nc {
                    if nr == 4 {
                        tile::<Q, 4, 1>(wp, rb, acts, b0 + c, &mut one);
                        out[c] = one[0];
                    } else {
                        for r in 0..nr {
                            tile::<Q, 1, 1>(wp.add(r * rb), rb, acts, b0 + c, &mut one);
                            out[c][r] = one[0][0];
                        }
                    }
                }
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn tile_q8_0(
                w: &[u8],
                nr: usize,
                acts: &QActs,
                b0: usize,
                nc: usize,
                out: &mut Tile,
            ) {
                tile_q::<0>(w, nr, acts, b0, nc, out)
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn tile_q4_0(
                w: &[u8],
                nr: usize,
                acts: &QActs,
                b0: usize,
                nc: usize,
                out: &mut Tile,
            ) {
                tile_q::<1>(w, nr, acts, b0, nc, out)
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn tile_q4_1(
                w: &[u8],
                nr: usize,
                acts: &QActs,
                b0: usize,
                nc: usize,
                out: &mut Tile,
            ) {
                tile_q::<2>(w, nr, acts, b0, nc, out)
            }
        }
    };
}

avx512_kernels!(plain, "avx2,fma,f16c,avx512f,avx512bw,avx512vl", false);
avx512_kernels!(
    vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    true
);
