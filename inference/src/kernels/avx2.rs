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
use crate::quant::{
    Q4_0_BLOCK, Q4_1_BLOCK, Q4_K_BLOCK, Q5_0_BLOCK, Q5_1_BLOCK, Q5_K_BLOCK, Q6_K_BLOCK, Q8_0_BLOCK,
    QK, QK_K,
};
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
    // Two accumulators per row (even and odd blocks): one row alone is otherwise bound by the
    // latency of its FMA chain.
    let mut acc = [[_mm256_setzero_ps(); 2]; NR];
    let pf = prefetch_distance(NR, rb);
    for i in 0..a.d.len() {
        let av = load_act(a, i);
        let da = *a.d.get_unchecked(i);
        for (r, acc) in acc.iter_mut().enumerate() {
            let blk = w.add(r * rb + i * Q8_0_BLOCK);
            _mm_prefetch::<_MM_HINT_T0>(blk.add(pf) as *const i8);
            let wv = _mm256_loadu_si256(blk.add(2) as *const __m256i);
            let p = _mm256_cvtepi32_ps(dot_i8_i8(wv, av));
            let acc = &mut acc[i & 1];
            *acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(blk) * da), p, *acc);
        }
    }
    core::array::from_fn(|r| hsum(_mm256_add_ps(acc[r][0], acc[r][1])))
}

/// 32 bytes, 0x10 where bit j of the little-endian u32 at `p` is set (Q5's fifth bits).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn fifth_bits(p: *const u8) -> __m256i {
    let v = _mm256_set1_epi32((p as *const i32).read_unaligned());
    // byte j <- byte j / 8 of the u32, then test bit j % 8
    let spread = _mm256_shuffle_epi8(
        v,
        _mm256_setr_epi64x(
            0,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// NR rows of a 4/5-bit 32-block type against one activation row. Q: 0 = Q4_0, 1 = Q4_1,
/// 2 = Q5_0, 3 = Q5_1. Levels stay unsigned; the offset (-8 d, -16 d) or stored minimum
/// folds in through `s = d_a * sum(q_a)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q4<const NR: usize, const Q: u8>(w: *const u8, rb: usize, a: &ActRow) -> [f32; NR] {
    let (bs, qoff) = [
        (Q4_0_BLOCK, 2),
        (Q4_1_BLOCK, 4),
        (Q5_0_BLOCK, 6),
        (Q5_1_BLOCK, 8),
    ][Q as usize];
    let mut acc = [[_mm256_setzero_ps(); 2]; NR];
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
            let m = match Q {
                0 => -8.0 * dw,
                2 => -16.0 * dw,
                _ => f16_at(blk.add(2)),
            };
            let mut q = nibbles(blk.add(qoff));
            if Q >= 2 {
                q = _mm256_or_si256(q, fifth_bits(blk.add(qoff - 4)));
            }
            let p = _mm256_cvtepi32_ps(dot_u8_i8(q, av));
            acc[r][i & 1] = _mm256_fmadd_ps(_mm256_set1_ps(dw * da), p, acc[r][i & 1]);
            corr[r] += m * sa;
        }
    }
    core::array::from_fn(|r| hsum(_mm256_add_ps(acc[r][0], acc[r][1])) + corr[r])
}

macro_rules! tile_fn {
    ($name:ident, $rows:ident $(, $q41:literal)?) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
            let rb = w.len() / nr;
            let wp = w.as_ptr();
            for (c, oc) in out.iter_mut().enumerate().take(nc) {
                let a = acts.row(b0 + c);
                if nc == 1 && acts.stream {
                    // One row after another, so the weights stream sequentially: on a Zen 4 VM
                    // four interleaved Q8_0 row streams read DRAM at 3-7 GB/s, one sequential
                    // stream at 10-14 GB/s (llama.cpp's 14-15); in cache, four rows at a time
                    // are faster (576x576: 16.7 vs 23 us).
                    for (r, o) in oc.iter_mut().enumerate().take(nr) {
                        *o = $rows::<1 $(, $q41)?>(wp.add(r * rb), rb, &a)[0];
                    }
                } else if nr == 4 {
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
tile_fn!(tile_q4_0, rows_q4, 0);
tile_fn!(tile_q4_1, rows_q4, 1);
tile_fn!(tile_q5_0, rows_q4, 2);
tile_fn!(tile_q5_1, rows_q4, 3);

/// A shift count for `_mm256_srl_epi16` (the immediate forms need a constant).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn shift(n: usize) -> __m128i {
    _mm_cvtsi32_si128(n as i32)
}

/// `vpshufb` masks that broadcast i16 lane `j` of each 128-bit half (K-quant scales).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn lane_i16(j: i8) -> __m256i {
    let b = 2 * j;
    _mm256_set1_epi16(((b + 1) as i16) << 8 | b as i16)
}

/// Eight i32 partial sums of `sum_j scale_j * dot(q_j, a_j)` per 32-value sub-block; `sc` holds
/// the sub-block scales as i16 in both 128-bit halves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scaled(q: __m256i, a: __m256i, sc: __m256i, j: i8) -> __m256i {
    let s = _mm256_shuffle_epi8(sc, lane_i16(j));
    _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), s)
}

