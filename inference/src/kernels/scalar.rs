//! Portable scalar kernels: the reference every SIMD path is tested against.

use super::act::{ActRow, QActs};
use super::{Tile, TILE};
use crate::quant::{
    decode_levels, k_scales_mins, read_f16, Q4_0_BLOCK, Q4_1_BLOCK, Q4_K_BLOCK, Q5_0_BLOCK,
    Q5_1_BLOCK, Q5_K_BLOCK, Q6_K_BLOCK, Q8_0_BLOCK, QK, QK_K,
};

/// Sequential-order f32 dot product (`val += w[j] * x[j]`, j ascending): bit-identical to
/// llama2.c's `matmul`, which the stories260K byte-for-byte test relies on.
#[inline]
fn dot_f32_row(w: &[u8], x: &[f32]) -> f32 {
    let mut val = 0.0f32;
    for (wb, &xv) in w.chunks_exact(4).zip(x) {
        val += f32::from_le_bytes([wb[0], wb[1], wb[2], wb[3]]) * xv;
    }
    val
}

/// F32 tile: `nr` weight rows × `nc` activation rows starting at `b0`.
///
/// Four rows are summed side by side: each sum still runs in ascending column order (so the
/// result is bit-identical), but four independent add chains keep the FPU busy instead of
/// waiting on one chain's latency.
pub(crate) fn tile_f32(
    w: &[u8],
    nr: usize,
    cols: usize,
    x: &[f32],
    b0: usize,
    nc: usize,
    out: &mut Tile,
) {
    let rb = 4 * cols;
    for (c, oc) in out.iter_mut().enumerate().take(nc) {
        let xr = &x[(b0 + c) * cols..(b0 + c + 1) * cols];
        if nr == 4 {
            let (r0, rest) = w.split_at(rb);
            let (r1, rest) = rest.split_at(rb);
            let (r2, r3) = rest.split_at(rb);
            let mut v = [0.0f32; 4];
            for (j, &xv) in xr.iter().enumerate() {
                let at = |r: &[u8]| {
                    f32::from_le_bytes([r[4 * j], r[4 * j + 1], r[4 * j + 2], r[4 * j + 3]])
                };
                v[0] += at(r0) * xv;
                v[1] += at(r1) * xv;
                v[2] += at(r2) * xv;
                v[3] += at(r3) * xv;
            }
            *oc = v;
        } else {
            for (r, o) in oc.iter_mut().enumerate().take(nr) {
                *o = dot_f32_row(&w[r * rb..(r + 1) * rb], xr);
            }
        }
    }
}

pub(crate) fn dot_q8_0(w: &[u8], a: ActRow) -> f32 {
    let mut acc = 0.0f32;
    for (i, blk) in w.chunks_exact(Q8_0_BLOCK).enumerate() {
        let qa = &a.qs[i * QK..(i + 1) * QK];
        let mut sum = 0i32;
        for (&qw, &qa) in blk[2..].iter().zip(qa) {
            sum += (qw as i8) as i32 * qa as i32;
        }
        acc += sum as f32 * (read_f16(blk, 0) * a.d[i]);
    }
    acc
}

pub(crate) fn dot_q4_0(w: &[u8], a: ActRow) -> f32 {
    let mut acc = 0.0f32;
    for (i, blk) in w.chunks_exact(Q4_0_BLOCK).enumerate() {
        let qa = &a.qs[i * QK..(i + 1) * QK];
        let mut sum = 0i32;
        for j in 0..QK / 2 {
            let byte = blk[2 + j];
            sum += ((byte & 0x0f) as i32 - 8) * qa[j] as i32;
            sum += ((byte >> 4) as i32 - 8) * qa[j + QK / 2] as i32;
        }
        acc += sum as f32 * (read_f16(blk, 0) * a.d[i]);
    }
    acc
}

pub(crate) fn dot_q4_1(w: &[u8], a: ActRow) -> f32 {
    let mut acc = 0.0f32;
    for (i, blk) in w.chunks_exact(Q4_1_BLOCK).enumerate() {
        let qa = &a.qs[i * QK..(i + 1) * QK];
        let mut sum = 0i32;
        for j in 0..QK / 2 {
            let byte = blk[4 + j];
            sum += (byte & 0x0f) as i32 * qa[j] as i32;
            sum += (byte >> 4) as i32 * qa[j + QK / 2] as i32;
        }
        // sum_j (q_j d + m) a_j da = d da sum(q a) + m (da sum(a))
        acc += sum as f32 * (read_f16(blk, 0) * a.d[i]) + read_f16(blk, 2) * a.s[i];
    }
    acc
}

