//! The forward pass's non-matmul maths: RMSNorm, softmax, one attention head, SwiGLU.
//!
//! Two flavours, chosen once per `forward` call from the matmul kernels in use:
//! - [`Maths::Exact`] (scalar kernels): llama2.c run.c operation for operation (serial sums,
//!   `libm::expf`, divisions), so f32 models reproduce run.c's output bit for bit.
//! - [`Maths::Fast`] (every SIMD kernel set): the same formulas with sums split over `LANES`
//!   independent accumulators, a branch-free `exp` (≤ 2 ulp) and reciprocal multiplies. The loops
//!   are written over fixed-size chunks so the compiler vectorises them; on x86_64 with AVX2 they
//!   are also compiled inside `#[target_feature(enable = "avx2")]` wrappers (8-wide instead of
//!   SSE2's 4-wide). Measured effect on SmolLM2-135M: docs/BENCHMARKS.md, end-to-end table.

use crate::kernels::{KernelVariant, Kernels};

/// Which implementation of the element-wise maths `forward` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Maths {
    /// run.c's maths, bit for bit.
    Exact,
    /// Vectorised; `avx2` = the CPU runs the AVX2 (+FMA) builds of the loops.
    Fast { avx2: bool },
}

impl Maths {
    /// Exact for the scalar kernels (the reference path), fast for every SIMD kernel set.
    pub fn for_kernels(k: &Kernels) -> Maths {
        use KernelVariant::*;
        match k.variant() {
            Scalar => Maths::Exact,
            Avx2 | Avx512 | Avx512Vnni => Maths::Fast { avx2: true },
            Neon | NeonDotprod | NeonI8mm => Maths::Fast { avx2: false },
        }
    }

    /// `o = weight * x / rms(x)`.
    pub fn rmsnorm(self, o: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
        match self {
            Maths::Exact => exact::rmsnorm(o, x, weight, eps),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `avx2` is only set for kernel variants whose CPU check includes AVX2 and FMA.
            Maths::Fast { avx2: true } => unsafe { avx2::rmsnorm(o, x, weight, eps) },
            Maths::Fast { .. } => fast::rmsnorm(o, x, weight, eps),
        }
    }

    /// In-place `hb = silu(hb) * hb2`.
    pub fn swiglu(self, hb: &mut [f32], hb2: &[f32]) {
        match self {
            Maths::Exact => exact::swiglu(hb, hb2),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `rmsnorm`.
            Maths::Fast { avx2: true } => unsafe { avx2::swiglu(hb, hb2) },
            Maths::Fast { .. } => fast::swiglu(hb, hb2),
        }
    }

    /// One head of causal attention: `out = softmax(q . K^T / sqrt(hs)) V` over the cached
    /// positions `0..att.len()`. Position t's key is `keys[t * kv_dim + kv_off..][..q.len()]`,
    /// its value likewise in `values`; `att` is scratch for the scores.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        self,
        q: &[f32],
        keys: &[f32],
        values: &[f32],
        kv_dim: usize,
        kv_off: usize,
        att: &mut [f32],
        out: &mut [f32],
    ) {
        let head = Head {
            keys,
            values,
            kv_dim,
            kv_off,
        };
        match self {
            Maths::Exact => exact::attention(q, &head, att, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `rmsnorm`.
            Maths::Fast { avx2: true } => unsafe { avx2::attention(q, &head, att, out) },
            Maths::Fast { .. } => fast::attention(q, &head, att, out),
        }
    }
}

/// Where one head's K/V rows live in a layer's cache.
struct Head<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    kv_dim: usize,
    kv_off: usize,
}

impl Head<'_> {
    fn key(&self, t: usize, hs: usize) -> &[f32] {
        &self.keys[t * self.kv_dim + self.kv_off..][..hs]
    }
    fn value(&self, t: usize, hs: usize) -> &[f32] {
        &self.values[t * self.kv_dim + self.kv_off..][..hs]
    }
}

/// llama2.c run.c's maths.
mod exact {
    use super::Head;

    pub fn rmsnorm(o: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
        let mut ss = 0.0f32;
        for &v in x {
            ss += v * v;
        }
        ss /= x.len() as f32;
        ss += eps;
        ss = 1.0 / libm::sqrtf(ss);
        for j in 0..x.len() {
            o[j] = weight[j] * (ss * x[j]);
        }
    }