/// One row of Q4_K (`Q5 = false`) or Q5_K against one Q8_K activation row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_qk_min<const Q5: bool>(w: *const u8, a: &ActRow) -> f32 {
    let (bs, qs) = if Q5 {
        (Q5_K_BLOCK, 48)
    } else {
        (Q4_K_BLOCK, 16)
    };
    let m4 = _mm256_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    for i in 0..a.d.len() {
        let blk = w.add(i * bs);
        _mm_prefetch::<_MM_HINT_T0>(blk.add(4 * bs) as *const i8);
        let ap = a.qs.as_ptr().add(i * QK_K) as *const __m256i;
        let da = *a.d.get_unchecked(i);
        // 6-bit scales and mins, four bytes at a time (see quant.rs for the packing).
        let s0 = (blk.add(4) as *const u32).read_unaligned();
        let s1 = (blk.add(8) as *const u32).read_unaligned();
        let s2 = (blk.add(12) as *const u32).read_unaligned();
        let sc = (s0 & 0x3f3f_3f3f) as u64
            | (((s2 & 0x0f0f_0f0f) | ((s0 >> 2) & 0x3030_3030)) as u64) << 32;
        let mn = (s1 & 0x3f3f_3f3f) as u64
            | ((((s2 >> 4) & 0x0f0f_0f0f) | ((s1 >> 2) & 0x3030_3030)) as u64) << 32;
        let sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
        // minima: sum_j m_j * (bsums[2j] + bsums[2j + 1])
        let m16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mn as i64));
        let mdup = _mm256_set_m128i(_mm_unpackhi_epi16(m16, m16), _mm_unpacklo_epi16(m16, m16));
        let bsums = _mm256_loadu_si256(a.bsums.as_ptr().add(i * 16) as *const __m256i);
        let mins = _mm256_madd_epi16(bsums, mdup);
        let hbits = if Q5 {
            _mm256_loadu_si256(blk.add(16) as *const __m256i)
        } else {
            _mm256_setzero_si256()
        };
        let mut sumi = _mm256_setzero_si256();
        for g in 0..4 {
            let q = _mm256_loadu_si256(blk.add(qs + 32 * g) as *const __m256i);
            let mut lo = _mm256_and_si256(q, m4);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if Q5 {
                let one = _mm256_set1_epi8(1);
                let h0 = _mm256_and_si256(_mm256_srl_epi16(hbits, shift(2 * g)), one);
                let h1 = _mm256_and_si256(_mm256_srl_epi16(hbits, shift(2 * g + 1)), one);
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(h0, 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(h1, 4));
            }
            let a0 = _mm256_loadu_si256(ap.add(2 * g));
            let a1 = _mm256_loadu_si256(ap.add(2 * g + 1));
            sumi = _mm256_add_epi32(sumi, scaled(lo, a0, sc16, 2 * g as i8));
            sumi = _mm256_add_epi32(sumi, scaled(hi, a1, sc16, 2 * g as i8 + 1));
        }
        let d = f16_at(blk) * da;
        let dmin = f16_at(blk.add(2)) * da;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(-dmin), _mm256_cvtepi32_ps(mins), acc);
    }
    hsum(acc)
}

/// One row of Q6_K against one Q8_K activation row. Levels stay unsigned (0..=63); the offset
/// of 32 is `32 * sum_g scale_g * bsum_g`, subtracted once per super-block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_q6_k(w: *const u8, a: &ActRow) -> f32 {
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(0x03);
    let mut acc = _mm256_setzero_ps();
    for i in 0..a.d.len() {
        let blk = w.add(i * Q6_K_BLOCK);
        _mm_prefetch::<_MM_HINT_T0>(blk.add(4 * Q6_K_BLOCK) as *const i8);
        let ap = a.qs.as_ptr().add(i * QK_K) as *const __m256i;
        let sc = _mm_loadu_si128(blk.add(192) as *const __m128i);
        let bsums = _mm256_loadu_si256(a.bsums.as_ptr().add(i * 16) as *const __m256i);
        let offset = _mm256_madd_epi16(bsums, _mm256_cvtepi8_epi16(sc));
        let mut sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offset, 5));
        for h in 0..2 {
            // scales 8h..8h+8 as i16 in both halves; value chunk k takes 2k (low half of the
            // chunk's 32 values) and 2k + 1 (high half)
            let s8 = if h == 0 {
                sc
            } else {
                _mm_unpackhi_epi64(sc, sc)
            };
            let sch = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(s8));
            let ql0 = _mm256_loadu_si256(blk.add(64 * h) as *const __m256i);
            let ql1 = _mm256_loadu_si256(blk.add(64 * h + 32) as *const __m256i);
            let qh = _mm256_loadu_si256(blk.add(128 + 32 * h) as *const __m256i);
            for k in 0..4 {
                let ql = if k & 1 == 0 { ql0 } else { ql1 };
                let lo = if k < 2 {
                    _mm256_and_si256(ql, m4)
                } else {
                    _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4)
                };
                let hi = _mm256_and_si256(_mm256_srl_epi16(qh, shift(2 * k)), m2);
                let q = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
                let av = _mm256_loadu_si256(ap.add(4 * h + k));
                let s = _mm256_shuffle_epi8(sch, lane_pair(k as i8));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q, av), s));
            }
        }
        let d = f16_at(blk.add(208)) * *a.d.get_unchecked(i);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc)
}

