//! AVX2 prefill (matrix × matrix) for the 4/5-bit 32-value types: Q4_0, Q4_1, Q5_0, Q5_1.
//!
//! The decode kernels hold one weight row per register and reduce it horizontally at the end;
//! for a batch of activations that wastes the unpacking (redone per activation row) and the
//! per-row scale broadcasts. Here a panel of 8 weight rows is first repacked, per call and per
//! 64-row block, into a scratch buffer where one ymm holds the same 4 consecutive values of all
//! 8 rows, already unpacked to bytes (levels 0..=31). An activation's 4 matching quants are
//! broadcast to every lane (`vpbroadcastd` from memory), so one `vpmaddubsw` makes 8 rows' partial
//! sums at once and the 8 sums of a block come out as one vector of 8 lanes = 8 rows: no
//! horizontal reduction, and the scales apply as vectors (8 rows' `d_w` times the activation's
//! `d_a`). The offset / minimum folds in as with decode: `m * s_a`, `s_a = d_a * sum(q_a)`.
//!
//! The weights themselves stay borrowed from the model file: the repack is a copy of 64 rows
//! (about 1/batch of the work), the results are the same products summed in another order.
//!
//! i16 bounds: a `vpmaddubsw` lane is at most 2 * 31 * 127 = 7874 (Q5) or 2 * 15 * 127 = 3810
//! (Q4), so four (Q5) or eight (Q4) of them add up in i16 without saturating.

use super::act::QActs;
use super::avx2::{f16_at, fifth_bits, nibbles};
use crate::quant::{
    k_scales_mins, Q4_0_BLOCK, Q4_1_BLOCK, Q4_K_BLOCK, Q5_0_BLOCK, Q5_1_BLOCK, Q5_K_BLOCK,
    Q8_0_BLOCK, QK, QK_K,
};
use alloc::vec::Vec;
use core::arch::x86_64::*;

/// Rows per panel (one per i32 lane of a ymm).
const PR: usize = 8;
/// Activation rows per microkernel call (accumulators: NC f32 + NC i16 vectors).
const NC: usize = 4;
/// Bytes of one repacked block of a panel: 8 rows × 32 values, then 8 scales and 8 offsets.
const PANEL_BLOCK: usize = PR * QK + 2 * PR * 4;

/// Block size, offset of the nibbles, of the fifth bits (0 = none), of the stored minimum.
const fn layout(q: u8) -> (usize, usize, usize, bool) {
    match q {
        0 => (Q4_0_BLOCK, 2, 0, false),
        1 => (Q4_1_BLOCK, 4, 0, true),
        2 => (Q5_0_BLOCK, 6, 2, false),
        _ => (Q5_1_BLOCK, 8, 4, true),
    }
}

/// 8x8 transpose of dwords: `out[k]` lane r = `v[r]` dword k.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn transpose8(v: &[__m256i; PR]) -> [__m256i; PR] {
    let t0 = _mm256_unpacklo_epi32(v[0], v[1]);
    let t1 = _mm256_unpackhi_epi32(v[0], v[1]);
    let t2 = _mm256_unpacklo_epi32(v[2], v[3]);
    let t3 = _mm256_unpackhi_epi32(v[2], v[3]);
    let t4 = _mm256_unpacklo_epi32(v[4], v[5]);
    let t5 = _mm256_unpackhi_epi32(v[4], v[5]);
    let t6 = _mm256_unpacklo_epi32(v[6], v[7]);
    let t7 = _mm256_unpackhi_epi32(v[6], v[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256(u0, u4, 0x20),
        _mm256_permute2x128_si256(u1, u5, 0x20),
        _mm256_permute2x128_si256(u2, u6, 0x20),
        _mm256_permute2x128_si256(u3, u7, 0x20),
        _mm256_permute2x128_si256(u0, u4, 0x31),
        _mm256_permute2x128_si256(u1, u5, 0x31),
        _mm256_permute2x128_si256(u2, u6, 0x31),
        _mm256_permute2x128_si256(u3, u7, 0x31),
    ]
}