    pub fn softmax(x: &mut [f32]) {
        let mut max = x[0];
        for &v in &x[1..] {
            if v > max {
                max = v;
            }
        }
        let mut sum = 0.0f32;
        for v in x.iter_mut() {
            *v = libm::expf(*v - max);
            sum += *v;
        }
        for v in x.iter_mut() {
            *v /= sum;
        }
    }

    pub fn swiglu(hb: &mut [f32], hb2: &[f32]) {
        for (h, &g) in hb.iter_mut().zip(hb2) {
            let mut val = *h;
            val *= 1.0 / (1.0 + libm::expf(-val));
            val *= g;
            *h = val;
        }
    }

    /// Each score is summed in index order from 0.0 (run.c's order), but SCORES positions at a
    /// time: independent chains keep the FPU busy instead of waiting on one serial sum.
    pub fn attention(q: &[f32], head: &Head, att: &mut [f32], out: &mut [f32]) {
        const SCORES: usize = 8;
        let hs = q.len();
        let scale = libm::sqrtf(hs as f32);
        let mut t = 0;
        while t + SCORES <= att.len() {
            let mut acc = [0.0f32; SCORES];
            for (i, &qi) in q.iter().enumerate() {
                for (j, a) in acc.iter_mut().enumerate() {
                    *a += qi * head.keys[(t + j) * head.kv_dim + head.kv_off + i];
                }
            }
            for (j, a) in acc.iter().enumerate() {
                att[t + j] = a / scale;
            }
            t += SCORES;
        }
        for (tt, a) in att.iter_mut().enumerate().skip(t) {
            let k = head.key(tt, hs);
            let mut score = 0.0f32;
            for i in 0..hs {
                score += q[i] * k[i];
            }
            *a = score / scale;
        }
        softmax(att);
        out.fill(0.0);
        for (t, &a) in att.iter().enumerate() {
            let v = head.value(t, hs);
            for i in 0..hs {
                out[i] += a * v[i];
            }
        }
    }
}

/// Vectorisable maths. Every function is `inline(always)` so that the AVX2 wrappers below get
/// their own 8-wide copy.
mod fast {
    use super::Head;

    /// Independent partial sums per reduction: 16 = two AVX2 / four SSE2 / four NEON registers.
    const LANES: usize = 16;

    #[inline(always)]
    fn sum_lanes(acc: [f32; LANES]) -> f32 {
        let mut s = 0.0;
        for v in acc {
            s += v;
        }
        s
    }

