//! aarch64 NEON kernels: plain NEON (`smull` + `sadalp`), +dotprod (`sdot`) and +i8mm (`smmla`).
//!
//! `sdot` and `smmla` intrinsics are unstable in Rust 1.95, so they are one-instruction `asm!`
//! blocks. A 32-value block is two q registers. Q4_0 nibbles are shifted to signed (q - 8) so
//! they feed the same i8 × i8 products as Q8_0; Q4_1 nibbles (0..15) are used as they are and
//! the minimum is folded in through `s = d_a * sum(q_a)`.
//!
//! i8mm: `smmla` multiplies a 2×8 by an 8×2 i8 matrix into a 2×2 i32 tile, so 2 weight rows ×
//! 2 activation rows cost 4 instructions per block — the prefill path. Decode (one activation
//! row) walks 4 weight rows together with `sdot`.

macro_rules! neon_kernels {
    ($modname:ident, $feat:literal, $dot:literal, $mmla:literal) => {
        pub(crate) mod $modname {
            use super::super::act::{ActRow, QActs};
            use super::super::Tile;
            use crate::quant::{
                Q4_0_BLOCK, Q4_1_BLOCK, Q4_K_BLOCK, Q5_0_BLOCK, Q5_1_BLOCK, Q5_K_BLOCK, Q6_K_BLOCK,
                Q8_0_BLOCK, QK, QK_K,
            };
            use core::arch::aarch64::*;
            use core::arch::asm;

            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn f16_at(p: *const u8) -> f32 {
                let h = (p as *const u16).read_unaligned();
                let f: f32;
                asm!("fmov {v:s}, {b:w}", "fcvt {v:s}, {v:h}", b = in(reg) h as u32, v = out(vreg) f,
                     options(pure, nomem, nostack, preserves_flags));
                f
            }

            /// sum over 32 i8 × i8 products, as four i32 partial sums.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn dot32(w0: int8x16_t, w1: int8x16_t, a0: int8x16_t, a1: int8x16_t) -> int32x4_t {
                if $dot {
                    let mut acc = vdupq_n_s32(0);
                    asm!("sdot {acc:v}.4s, {w0:v}.16b, {a0:v}.16b", "sdot {acc:v}.4s, {w1:v}.16b, {a1:v}.16b",
                         acc = inout(vreg) acc, w0 = in(vreg) w0, a0 = in(vreg) a0, w1 = in(vreg) w1, a1 = in(vreg) a1,
                         options(pure, nomem, nostack, preserves_flags));
                    acc
                } else {
                    // |i8 × i8| <= 16384 fits the i16 products; pairs are widened into i32.
                    let p0 = vmull_s8(vget_low_s8(w0), vget_low_s8(a0));
                    let p1 = vmull_high_s8(w0, a0);
                    let p2 = vmull_s8(vget_low_s8(w1), vget_low_s8(a1));
                    let p3 = vmull_high_s8(w1, a1);
                    let s = vpaddlq_s16(p0);
                    let s = vpadalq_s16(s, p1);
                    let s = vpadalq_s16(s, p2);
                    vpadalq_s16(s, p3)
                }
            }

            /// 16 + 16 bytes, 0x10 where bit j of the little-endian u32 at `p` is set (Q5).
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn fifth_bits(p: *const u8) -> (uint8x16_t, uint8x16_t) {
                let v = vreinterpretq_u8_u32(vdupq_n_u32((p as *const u32).read_unaligned()));
                let lo_idx = vcombine_u8(vdup_n_u8(0), vdup_n_u8(1));
                let hi_idx = vcombine_u8(vdup_n_u8(2), vdup_n_u8(3));
                let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
                let ten = vdupq_n_u8(0x10);
                let lo = vandq_u8(vtstq_u8(vqtbl1q_u8(v, lo_idx), bit), ten);
                let hi = vandq_u8(vtstq_u8(vqtbl1q_u8(v, hi_idx), bit), ten);
                (lo, hi)
            }

            /// Weight block i of one row: (elements 0..15, 16..31, d, m); m is the stored
            /// minimum of Q4_1 / Q5_1 (their levels stay unsigned; the others are signed).
            /// Q: 0 = Q8_0, 1 = Q4_0, 2 = Q4_1, 3 = Q5_0, 4 = Q5_1.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn load_w<const Q: u8>(row: *const u8, i: usize) -> (int8x16_t, int8x16_t, f32, f32) {
                let bs = [Q8_0_BLOCK, Q4_0_BLOCK, Q4_1_BLOCK, Q5_0_BLOCK, Q5_1_BLOCK][Q as usize];
                let b = row.add(i * bs);
                if Q >= 3 {
                    let (qh, qs) = if Q == 3 { (2, 6) } else { (4, 8) };
                    let x = vld1q_u8(b.add(qs));
                    let (h0, h1) = fifth_bits(b.add(qh));
                    let lo = vorrq_u8(vandq_u8(x, vdupq_n_u8(0x0f)), h0);
                    let hi = vorrq_u8(vshrq_n_u8(x, 4), h1);
                    let (lo, hi) = (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi));
                    if Q == 3 {
                        let sixteen = vdupq_n_s8(16);
                        return (vsubq_s8(lo, sixteen), vsubq_s8(hi, sixteen), f16_at(b), 0.0);
                    }
                    return (lo, hi, f16_at(b), f16_at(b.add(2)));
                }
                match Q {
                    0 => (vld1q_s8(b.add(2) as *const i8), vld1q_s8(b.add(18) as *const i8), f16_at(b), 0.0),
                    1 => {
                        let x = vld1q_u8(b.add(2));
                        let lo = vreinterpretq_s8_u8(vandq_u8(x, vdupq_n_u8(0x0f)));
                        let hi = vreinterpretq_s8_u8(vshrq_n_u8(x, 4));
                        let eight = vdupq_n_s8(8);
                        (vsubq_s8(lo, eight), vsubq_s8(hi, eight), f16_at(b), 0.0)
                    }
                    _ => {
                        let x = vld1q_u8(b.add(4));
                        let lo = vreinterpretq_s8_u8(vandq_u8(x, vdupq_n_u8(0x0f)));
                        let hi = vreinterpretq_s8_u8(vshrq_n_u8(x, 4));
                        (lo, hi, f16_at(b), f16_at(b.add(2)))
                    }
                }
            }

            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn load_a(a: &ActRow, i: usize) -> (int8x16_t, int8x16_t) {
                let p = a.qs.as_ptr().add(i * QK);
                (vld1q_s8(p), vld1q_s8(p.add(16)))
            }

            /// NR weight rows × one activation row.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn rows<const Q: u8, const NR: usize>(w: *const u8, rb: usize, a: &ActRow) -> [f32; NR] {
                let mut acc = [vdupq_n_f32(0.0); NR];
                let mut corr = [0.0f32; NR];
                for i in 0..a.d.len() {
                    let (a0, a1) = load_a(a, i);
                    let da = *a.d.get_unchecked(i);
                    for r in 0..NR {
                        let (w0, w1, dw, m) = load_w::<Q>(w.add(r * rb), i);
                        let p = vcvtq_f32_s32(dot32(w0, w1, a0, a1));
                        acc[r] = vfmaq_n_f32(acc[r], p, dw * da);
                        if Q == 2 || Q == 4 {
                            corr[r] += m * *a.s.get_unchecked(i);
                        }
                    }
                }
                core::array::from_fn(|r| vaddvq_f32(acc[r]) + corr[r])
            }

            /// 2 weight rows × 2 activation rows with `smmla`: returns [r0c0, r0c1, r1c0, r1c1].
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn mmla2x2<const Q: u8>(w: *const u8, rb: usize, a: [&ActRow; 2]) -> [f32; 4] {
                let mut acc = vdupq_n_f32(0.0);
                for i in 0..a[0].d.len() {
                    let (x0, x1, dx, mx) = load_w::<Q>(w, i);
                    let (y0, y1, dy, my) = load_w::<Q>(w.add(rb), i);
                    let (p0, p1) = load_a(a[0], i);
                    let (q0, q1) = load_a(a[1], i);
                    // Row pairs: lane 0 = first 8 bytes of row 0, lane 1 = same 8 bytes of row 1.
                    let z1 = |u: int8x16_t, v: int8x16_t| vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(u), vreinterpretq_s64_s8(v)));
                    let z2 = |u: int8x16_t, v: int8x16_t| vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(u), vreinterpretq_s64_s8(v)));
                    let mut isum = vdupq_n_s32(0);
                    if $mmla {
                        asm!(
                            "smmla {acc:v}.4s, {n0:v}.16b, {m0:v}.16b",
                            "smmla {acc:v}.4s, {n1:v}.16b, {m1:v}.16b",
                            "smmla {acc:v}.4s, {n2:v}.16b, {m2:v}.16b",
                            "smmla {acc:v}.4s, {n3:v}.16b, {m3:v}.16b",
                            acc = inout(vreg) isum,
                            n0 = in(vreg) z1(x0, y0), m0 = in(vreg) z1(p0, q0),
                            n1 = in(vreg) z2(x0, y0), m1 = in(vreg) z2(p0, q0),
                            n2 = in(vreg) z1(x1, y1), m2 = in(vreg) z1(p1, q1),
                            n3 = in(vreg) z2(x1, y1), m3 = in(vreg) z2(p1, q1),
                            options(pure, nomem, nostack, preserves_flags)
                        );
                    }
                    let da = [*a[0].d.get_unchecked(i), *a[1].d.get_unchecked(i)];
                    let scale = [dx * da[0], dx * da[1], dy * da[0], dy * da[1]];
                    acc = vfmaq_f32(acc, vcvtq_f32_s32(isum), vld1q_f32(scale.as_ptr()));
                    if Q == 2 || Q == 4 {
                        let sa = [*a[0].s.get_unchecked(i), *a[1].s.get_unchecked(i)];
                        let c = [mx * sa[0], mx * sa[1], my * sa[0], my * sa[1]];
                        acc = vaddq_f32(acc, vld1q_f32(c.as_ptr()));
                    }
                }
                let mut r = [0.0f32; 4];
                vst1q_f32(r.as_mut_ptr(), acc);
                r
            }

            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn tile_q<const Q: u8>(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
                let rb = w.len() / nr;
                let wp = w.as_ptr();
                let mut c = 0;
                if $mmla {
                    while c + 2 <= nc {
                        let a0 = acts.row(b0 + c);
                        let a1 = acts.row(b0 + c + 1);
                        let mut r = 0;
                        while r + 2 <= nr {
                            let v = mmla2x2::<Q>(wp.add(r * rb), rb, [&a0, &a1]);
                            out[c][r] = v[0];
                            out[c + 1][r] = v[1];
                            out[c][r + 1] = v[2];
                            out[c + 1][r + 1] = v[3];
                            r += 2;
                        }
                        if r < nr {
                            out[c][r] = rows::<Q, 1>(wp.add(r * rb), rb, &a0)[0];
                            out[c + 1][r] = rows::<Q, 1>(wp.add(r * rb), rb, &a1)[0];
                        }
                        c += 2;
                    }
                }
                while c < nc {
                    let a = acts.row(b0 + c);
                    if nr == 4 {
                        out[c] = rows::<Q, 4>(wp, rb, &a);
                    } else {
                        for r in 0..nr {
                            out[c][r] = rows::<Q, 1>(wp.add(r * rb), rb, &a)[0];
                        }
                    }
                    c += 1;
                }
            }

            /// `act::quantize_block` for a whole block, same arithmetic (so the same bits).
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn quantize_block(v: &[f32; QK], qs: &mut [i8; QK]) -> (f32, f32) {
                let p = v.as_ptr();
                let x: [float32x4_t; 8] = core::array::from_fn(|k| vld1q_f32(p.add(4 * k)));
                let mut m = vabsq_f32(x[0]);
                for xk in &x[1..] {
                    m = vmaxq_f32(m, vabsq_f32(*xk));
                }
                let d = vmaxvq_f32(m) / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let sign = vdupq_n_u32(0x8000_0000);
                let half = vreinterpretq_u32_f32(vdupq_n_f32(0.5));
                let q: [int32x4_t; 8] = core::array::from_fn(|k| {
                    let t = vmulq_n_f32(x[k], id);
                    let h = vreinterpretq_f32_u32(vorrq_u32(vandq_u32(vreinterpretq_u32_f32(t), sign), half));
                    vcvtq_s32_f32(vaddq_f32(t, h)) // truncates toward zero, like `as i32`
                });
                let mut sum = vdupq_n_s32(0);
                for k in 0..4 {
                    sum = vaddq_s32(sum, vaddq_s32(q[2 * k], q[2 * k + 1]));
                    let h = vcombine_s16(vqmovn_s32(q[2 * k]), vqmovn_s32(q[2 * k + 1]));
                    vst1_s8(qs.as_mut_ptr().add(8 * k), vqmovn_s16(h));
                }
                (d, d * vaddvq_s32(sum) as f32)
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn tile_q8_0(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
                tile_q::<0>(w, nr, acts, b0, nc, out)
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn tile_q4_0(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
                tile_q::<1>(w, nr, acts, b0, nc, out)
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn tile_q4_1(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
                tile_q::<2>(w, nr, acts, b0, nc, out)
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn tile_q5_0(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
                tile_q::<3>(w, nr, acts, b0, nc, out)
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn tile_q5_1(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
                tile_q::<4>(w, nr, acts, b0, nc, out)
            }

            /// sum over 16 i8 × i8 products, as four i32 partial sums.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn dot16(w: int8x16_t, a: int8x16_t) -> int32x4_t {
                if $dot {
                    let mut acc = vdupq_n_s32(0);
                    asm!("sdot {acc:v}.4s, {w:v}.16b, {a:v}.16b",
                         acc = inout(vreg) acc, w = in(vreg) w, a = in(vreg) a,
                         options(pure, nomem, nostack, preserves_flags));
                    acc
                } else {
                    let s = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(a)));
                    vpadalq_s16(s, vmull_high_s8(w, a))
                }
            }

            /// One row of Q4_K (`Q5 = false`) or Q5_K against one Q8_K activation row: per
            /// sub-block an integer dot times its 6-bit scale, minima through the block sums.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn row_qk_min<const Q5: bool>(w: *const u8, a: &ActRow) -> f32 {
                let (bs, qs) = if Q5 { (Q5_K_BLOCK, 48) } else { (Q4_K_BLOCK, 16) };
                let mut acc = 0.0f32;
                for i in 0..a.d.len() {
                    let blk = w.add(i * bs);
                    let ap = a.qs.as_ptr().add(i * QK_K);
                    let (sc, m) = crate::quant::k_scales_mins(core::slice::from_raw_parts(blk.add(4), 12));
                    let bsums = a.bsums.as_ptr().add(i * 16);
                    let mut summ = 0i32;
                    for j in 0..8 {
                        summ += m[j] as i32 * (*bsums.add(2 * j) as i32 + *bsums.add(2 * j + 1) as i32);
                    }
                    let mut sumi = vdupq_n_s32(0);
                    for g in 0..4 {
                        let q0 = vld1q_u8(blk.add(qs + 32 * g));
                        let q1 = vld1q_u8(blk.add(qs + 32 * g + 16));
                        let m4 = vdupq_n_u8(0x0f);
                        let mut l = [vandq_u8(q0, m4), vandq_u8(q1, m4), vshrq_n_u8(q0, 4), vshrq_n_u8(q1, 4)];
                        if Q5 {
                            let h0 = vld1q_u8(blk.add(16));
                            let h1 = vld1q_u8(blk.add(32));
                            let one = vdupq_n_u8(1);
                            for (t, (lv, h)) in l.iter_mut().zip([h0, h1, h0, h1]).enumerate() {
                                // bit 2g (low nibbles) or 2g + 1 (high nibbles) of qh
                                let sh = vdupq_n_s8(-((2 * g + t / 2) as i8));
                                let bit = vandq_u8(vshlq_u8(h, sh), one);
                                *lv = vorrq_u8(*lv, vshlq_n_u8(bit, 4));
                            }
                        }
                        let a0 = vld1q_s8(ap.add(64 * g));
                        let a1 = vld1q_s8(ap.add(64 * g + 16));
                        let a2 = vld1q_s8(ap.add(64 * g + 32));
                        let a3 = vld1q_s8(ap.add(64 * g + 48));
                        let s = |v: uint8x16_t| vreinterpretq_s8_u8(v);
                        let lo = dot32(s(l[0]), s(l[1]), a0, a1);
                        let hi = dot32(s(l[2]), s(l[3]), a2, a3);
                        sumi = vmlaq_n_s32(sumi, lo, sc[2 * g] as i32);
                        sumi = vmlaq_n_s32(sumi, hi, sc[2 * g + 1] as i32);
                    }
                    let da = *a.d.get_unchecked(i);
                    acc += f16_at(blk) * da * vaddvq_s32(sumi) as f32 - f16_at(blk.add(2)) * da * summ as f32;
                }
                acc
            }

            /// One row of Q6_K against one Q8_K activation row (levels made signed, -32..=31).
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn row_q6_k(w: *const u8, a: &ActRow) -> f32 {
                let mut acc = 0.0f32;
                for i in 0..a.d.len() {
                    let blk = w.add(i * Q6_K_BLOCK);
                    let ap = a.qs.as_ptr().add(i * QK_K);
                    let mut sumi = vdupq_n_s32(0);
                    for h in 0..2 {
                        for k in 0..4 {
                            for half in 0..2 {
                                let l = 16 * half;
                                let ql = vld1q_u8(blk.add(64 * h + 32 * (k & 1) + l));
                                let lo = if k < 2 { vandq_u8(ql, vdupq_n_u8(0x0f)) } else { vshrq_n_u8(ql, 4) };
                                let qh = vld1q_u8(blk.add(128 + 32 * h + l));
                                let hi = vandq_u8(vshlq_u8(qh, vdupq_n_s8(-(2 * k as i8))), vdupq_n_u8(3));
                                let q = vorrq_u8(lo, vshlq_n_u8(hi, 4));
                                let q = vsubq_s8(vreinterpretq_s8_u8(q), vdupq_n_s8(32));
                                let av = vld1q_s8(ap.add(128 * h + 32 * k + l));
                                let sc = *blk.add(192 + 8 * h + 2 * k + half) as i8 as i32;
                                sumi = vmlaq_n_s32(sumi, dot16(q, av), sc);
                            }
                        }
                    }
                    acc += f16_at(blk.add(208)) * *a.d.get_unchecked(i) * vaddvq_s32(sumi) as f32;
                }
                acc
            }

            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn tile_k<const T: u8>(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
                let rb = w.len() / nr;
                let wp = w.as_ptr();
                for c in 0..nc {
                    let a = acts.row(b0 + c);
                    for r in 0..nr {
                        let row = wp.add(r * rb);
                        out[c][r] = match T {
                            0 => row_qk_min::<false>(row, &a),
                            1 => row_qk_min::<true>(row, &a),
                            _ => row_q6_k(row, &a),
                        };
                    }
                }
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn tile_q4_k(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
                tile_k::<0>(w, nr, acts, b0, nc, out)
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn tile_q5_k(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
                tile_k::<1>(w, nr, acts, b0, nc, out)
            }

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn tile_q6_k(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
                tile_k::<2>(w, nr, acts, b0, nc, out)
            }
        }
    };
}

neon_kernels!(plain, "neon", false, false);
neon_kernels!(dotprod, "neon,dotprod", true, false);
neon_kernels!(i8mm, "neon,dotprod,i8mm", true, true);