/// Repacks up to 8 rows (`nr`) of `nb` blocks into `dst` (`nb * PANEL_BLOCK` bytes); missing
/// rows are zero.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn repack<const Q: u8>(w: *const u8, rb: usize, nr: usize, nb: usize, dst: *mut u8) {
    let (bs, qs, qh, has_min) = layout(Q);
    for i in 0..nb {
        let mut v = [_mm256_setzero_si256(); PR];
        let mut d = [0.0f32; PR];
        let mut m = [0.0f32; PR];
        for r in 0..nr {
            let blk = w.add(r * rb + i * bs);
            let mut q = nibbles(blk.add(qs));
            if qh != 0 {
                q = _mm256_or_si256(q, fifth_bits(blk.add(qh)));
            }
            v[r] = q;
            d[r] = f16_at(blk);
            m[r] = if has_min {
                f16_at(blk.add(2))
            } else if qh != 0 {
                -16.0 * d[r]
            } else {
                -8.0 * d[r]
            };
        }
        let out = transpose8(&v);
        let p = dst.add(i * PANEL_BLOCK);
        for (k, o) in out.iter().enumerate() {
            _mm256_storeu_si256(p.add(32 * k) as *mut __m256i, *o);
        }
        _mm256_storeu_ps(p.add(PR * QK) as *mut f32, _mm256_loadu_ps(d.as_ptr()));
        _mm256_storeu_ps(p.add(PR * QK + 32) as *mut f32, _mm256_loadu_ps(m.as_ptr()));
    }
}

/// 8 repacked rows × `NCC` activation rows (`b0..b0 + NCC`): `out[c * stride + r]`, r < nr.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn micro<const Q5: bool, const NCC: usize>(
    panel: *const u8,
    nb: usize,
    acts: &QActs,
    b0: usize,
    nr: usize,
    out: *mut f32,
    stride: usize,
) {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); NCC];
    let qa: [*const i8; NCC] = core::array::from_fn(|c| acts.qs.as_ptr().add((b0 + c) * nb * QK));
    let da: [*const f32; NCC] = core::array::from_fn(|c| acts.d.as_ptr().add((b0 + c) * nb));
    let sa: [*const f32; NCC] = core::array::from_fn(|c| acts.s.as_ptr().add((b0 + c) * nb));
    for i in 0..nb {
        let p = panel.add(i * PANEL_BLOCK);
        let mut lo = [_mm256_setzero_si256(); NCC];
        let mut hi = [_mm256_setzero_si256(); NCC];
        for k in 0..8 {
            let wk = _mm256_loadu_si256(p.add(32 * k) as *const __m256i);
            for c in 0..NCC {
                let a =
                    _mm256_set1_epi32((qa[c].add(i * QK + 4 * k) as *const i32).read_unaligned());
                let prod = _mm256_maddubs_epi16(wk, a);
                if Q5 && k >= 4 {
                    hi[c] = _mm256_add_epi16(hi[c], prod);
                } else {
                    lo[c] = _mm256_add_epi16(lo[c], prod);
                }
            }
        }
        let dw = _mm256_loadu_ps(p.add(PR * QK) as *const f32);
        let mw = _mm256_loadu_ps(p.add(PR * QK + 32) as *const f32);
        for c in 0..NCC {
            let mut s32 = _mm256_madd_epi16(lo[c], ones);
            if Q5 {
                s32 = _mm256_add_epi32(s32, _mm256_madd_epi16(hi[c], ones));
            }
            let scale = _mm256_mul_ps(dw, _mm256_set1_ps(*da[c].add(i)));
            acc[c] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(s32), acc[c]);
            acc[c] = _mm256_fmadd_ps(mw, _mm256_set1_ps(*sa[c].add(i)), acc[c]);
        }
    }
    for (c, a) in acc.iter().enumerate() {
        let dst = out.add(c * stride);
        if nr == PR {
            _mm256_storeu_ps(dst, *a);
        } else {
            let mut tmp = [0.0f32; PR];
            _mm256_storeu_ps(tmp.as_mut_ptr(), *a);
            core::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, nr);
        }
    }
}