/// `vpshufb` mask: i16 lane `2k` broadcast over the low 128 bits, `2k + 1` over the high.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn lane_pair(k: i8) -> __m256i {
    let (b0, b1) = (4 * k, 4 * k + 2);
    let lo = ((b0 + 1) as i16) << 8 | b0 as i16;
    let hi = ((b1 + 1) as i16) << 8 | b1 as i16;
    _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo))
}

macro_rules! tile_k_fn {
    ($name:ident, $row:expr) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name(
            w: &[u8],
            nr: usize,
            acts: &QActs,
            b0: usize,
            nc: usize,
            out: &mut Tile,
        ) {
            let rb = w.len() / nr;
            let wp = w.as_ptr();
            for (c, oc) in out.iter_mut().enumerate().take(nc) {
                let a = acts.row(b0 + c);
                for (r, o) in oc.iter_mut().enumerate().take(nr) {
                    *o = $row(wp.add(r * rb), &a);
                }
            }
        }
    };
}

tile_k_fn!(tile_q4_k, row_qk_min::<false>);
tile_k_fn!(tile_q5_k, row_qk_min::<true>);
tile_k_fn!(tile_q6_k, row_q6_k);

/// Quants of 32 values at `p` with reciprocal scale `id` (round half away from zero, like
/// `act::quantize_with`) stored at `out`; returns the sums of the first and last 16 quants.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quant32(p: *const f32, id: __m256, out: *mut i8) -> (i32, i32) {
    let sign = _mm256_set1_ps(-0.0);
    let half = _mm256_set1_ps(0.5);
    let q: [__m256i; 4] = core::array::from_fn(|k| {
        let t = _mm256_mul_ps(_mm256_loadu_ps(p.add(8 * k)), id);
        _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_or_ps(_mm256_and_ps(t, sign), half)))
    });
    let hsum_i = |s: __m256i| {
        let s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b01_00_11_10));
        let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b10_11_00_01));
        _mm_cvtsi128_si32(s4)
    };
    let sums = (
        hsum_i(_mm256_add_epi32(q[0], q[1])),
        hsum_i(_mm256_add_epi32(q[2], q[3])),
    );
    // packs work per 128-bit lane: restore element order with one dword permute.
    let b = _mm256_packs_epi16(
        _mm256_packs_epi32(q[0], q[1]),
        _mm256_packs_epi32(q[2], q[3]),
    );
    let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(out as *mut __m256i, b);
    sums
}

/// max |v| over `n` groups of 8 floats at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn amax(p: *const f32, n: usize) -> f32 {
    let sign = _mm256_set1_ps(-0.0);
    let mut m = _mm256_andnot_ps(sign, _mm256_loadu_ps(p));
    for k in 1..n {
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(8 * k))));
    }
    let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    _mm_cvtss_f32(m4)
}

/// [`super::act::quantize_block`] for a whole block, same arithmetic (so the same bits):
/// max |v| -> d = amax / 127, q = trunc(v * id + copysign(0.5, v * id)).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_block(v: &[f32; QK], qs: &mut [i8; QK]) -> (f32, f32) {
    let d = amax(v.as_ptr(), 4) / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let (s0, s1) = quant32(v.as_ptr(), id, qs.as_mut_ptr());
    (d, d * (s0 + s1) as f32)
}

/// [`super::act::quantize_super_block`] for a whole super-block, same arithmetic.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_super_block(
    v: &[f32; QK_K],
    qs: &mut [i8; QK_K],
    bsums: &mut [i16; 16],
) -> f32 {
    let d = amax(v.as_ptr(), QK_K / 8) / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    for c in 0..QK_K / QK {
        let (s0, s1) = quant32(v.as_ptr().add(c * QK), id, qs.as_mut_ptr().add(c * QK));
        bsums[2 * c] = s0 as i16;
        bsums[2 * c + 1] = s1 as i16;
    }
    d
}
