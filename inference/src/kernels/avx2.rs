//! x86_64 AVX2 + FMA + F16C kernels.
//!
//! One 32-value block is one ymm. Integer products use `vpmaddubsw` (u8 × i8 -> i16 pairs) +
//! `vpmaddwd` (-> i32): Q4 nibbles are already unsigned, Q8_0 weights go through the sign trick
//! (|w| × sign(a, w)). The Q4 offset / minimum is not applied per element: with
//! `s = d_a * sum(q_a)` precomputed per activation block, a block contributes
//! `d_w d_a sum(q_w q_a) + m s` where m = -8 d_w for Q4_0 and the stored minimum for Q4_1.
//! Up to four weight rows are walked together so four independent FMA chains hide latency and
//! each activation block is loaded once.

use super::act::{ActRow, QActs};
use super::Tile;
use crate::quant::{Q4_0_BLOCK, Q4_1_BLOCK, Q8_0_BLOCK, QK};
use core::arch::x86_64::*;

/// Software prefetch distance along the weights (bytes). Four interleaved row streams defeat
/// the hardware streamer on DRAM-resident matrices (measured: Q8_0 49152x576 went from ~5 ms to
/// ~1 ms per call); fetching the same block of the next row tile keeps one tile of lead.
#[inline(always)]
pub(crate) fn prefetch_distance(nr: usize, rb: usize) -> usize {
    (2 * nr * rb).max(PREFETCH_MIN)
}
pub(crate) const PREFETCH_MIN: usize = 1024;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f16_at(p: *const u8) -> f32 {
    let h = (p as *const u16).read_unaligned();
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// 32 nibbles -> 32 bytes in 0..=15: low nibbles are elements 0..15, high ones 16..31.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn nibbles(p: *const u8) -> __m256i {
    let x = _mm_loadu_si128(p as *const __m128i);
    let v = _mm256_set_m128i(_mm_srli_epi16(x, 4), x);
    _mm256_and_si256(v, _mm256_set1_epi8(0x0f))
}

/// Eight i32 partial sums of u8 × i8 products.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// Eight i32 partial sums of i8 × i8 products (|w| × sign(a, w); |w| <= 128, so the i16 pair
/// sums stay below 2 * 128 * 127 and never saturate).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_i8_i8(w: __m256i, a: __m256i) -> __m256i {
    dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_act(a: &ActRow, i: usize) -> __m256i {
    _mm256_loadu_si256(a.qs.as_ptr().add(i * QK) as *const __m256i)
}

/// NR rows (`rb` bytes apart, from `w`) of Q8_0 against one activation row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q8_0<const NR: usize>(w: *const u8, rb: usize, a: &ActRow) -> [f32; NR] {
    let mut acc = [_mm256_setzero_ps(); NR];
    let pf = prefetch_distance(NR, rb);
    for i in 0..a.d.len() {
        let av = load_act(a, i);
        let da = *a.d.get_unchecked(i);
        for (r, acc) in acc.iter_mut().enumerate() {
            let blk = w.add(r * rb + i * Q8_0_BLOCK);
            _mm_prefetch::<_MM_HINT_T0>(blk.add(pf) as *const i8);
            let wv = _mm256_loadu_si256(blk.add(2) as *const __m256i);
            let p = _mm256_cvtepi32_ps(dot_i8_i8(wv, av));
            *acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(blk) * da), p, *acc);
        }
    }
    core::array::from_fn(|r| hsum(acc[r]))
}

/// NR rows of Q4_0 (`Q41 = false`) or Q4_1 against one activation row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q4<const NR: usize, const Q41: bool>(
    w: *const u8,
    rb: usize,
    a: &ActRow,
) -> [f32; NR] {
    let (bs, qoff) = if Q41 {
        (Q4_1_BLOCK, 4)
    } else {
        (Q4_0_BLOCK, 2)
    };
    let mut acc = [_mm256_setzero_ps(); NR];
    let mut corr = [0.0f32; NR];
    let pf = prefetch_distance(NR, rb);
    for i in 0..a.d.len() {
        let av = load_act(a, i);
        let da = *a.d.get_unchecked(i);
        let sa = *a.s.get_unchecked(i);
        for r in 0..NR {
            let blk = w.add(r * rb + i * bs);
            _mm_prefetch::<_MM_HINT_T0>(blk.add(pf) as *const i8);
            let dw = f16_at(blk);
            let m = if Q41 { f16_at(blk.add(2)) } else { -8.0 * dw };
            let p = _mm256_cvtepi32_ps(dot_u8_i8(nibbles(blk.add(qoff)), av));
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * da), p, acc[r]);
            corr[r] += m * sa;
        }
    }
    core::array::from_fn(|r| hsum(acc[r]) + corr[r])
}

macro_rules! tile_fn {
    ($name:ident, $rows:ident $(, $q41:literal)?) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
            let rb = w.len() / nr;
            let wp = w.as_ptr();
            for (c, oc) in out.iter_mut().enumerate().take(nc) {
                let a = acts.row(b0 + c);
                if nr == 4 {
                    *oc = $rows::<4 $(, $q41)?>(wp, rb, &a);
                } else {
                    for (r, o) in oc.iter_mut().enumerate().take(nr) {
                        *o = $rows::<1 $(, $q41)?>(wp.add(r * rb), rb, &a)[0];
                    }
                }
            }
        }
    };
}

tile_fn!(tile_q8_0, rows_q8_0);
tile_fn!(tile_q4_0, rows_q4, false);
tile_fn!(tile_q4_1, rows_q4, true);