    #[inline(always)]
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..LANES {
                acc[i] += x[i] * y[i];
            }
        }
        let mut s = sum_lanes(acc);
        for (x, y) in ra.iter().zip(rb) {
            s += x * y;
        }
        s
    }

    /// e^x for finite x, relative error ≤ 2 ulp, no branches (vectorises): x = n ln2 + r with
    /// |r| ≤ ln2/2 (Cody-Waite split of ln2), e^r by Cephes `expf`'s degree-7 polynomial,
    /// 2^n built in the exponent bits. Inputs are clamped to [-87.3, 88.3], where 2^n is a
    /// normal float: below, the result is ~1e-38 instead of a denormal or 0 (irrelevant next to
    /// softmax's max term of 1 and silu's 1 + e^-x).
    #[inline(always)]
    pub fn exp(x: f32) -> f32 {
        const LOG2E: f32 = core::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        // Adding 1.5 * 2^23 rounds to an integer, which then sits in the low mantissa bits.
        const ROUND: f32 = 12_582_912.0;
        let x = x.clamp(-87.3, 88.3);
        let t = x * LOG2E + ROUND;
        let n = t - ROUND;
        let r = x - n * LN2_HI - n * LN2_LO;
        let p = 1.987_569_2e-4;
        let p = p * r + 1.398_199_9e-3;
        let p = p * r + 8.333_452e-3;
        let p = p * r + 4.166_579_6e-2;
        let p = p * r + 1.666_666_5e-1;
        let p = p * r + 0.5; // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
        let er = p * (r * r) + r + 1.0;
        // t's bits are 0x4B40_0000 + n: rebase to the biased exponent n + 127.
        let pow2n = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23);
        er * pow2n
    }

    #[inline(always)]
    pub fn rmsnorm(o: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
        let ss = dot(x, x) / x.len() as f32 + eps;
        let ss = 1.0 / libm::sqrtf(ss);
        for ((o, &w), &v) in o.iter_mut().zip(weight).zip(x) {
            *o = w * (ss * v);
        }
    }

    #[inline(always)]
    pub fn swiglu(hb: &mut [f32], hb2: &[f32]) {
        for (h, &g) in hb.iter_mut().zip(hb2) {
            *h = *h / (1.0 + exp(-*h)) * g;
        }
    }

    #[inline(always)]
    pub fn softmax(x: &mut [f32]) {
        let mut maxes = [f32::NEG_INFINITY; LANES];
        let chunks = x.chunks_exact(LANES);
        let mut max = f32::NEG_INFINITY;
        for &v in chunks.remainder() {
            max = max.max(v);
        }
        for c in chunks {
            for i in 0..LANES {
                maxes[i] = maxes[i].max(c[i]);
            }
        }
        for m in maxes {
            max = max.max(m);
        }
        let mut sums = [0.0f32; LANES];
        let mut chunks = x.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for i in 0..LANES {
                c[i] = exp(c[i] - max);
                sums[i] += c[i];
            }
        }
        let mut sum = sum_lanes(sums);
        for v in chunks.into_remainder() {
            *v = exp(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in x.iter_mut() {
            *v *= inv;
        }
    }

    /// Positions scored together: their independent sums hide the add latency.
    const POSITIONS: usize = 4;
    /// Accumulator lanes per score (one AVX2 register).
    const SCORE_LANES: usize = 8;
    /// Output values accumulated in registers across all positions (8 AVX2 registers).
    const OUT_BLOCK: usize = 64;

    #[inline(always)]
    fn mul_add_lanes(acc: &mut [f32; SCORE_LANES], q: &[f32], k: &[f32]) {
        for l in 0..SCORE_LANES {
            acc[l] += q[l] * k[l];
        }
    }

    #[inline(always)]
    fn score(acc: [f32; SCORE_LANES], q: &[f32], k: &[f32], inv_scale: f32) -> f32 {
        let mut s = 0.0;
        for v in acc {
            s += v;
        }
        for (x, y) in q.iter().zip(k) {
            s += x * y;
        }
        s * inv_scale
    }

    /// `att[j] = dot(q, keys[j]) * inv_scale` for POSITIONS keys (separate accumulators and
    /// zipped chunks: the form LLVM keeps in registers without bounds checks).
    #[inline(always)]
    fn scores(q: &[f32], keys: [&[f32]; POSITIONS], inv_scale: f32, att: &mut [f32]) {
        let [k0, k1, k2, k3] = keys;
        let (mut a0, mut a1, mut a2, mut a3) = (
            [0.0f32; SCORE_LANES],
            [0.0; SCORE_LANES],
            [0.0; SCORE_LANES],
            [0.0; SCORE_LANES],
        );
        let chunks = q
            .chunks_exact(SCORE_LANES)
            .zip(k0.chunks_exact(SCORE_LANES))
            .zip(k1.chunks_exact(SCORE_LANES))
            .zip(k2.chunks_exact(SCORE_LANES))
            .zip(k3.chunks_exact(SCORE_LANES));
        for ((((qc, c0), c1), c2), c3) in chunks {
            mul_add_lanes(&mut a0, qc, c0);
            mul_add_lanes(&mut a1, qc, c1);
            mul_add_lanes(&mut a2, qc, c2);
            mul_add_lanes(&mut a3, qc, c3);
        }
        let whole = q.len() / SCORE_LANES * SCORE_LANES;
        let qr = &q[whole..];
        att[0] = score(a0, qr, &k0[whole..], inv_scale);
        att[1] = score(a1, qr, &k1[whole..], inv_scale);
        att[2] = score(a2, qr, &k2[whole..], inv_scale);
        att[3] = score(a3, qr, &k3[whole..], inv_scale);
    }

    #[inline(always)]
    pub fn attention(q: &[f32], head: &Head, att: &mut [f32], out: &mut [f32]) {
        let hs = q.len();
        let inv_scale = 1.0 / libm::sqrtf(hs as f32);
        let mut t = 0;
        while t + POSITIONS <= att.len() {
            let keys = core::array::from_fn(|j| head.key(t + j, hs));
            scores(q, keys, inv_scale, &mut att[t..t + POSITIONS]);
            t += POSITIONS;
        }
        for (tt, a) in att.iter_mut().enumerate().skip(t) {
            *a = dot(q, head.key(tt, hs)) * inv_scale;
        }
        softmax(att);
        weighted_sum(att, head, out);
    }

    /// `out = sum_t att[t] * value_t`, OUT_BLOCK outputs at a time kept in registers.
    #[inline(always)]
    pub fn weighted_sum(att: &[f32], head: &Head, out: &mut [f32]) {
        let hs = out.len();
        let mut i0 = 0;
        while i0 < hs {
            let n = OUT_BLOCK.min(hs - i0);
            if n == OUT_BLOCK {
                let mut acc = [0.0f32; OUT_BLOCK];
                for (t, &a) in att.iter().enumerate() {
                    let v = &head.value(t, hs)[i0..i0 + OUT_BLOCK];
                    for l in 0..OUT_BLOCK {
                        acc[l] += a * v[l];
                    }
                }
                out[i0..i0 + OUT_BLOCK].copy_from_slice(&acc);
            } else {
                let o = &mut out[i0..i0 + n];
                o.fill(0.0);
                for (t, &a) in att.iter().enumerate() {
                    for (o, &v) in o.iter_mut().zip(&head.value(t, hs)[i0..i0 + n]) {
                        *o += a * v;
                    }
                }
            }
            i0 += n;
        }
    }
}