/// `nr` rows (`rb` bytes apart) × all `batch` activation rows into `out[b * stride + r]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn panel<const Q: u8>(
    w: &[u8],
    nr: usize,
    acts: &QActs,
    batch: usize,
    out: &mut [f32],
    stride: usize,
    scratch: &mut Vec<u8>,
) {
    let rb = w.len() / nr;
    let nb = acts.nb;
    let need = nr.div_ceil(PR) * nb * PANEL_BLOCK;
    if scratch.len() < need {
        scratch.resize(need, 0);
    }
    assert!(out.len() >= (batch - 1) * stride + nr);
    for p in 0..nr.div_ceil(PR) {
        let r0 = p * PR;
        let pr = PR.min(nr - r0);
        let dst = scratch.as_mut_ptr().add(p * nb * PANEL_BLOCK);
        repack::<Q>(w.as_ptr().add(r0 * rb), rb, pr, nb, dst);
        let mut b = 0;
        let o = out.as_mut_ptr().add(r0);
        while b + NC <= batch {
            if Q >= 2 {
                micro::<true, NC>(dst, nb, acts, b, pr, o.add(b * stride), stride);
            } else {
                micro::<false, NC>(dst, nb, acts, b, pr, o.add(b * stride), stride);
            }
            b += NC;
        }
        while b < batch {
            if Q >= 2 {
                micro::<true, 1>(dst, nb, acts, b, pr, o.add(b * stride), stride);
            } else {
                micro::<false, 1>(dst, nb, acts, b, pr, o.add(b * stride), stride);
            }
            b += 1;
        }
    }
}

macro_rules! panel_fn {
    ($name:ident, $q:literal) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name(
            w: &[u8],
            nr: usize,
            acts: &QActs,
            batch: usize,
            out: &mut [f32],
            stride: usize,
            scratch: &mut Vec<u8>,
        ) {
            panel::<$q>(w, nr, acts, batch, out, stride, scratch)
        }
    };
}

panel_fn!(panel_q4_0, 0);
panel_fn!(panel_q4_1, 1);
panel_fn!(panel_q5_0, 2);
panel_fn!(panel_q5_1, 3);

// ---------------------------------------------------------------------------------------------
// Q4_K / Q5_K: the same 8-row interleave per 32-value sub-block. A sub-block's i16 sums are
// multiplied by its 6-bit scale with `vpmaddwd` against a vector holding each row's scale in
// both i16 halves of its lane, and summed in i32 over the super-block; the minima go through
// the activations' sums of 32 (`bsums` pairs), two sub-blocks per `vpmaddwd`.