/// Q5_0 (`Q51 = false`, value `(q - 16) d`) or Q5_1 (`q d + m`) against Q8 blocks.
pub(crate) fn dot_q5<const Q51: bool>(w: &[u8], a: ActRow) -> f32 {
    let (bs, qh, qs) = if Q51 {
        (Q5_1_BLOCK, 4, 8)
    } else {
        (Q5_0_BLOCK, 2, 6)
    };
    let mut acc = 0.0f32;
    for (i, blk) in w.chunks_exact(bs).enumerate() {
        let qa = &a.qs[i * QK..(i + 1) * QK];
        let off = if Q51 { 0 } else { 16 };
        let l = decode_levels(blk, qs, Some(qh));
        let sum: i32 = l
            .iter()
            .zip(qa)
            .map(|(&q, &x)| (q as i32 - off) * x as i32)
            .sum();
        acc += sum as f32 * (read_f16(blk, 0) * a.d[i]);
        if Q51 {
            acc += read_f16(blk, 2) * a.s[i];
        }
    }
    acc
}

/// Q4_K (`Q5 = false`) or Q5_K against Q8_K super-blocks, ggml's arithmetic: integer dot per
/// sub-block times its 6-bit scale, summed in i32; minima through the activation block sums.
pub(crate) fn dot_qk_min<const Q5: bool>(w: &[u8], a: ActRow) -> f32 {
    let (bs, qs) = if Q5 {
        (Q5_K_BLOCK, 48)
    } else {
        (Q4_K_BLOCK, 16)
    };
    let mut acc = 0.0f32;
    for (i, blk) in w.chunks_exact(bs).enumerate() {
        let qa = &a.qs[i * QK_K..(i + 1) * QK_K];
        let bsums = &a.bsums[i * 16..(i + 1) * 16];
        let (sc, m) = k_scales_mins(&blk[4..16]);
        let (mut sumi, mut summ) = (0i32, 0i32);
        for j in 0..8 {
            let (g, shift) = (j / 2, 4 * (j & 1));
            let mut isum = 0i32;
            for l in 0..32 {
                let mut q = (blk[qs + 32 * g + l] >> shift) & 15;
                if Q5 {
                    q |= ((blk[16 + l] >> j) & 1) << 4;
                }
                isum += q as i32 * qa[32 * j + l] as i32;
            }
            sumi += sc[j] as i32 * isum;
            summ += m[j] as i32 * (bsums[2 * j] as i32 + bsums[2 * j + 1] as i32);
        }
        let da = a.d[i];
        acc += read_f16(blk, 0) * da * sumi as f32 - read_f16(blk, 2) * da * summ as f32;
    }
    acc
}

/// Q6_K against Q8_K super-blocks: per 16 values an integer dot times the i8 scale.
pub(crate) fn dot_q6_k(w: &[u8], a: ActRow) -> f32 {
    let mut acc = 0.0f32;
    for (i, blk) in w.chunks_exact(Q6_K_BLOCK).enumerate() {
        let qa = &a.qs[i * QK_K..(i + 1) * QK_K];
        let mut sumi = 0i32;
        for h in 0..2 {
            for k in 0..4 {
                for half in 0..2 {
                    let mut isum = 0i32;
                    for l in 16 * half..16 * half + 16 {
                        let lo = (blk[64 * h + 32 * (k & 1) + l] >> (4 * (k / 2))) & 15;
                        let hi = (blk[128 + 32 * h + l] >> (2 * k)) & 3;
                        let q = (lo | hi << 4) as i32 - 32;
                        isum += q * qa[128 * h + 32 * k + l] as i32;
                    }
                    sumi += blk[192 + 8 * h + 2 * k + half] as i8 as i32 * isum;
                }
            }
        }
        acc += read_f16(blk, 208) * a.d[i] * sumi as f32;
    }
    acc
}

/// Generic tile over a 1×1 dot product.
#[inline(always)]
pub(crate) fn tile_with(
    dot: impl Fn(&[u8], ActRow) -> f32,
    w: &[u8],
    nr: usize,
    acts: &QActs,
    b0: usize,
    nc: usize,
    out: &mut Tile,
) {
    let rb = w.len() / nr;
    for (c, oc) in out.iter_mut().enumerate().take(nc.min(TILE)) {
        let a = acts.row(b0 + c);
        for (r, o) in oc.iter_mut().enumerate().take(nr.min(TILE)) {
            *o = dot(&w[r * rb..(r + 1) * rb], a);
        }
    }
}

pub(crate) fn tile_q8_0(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
    tile_with(dot_q8_0, w, nr, acts, b0, nc, out)
}

pub(crate) fn tile_q4_0(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
    tile_with(dot_q4_0, w, nr, acts, b0, nc, out)
}

pub(crate) fn tile_q4_1(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
    tile_with(dot_q4_1, w, nr, acts, b0, nc, out)
}

pub(crate) fn tile_q5_0(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
    tile_with(dot_q5::<false>, w, nr, acts, b0, nc, out)
}

pub(crate) fn tile_q5_1(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
    tile_with(dot_q5::<true>, w, nr, acts, b0, nc, out)
}

pub(crate) fn tile_q4_k(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
    tile_with(dot_qk_min::<false>, w, nr, acts, b0, nc, out)
}

pub(crate) fn tile_q5_k(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
    tile_with(dot_qk_min::<true>, w, nr, acts, b0, nc, out)
}

pub(crate) fn tile_q6_k(w: &[u8], nr: usize, acts: &QActs, b0: usize, nc: usize, out: &mut Tile) {
    tile_with(dot_q6_k, w, nr, acts, b0, nc, out)
}
