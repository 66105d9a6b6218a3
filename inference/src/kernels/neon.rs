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
            use crate::quant::{Q4_0_BLOCK, Q4_1_BLOCK, Q8_0_BLOCK, QK};
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

            /// Weight block i of one row: (elements 0..15, 16..31, d, m); m is only used by Q4_1.
            /// Q: 0 = Q8_0, 1 = Q4_0, 2 = Q4_1.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn load_w<const Q: u8>(row: *const u8, i: usize) -> (int8x16_t, int8x16_t, f32, f32) {
                let bs = [Q8_0_BLOCK, Q4_0_BLOCK, Q4_1_BLOCK][Q as usize];
                let b = row.add(i * bs);
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
                        if Q == 2 {
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
                    if Q == 2 {
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
        }
    };
}

neon_kernels!(plain, "neon", false, false);
neon_kernels!(dotprod, "neon,dotprod", true, false);
neon_kernels!(i8mm, "neon,dotprod,i8mm", true, true);