/// Repacked super-block of 8 rows: 8 sub-blocks × 8 ymm of levels, 8 scale vectors (i16
/// pairs), 4 min vectors (i16 pairs of sub-blocks 2p, 2p + 1), d and dmin (8 f32 each).
const K_LEVELS: usize = 8 * PR * QK;
const K_SCALES: usize = K_LEVELS;
const K_MINS: usize = K_SCALES + 8 * 32;
const K_D: usize = K_MINS + 4 * 32;
const K_PANEL_BLOCK: usize = K_D + 2 * 32;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn repack_k<const Q5: bool>(w: *const u8, rb: usize, nr: usize, nb: usize, dst: *mut u8) {
    let (bs, qs) = if Q5 {
        (Q5_K_BLOCK, 48)
    } else {
        (Q4_K_BLOCK, 16)
    };
    let m4 = _mm256_set1_epi8(0x0f);
    for i in 0..nb {
        let p = dst.add(i * K_PANEL_BLOCK);
        let mut sc = [[0i16; 2 * PR]; 8];
        let mut mins = [[0i16; 2 * PR]; 4];
        let mut d = [0.0f32; PR];
        let mut dmin = [0.0f32; PR];
        for r in 0..nr {
            let blk = w.add(r * rb + i * bs);
            let (s, m) = k_scales_mins(core::slice::from_raw_parts(blk.add(4), 12));
            for j in 0..8 {
                sc[j][2 * r] = s[j] as i16;
                sc[j][2 * r + 1] = s[j] as i16;
                mins[j / 2][2 * r + (j & 1)] = m[j] as i16;
            }
            d[r] = f16_at(blk);
            dmin[r] = f16_at(blk.add(2));
        }
        for (j, scj) in sc.iter().enumerate() {
            let (g, high) = (j / 2, j & 1 == 1);
            let mut v = [_mm256_setzero_si256(); PR];
            for (r, vr) in v.iter_mut().enumerate().take(nr) {
                let blk = w.add(r * rb + i * bs);
                let q = _mm256_loadu_si256(blk.add(qs + 32 * g) as *const __m256i);
                let mut l = if high {
                    _mm256_and_si256(_mm256_srli_epi16(q, 4), m4)
                } else {
                    _mm256_and_si256(q, m4)
                };
                if Q5 {
                    let h = _mm256_loadu_si256(blk.add(16) as *const __m256i);
                    let bit = _mm256_set1_epi8(1 << j);
                    let set = _mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit);
                    l = _mm256_or_si256(l, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
                }
                *vr = l;
            }
            for (k, o) in transpose8(&v).iter().enumerate() {
                _mm256_storeu_si256(p.add(j * PR * QK + 32 * k) as *mut __m256i, *o);
            }
            _mm256_storeu_si256(
                p.add(K_SCALES + 32 * j) as *mut __m256i,
                _mm256_loadu_si256(scj.as_ptr() as *const __m256i),
            );
        }
        for (q, mq) in mins.iter().enumerate() {
            _mm256_storeu_si256(
                p.add(K_MINS + 32 * q) as *mut __m256i,
                _mm256_loadu_si256(mq.as_ptr() as *const __m256i),
            );
        }
        _mm256_storeu_ps(p.add(K_D) as *mut f32, _mm256_loadu_ps(d.as_ptr()));
        _mm256_storeu_ps(p.add(K_D + 32) as *mut f32, _mm256_loadu_ps(dmin.as_ptr()));
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn micro_k<const Q5: bool, const NCC: usize>(
    panel: *const u8,
    nb: usize,
    acts: &QActs,
    b0: usize,
    nr: usize,
    out: *mut f32,
    stride: usize,
) {
    let mut acc = [_mm256_setzero_ps(); NCC];
    let qa: [*const i8; NCC] = core::array::from_fn(|c| acts.qs.as_ptr().add((b0 + c) * nb * QK_K));
    for i in 0..nb {
        let p = panel.add(i * K_PANEL_BLOCK);
        let mut sumi = [_mm256_setzero_si256(); NCC];
        for j in 0..8 {
            let mut lo = [_mm256_setzero_si256(); NCC];
            let mut hi = [_mm256_setzero_si256(); NCC];
            for k in 0..8 {
                let wk = _mm256_loadu_si256(p.add(j * PR * QK + 32 * k) as *const __m256i);
                for c in 0..NCC {
                    let at = qa[c].add(i * QK_K + 32 * j + 4 * k) as *const i32;
                    let prod = _mm256_maddubs_epi16(wk, _mm256_set1_epi32(at.read_unaligned()));
                    if Q5 && k >= 4 {
                        hi[c] = _mm256_add_epi16(hi[c], prod);
                    } else {
                        lo[c] = _mm256_add_epi16(lo[c], prod);
                    }
                }
            }
            let scv = _mm256_loadu_si256(p.add(K_SCALES + 32 * j) as *const __m256i);
            for c in 0..NCC {
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(lo[c], scv));
                if Q5 {
                    sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(hi[c], scv));
                }
            }
        }
        let d = _mm256_loadu_ps(p.add(K_D) as *const f32);
        let dmin = _mm256_loadu_ps(p.add(K_D + 32) as *const f32);
        for c in 0..NCC {
            let row = b0 + c;
            let bs = acts.bsums.as_ptr().add((row * nb + i) * 16);
            let mut summ = _mm256_setzero_si256();
            for q in 0..4 {
                let b32 = |j: usize| (*bs.add(2 * j) as i32 + *bs.add(2 * j + 1) as i32) & 0xffff;
                let pair = b32(2 * q) | b32(2 * q + 1) << 16;
                let mv = _mm256_loadu_si256(p.add(K_MINS + 32 * q) as *const __m256i);
                summ = _mm256_add_epi32(summ, _mm256_madd_epi16(mv, _mm256_set1_epi32(pair)));
            }
            let da = _mm256_set1_ps(*acts.d.as_ptr().add(row * nb + i));
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d, da), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
            acc[c] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, da), _mm256_cvtepi32_ps(summ), acc[c]);
        }
    }
    for (c, a) in acc.iter().enumerate() {
        let dst = out.add(c * stride);
        if nr == PR {
            _mm256_storeu_ps(dst, *a);
        } else {
            let mut tmp = [0.0f32; PR];
            _mm256_storeu_ps(tmp.as_mut_ptr(), *a);
            core::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, nr);
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn panel_k<const Q5: bool>(
    w: &[u8],
    nr: usize,
    acts: &QActs,
    batch: usize,
    out: &mut [f32],
    stride: usize,
    scratch: &mut Vec<u8>,
) {
    let rb = w.len() / nr;
    let nb = acts.nb;
    let need = nr.div_ceil(PR) * nb * K_PANEL_BLOCK;
    if scratch.len() < need {
        scratch.resize(need, 0);
    }
    assert!(out.len() >= (batch - 1) * stride + nr);
    for p in 0..nr.div_ceil(PR) {
        let r0 = p * PR;
        let pr = PR.min(nr - r0);
        let dst = scratch.as_mut_ptr().add(p * nb * K_PANEL_BLOCK);
        repack_k::<Q5>(w.as_ptr().add(r0 * rb), rb, pr, nb, dst);
        let o = out.as_mut_ptr().add(r0);
        let mut b = 0;
        while b + NC <= batch {
            micro_k::<Q5, NC>(dst, nb, acts, b, pr, o.add(b * stride), stride);
            b += NC;
        }
        while b < batch {
            micro_k::<Q5, 1>(dst, nb, acts, b, pr, o.add(b * stride), stride);
            b += 1;
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn panel_q4_k(
    w: &[u8],
    nr: usize,
    acts: &QActs,
    batch: usize,
    out: &mut [f32],
    stride: usize,
    scratch: &mut Vec<u8>,
) {
    panel_k::<false>(w, nr, acts, batch, out, stride, scratch)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn panel_q5_k(
    w: &[u8],
    nr: usize,
    acts: &QActs,
    batch: usize,
    out: &mut [f32],
    stride: usize,
    scratch: &mut Vec<u8>,
) {
    panel_k::<true>(w, nr, acts, batch, out, stride, scratch)
}

// ---------------------------------------------------------------------------------------------
// Q8_0: the same 8-row interleave of the raw i8 weights. `vpmaddubsw` needs an unsigned
// operand, so |w| (`vpsignb w, w`, once per 4-value group for all activation rows) meets the
// activation with w's sign (`vpsignb a, w`); a lane is at most 2 * 128 * 127 = 32512, so each
// product goes to i32 (`vpmaddwd`) before it is summed.

const Q8_PANEL_BLOCK: usize = PR * QK + PR * 4;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn repack_q8_0(w: *const u8, rb: usize, nr: usize, nb: usize, dst: *mut u8) {
    for i in 0..nb {
        let mut v = [_mm256_setzero_si256(); PR];
        let mut d = [0.0f32; PR];
        for r in 0..nr {
            let blk = w.add(r * rb + i * Q8_0_BLOCK);
            v[r] = _mm256_loadu_si256(blk.add(2) as *const __m256i);
            d[r] = f16_at(blk);
        }
        let p = dst.add(i * Q8_PANEL_BLOCK);
        for (k, o) in transpose8(&v).iter().enumerate() {
            _mm256_storeu_si256(p.add(32 * k) as *mut __m256i, *o);
        }
        _mm256_storeu_ps(p.add(PR * QK) as *mut f32, _mm256_loadu_ps(d.as_ptr()));
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn micro_q8_0<const NCC: usize>(
    panel: *const u8,
    nb: usize,
    acts: &QActs,
    b0: usize,
    nr: usize,
    out: *mut f32,
    stride: usize,
) {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); NCC];
    let qa: [*const i8; NCC] = core::array::from_fn(|c| acts.qs.as_ptr().add((b0 + c) * nb * QK));
    let da: [*const f32; NCC] = core::array::from_fn(|c| acts.d.as_ptr().add((b0 + c) * nb));
    for i in 0..nb {
        let p = panel.add(i * Q8_PANEL_BLOCK);
        let mut s32 = [_mm256_setzero_si256(); NCC];
        for k in 0..8 {
            let wk = _mm256_loadu_si256(p.add(32 * k) as *const __m256i);
            let uk = _mm256_sign_epi8(wk, wk);
            for c in 0..NCC {
                let a =
                    _mm256_set1_epi32((qa[c].add(i * QK + 4 * k) as *const i32).read_unaligned());
                let prod = _mm256_maddubs_epi16(uk, _mm256_sign_epi8(a, wk));
                s32[c] = _mm256_add_epi32(s32[c], _mm256_madd_epi16(prod, ones));
            }
        }
        let dw = _mm256_loadu_ps(p.add(PR * QK) as *const f32);
        for c in 0..NCC {
            let scale = _mm256_mul_ps(dw, _mm256_set1_ps(*da[c].add(i)));
            acc[c] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(s32[c]), acc[c]);
        }
    }
    for (c, a) in acc.iter().enumerate() {
        let dst = out.add(c * stride);
        if nr == PR {
            _mm256_storeu_ps(dst, *a);
        } else {
            let mut tmp = [0.0f32; PR];
            _mm256_storeu_ps(tmp.as_mut_ptr(), *a);
            core::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, nr);
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn panel_q8_0(
    w: &[u8],
    nr: usize,
    acts: &QActs,
    batch: usize,
    out: &mut [f32],
    stride: usize,
    scratch: &mut Vec<u8>,
) {
    let rb = w.len() / nr;
    let nb = acts.nb;
    let need = nr.div_ceil(PR) * nb * Q8_PANEL_BLOCK;
    if scratch.len() < need {
        scratch.resize(need, 0);
    }
    assert!(out.len() >= (batch - 1) * stride + nr);
    for p in 0..nr.div_ceil(PR) {
        let r0 = p * PR;
        let pr = PR.min(nr - r0);
        let dst = scratch.as_mut_ptr().add(p * nb * Q8_PANEL_BLOCK);
        repack_q8_0(w.as_ptr().add(r0 * rb), rb, pr, nb, dst);
        let o = out.as_mut_ptr().add(r0);
        let mut b = 0;
        while b + NC <= batch {
            micro_q8_0::<NC>(dst, nb, acts, b, pr, o.add(b * stride), stride);
            b += NC;
        }
        while b < batch {
            micro_q8_0::<1>(dst, nb, acts, b, pr, o.add(b * stride), stride);
            b += 1;
        }
    }
}