/// The `fast` loops compiled for AVX2 (8-wide), and the attention scores with explicit FMA
/// intrinsics (LLVM's own vectorisation of `fast::scores` shuffles xmm registers instead;
/// measured: attention 10.6% -> 5.1% of a SmolLM2 Q4_0 generate).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{fast, Head};
    use core::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX2 with its state enabled (`CpuFeatures::avx2`).
    #[target_feature(enable = "avx2")]
    pub unsafe fn rmsnorm(o: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
        fast::rmsnorm(o, x, weight, eps)
    }

    /// # Safety
    /// As [`rmsnorm`].
    #[target_feature(enable = "avx2")]
    pub unsafe fn swiglu(hb: &mut [f32], hb2: &[f32]) {
        fast::swiglu(hb, hb2)
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA with AVX state enabled.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// The eight lane sums of `a[0..8]` as one vector: `[sum(a[0]), .., sum(a[7])]`.
    ///
    /// # Safety
    /// As [`hsum`].
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum8(a: &[__m256; 8]) -> __m256 {
        let s01 = _mm256_hadd_ps(a[0], a[1]);
        let s23 = _mm256_hadd_ps(a[2], a[3]);
        let s45 = _mm256_hadd_ps(a[4], a[5]);
        let s67 = _mm256_hadd_ps(a[6], a[7]);
        // Per 128-bit half: [a0, a1, a2, a3] partial sums (low half: lanes 0-3, high: 4-7).
        let t0 = _mm256_hadd_ps(s01, s23);
        let t1 = _mm256_hadd_ps(s45, s67);
        let lo = _mm256_permute2f128_ps(t0, t1, 0x20);
        let hi = _mm256_permute2f128_ps(t0, t1, 0x31);
        _mm256_add_ps(lo, hi)
    }

    /// `att[t] = dot(q, key_t) * inv_scale`, eight positions at a time: eight independent FMA
    /// chains, reduced together by `hsum8`.
    ///
    /// # Safety
    /// As [`hsum`]; also `q.len()` must be a multiple of 8, every key of `head` up to
    /// `att.len()` must hold `q.len()` values (the loads are unchecked).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn scores(q: &[f32], head: &Head, inv_scale: f32, att: &mut [f32]) {
        let hs = q.len();
        let qp = q.as_ptr();
        let mut t = 0;
        while t + 8 <= att.len() {
            let k: [*const f32; 8] = core::array::from_fn(|j| head.key(t + j, hs).as_ptr());
            let mut acc = [_mm256_setzero_ps(); 8];
            for i in (0..hs).step_by(8) {
                // SAFETY: i + 8 <= hs, and q and every key hold hs values.
                let qv = _mm256_loadu_ps(qp.add(i));
                for j in 0..8 {
                    acc[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[j].add(i)), acc[j]);
                }
            }
            let sums = _mm256_mul_ps(hsum8(&acc), _mm256_set1_ps(inv_scale));
            // SAFETY: t + 8 <= att.len().
            _mm256_storeu_ps(att.as_mut_ptr().add(t), sums);
            t += 8;
        }
        for (tt, a) in att.iter_mut().enumerate().skip(t) {
            let k = head.key(tt, hs).as_ptr();
            let mut acc = _mm256_setzero_ps();
            for i in (0..hs).step_by(8) {
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(i)), _mm256_loadu_ps(k.add(i)), acc);
            }
            *a = hsum(acc) * inv_scale;
        }
    }

    /// # Safety
    /// As [`hsum`]; the slices as `fast::attention` requires them.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn attention(q: &[f32], head: &Head, att: &mut [f32], out: &mut [f32]) {
        if !q.len().is_multiple_of(8) {
            return fast::attention(q, head, att, out);
        }
        scores(q, head, 1.0 / libm::sqrtf(q.len() as f32), att);
        fast::softmax(att);
        fast::weighted_sum(att, head, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::CpuFeatures;
    use std::vec::Vec;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn fast_exp_is_within_2_ulp_of_libm() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (fast::exp(x), libm::exp(x as f64) as f32);
            worst = worst.max(ulps(got, want));
            x += 0.001_37;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(fast::exp(0.0), 1.0);
        assert!(fast::exp(-1000.0) < 1e-37 && fast::exp(-1000.0) >= 0.0);
        assert!(fast::exp(1000.0).is_finite());
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    /// Every flavour this CPU runs against the exact (run.c) maths, on odd lengths so the
    /// remainder loops run too.
    #[test]
    fn fast_maths_match_exact_closely() {
        // Only x86 adds a flavour.
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut flavours = std::vec![Maths::Fast { avx2: false }];
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            flavours.push(Maths::Fast { avx2: true });
        }
        let close = |a: &[f32], b: &[f32], what: &str| {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "{what}[{i}]: {x} vs {y}"
                );
            }
        };
        for m in flavours {
            for n in [1, 7, 64, 100, 173] {
                let (x, w) = (data(n, 1), data(n, 2));
                let (mut a, mut b) = (std::vec![0.0; n], std::vec![0.0; n]);
                m.rmsnorm(&mut a, &x, &w, 1e-5);
                Maths::Exact.rmsnorm(&mut b, &x, &w, 1e-5);
                close(&a, &b, "rmsnorm");

                let (mut a, mut b) = (x.iter().map(|v| v * 8.0).collect::<Vec<_>>(), w.clone());
                let mut b2 = a.clone();
                m.swiglu(&mut a, &b);
                Maths::Exact.swiglu(&mut b2, &b);
                close(&a, &b2, "swiglu");
                b.clear();
            }
            // Attention: 2 kv heads of 72 (one 64-value register block + 8), the second head,
            // 1..=37 positions.
            let (hs, kv_dim, kv_off) = (72, 144, 72);
            let keys = data(37 * kv_dim, 3);
            let values = data(37 * kv_dim, 4);
            let q: Vec<f32> = data(hs, 5).iter().map(|v| v * 3.0).collect();
            for len in 1..=37 {
                let (mut att_a, mut att_b) = (std::vec![0.0; len], std::vec![0.0; len]);
                let (mut oa, mut ob) = (std::vec![1.0; hs], std::vec![1.0; hs]);
                m.attention(&q, &keys, &values, kv_dim, kv_off, &mut att_a, &mut oa);
                Maths::Exact.attention(&q, &keys, &values, kv_dim, kv_off, &mut att_b, &mut ob);
                close(&att_a, &att_b, "attention probabilities");
                close(&oa, &ob, "attention output");
                let total: f32 = att_a.iter().sum();
                assert!((total - 1.0).abs() < 1e-5, "softmax sums to {total}");
            }
        }
    }

    #[test]
    fn scalar_kernels_get_exact_maths() {
        let k = Kernels::select(&CpuFeatures::default());
        assert_eq!(Maths::for_kernels(&k), Maths::Exact);
    }
}
