//! Portable scalar kernels: the reference every SIMD path is tested against.

use super::act::{ActRow, QActs};
use super::{Tile, TILE};
use crate::quant::{read_f16, Q4_0_BLOCK, Q4_1_BLOCK, Q8_0_BLOCK, QK};

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
