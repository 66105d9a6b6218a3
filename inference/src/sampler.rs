//! Next-token selection: greedy, or temperature + top-k + top-p sampling with a seeded RNG,
//! after an optional repetition penalty.

use alloc::vec::Vec;

/// Temperatures below this are greedy decoding: dividing logits by a tinier temperature
/// only overflows them (1e-45 makes every logit infinite), and at 0.001 sampling already
/// picks the argmax unless the top two logits are within ~0.01.
pub const GREEDY_BELOW_TEMPERATURE: f32 = 1e-3;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Below `GREEDY_BELOW_TEMPERATURE` (e.g. 0) = greedy (argmax, first index on ties).
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p, clamped to [0, 1]
    /// (1 = off; 0 keeps only the most likely token).
    pub top_p: f32,
    /// CTRL-style penalty for tokens already in the window: positive logits are divided by
    /// it, negative ones multiplied (1.0 = off).
    pub repetition_penalty: f32,
    /// How many most recent tokens the penalty looks at.
    pub repetition_window: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            repetition_window: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    pub fn check(&self) -> Result<(), &'static str> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err("temperature must be a finite number >= 0");
        }
        if self.top_p.is_nan() {
            return Err("top_p must be a number");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err("repetition_penalty must be a finite number > 0");
        }
        Ok(())
    }
}

/// xorshift64* — small, seedable, good enough for sampling.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 scrambles the seed so that 0 and small seeds are fine.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

pub struct Sampler {
    pub config: SamplerConfig,
    rng: Rng,
    candidates: Vec<(f32, u32)>,
}

/// Index of the largest value (first on ties).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Sampler {
        Sampler {
            rng: Rng::new(config.seed),
            config,
            candidates: Vec::new(),
        }
    }

    /// Picks the next token. `logits` is modified (penalty, temperature); `history` is the
    /// sequence so far (prompt + generated) for the repetition penalty.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let cfg = &self.config;
        if cfg.repetition_penalty != 1.0 {
            let window = &history[history.len().saturating_sub(cfg.repetition_window)..];
            for (i, &t) in window.iter().enumerate() {
                // Penalise each distinct token once.
                if window[..i].contains(&t) {
                    continue;
                }
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / cfg.repetition_penalty
                    } else {
                        *l * cfg.repetition_penalty
                    };
                }
            }
        }
        // `check` refuses NaN; treat it as greedy here too.
        if cfg.temperature.is_nan() || cfg.temperature < GREEDY_BELOW_TEMPERATURE {
            return argmax(logits);
        }
        let c = &mut self.candidates;
        c.clear();
        // Finite after scaling, so the softmax below never sees inf - inf.
        c.extend(logits.iter().enumerate().map(|(i, &l)| {
            let scaled = l / cfg.temperature;
            (scaled.clamp(-f32::MAX, f32::MAX), i as u32)
        }));
        // Highest first; ties by id for determinism. NaN logits sort last.
        let by_logit = |a: &(f32, u32), b: &(f32, u32)| {
            b.0.partial_cmp(&a.0)
                .unwrap_or_else(|| a.0.is_nan().cmp(&b.0.is_nan()))
                .then(a.1.cmp(&b.1))
        };
        if cfg.top_k > 0 && cfg.top_k < c.len() {
            c.select_nth_unstable_by(cfg.top_k - 1, by_logit);
            c.truncate(cfg.top_k);
        }
        c.sort_unstable_by(by_logit);
        // Softmax over the candidates.
        let max = c[0].0;
        let mut sum = 0.0f32;
        for e in c.iter_mut() {
            e.0 = if e.0.is_nan() {
                0.0
            } else {
                libm::expf(e.0 - max)
            };
            sum += e.0;
        }
        if !(sum > 0.0 && sum.is_finite()) {
            // Every logit NaN: nothing to sample from, take the first candidate.
            return c[0].1;
        }
        for e in c.iter_mut() {
            e.0 /= sum;
        }
        if cfg.top_p < 1.0 {
            let mut acc = 0.0f32;
            let mut keep = c.len();
            for (i, e) in c.iter().enumerate() {
                acc += e.0;
                if acc >= cfg.top_p {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep);
            let total: f32 = c.iter().map(|e| e.0).sum();
            for e in c.iter_mut() {
                e.0 /= total;
            }
        }
        let r = self.rng.next_f32();
        let mut acc = 0.0f32;
        for e in c.iter() {
            acc += e.0;
            if r < acc {
                return e.1;
            }
        }
        c[c.len() - 1].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax_first_on_ties() {
        let mut s = Sampler::new(SamplerConfig::default());
        assert_eq!(s.sample(&mut [1.0, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn repetition_penalty_changes_greedy_choice() {
        let cfg = SamplerConfig {
            repetition_penalty: 2.0,
            ..SamplerConfig::default()
        };
        let mut s = Sampler::new(cfg);
        // 4.0 / 2 = 2.0 < 3.0
        assert_eq!(s.sample(&mut [4.0, 3.0, -1.0], &[0, 0]), 1);
        // negative logits get more negative
        let mut l = [-1.0, -1.5];
        assert_eq!(s.sample(&mut l, &[0]), 1);
        assert_eq!(l[0], -2.0);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_reproducible() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 1,
            ..SamplerConfig::default()
        };
        let mut s = Sampler::new(cfg);
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.5, 0.4, 2.0, 1.9], &[]), 2);
        }
        let cfg = SamplerConfig {
            temperature: 1.0,
            seed: 42,
            ..SamplerConfig::default()
        };
        let logits = [0.1f32, 0.2, 0.3, 0.4, 0.5];
        let run = |cfg: &SamplerConfig| {
            let mut s = Sampler::new(cfg.clone());
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        let a = run(&cfg);
        assert_eq!(a, run(&cfg));
        // All five tokens show up when sampling at temperature 1.
        for t in 0..5 {
            assert!(a.contains(&t), "{a:?}");
        }
        let other = run(&SamplerConfig { seed: 43, ..cfg });
        assert_ne!(a, other);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities ~ [0.87, 0.12, 0.002, ...]: top_p 0.5 keeps only token 0.
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_p: 0.5,
            seed: 7,
            ..SamplerConfig::default()
        };
        let mut s = Sampler::new(cfg);
        for _ in 0..100 {
            assert_eq!(s.sample(&mut [5.0, 3.0, -1.0, -1.0], &[]), 0);
        }
    }

    #[test]
    fn degenerate_settings_sample_without_error_or_nan() {
        let logits = [1.0f32, 3.0, 2.9, -4.0, 80.0, 79.9995];
        let run = |temperature: f32, top_p: f32| {
            let cfg = SamplerConfig {
                temperature,
                top_p,
                top_k: 0,
                seed: 3,
                ..SamplerConfig::default()
            };
            assert_eq!(cfg.check(), Ok(()), "{cfg:?}");
            let mut s = Sampler::new(cfg);
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        // Tiny temperatures are greedy (1e-45 would make every logit infinite).
        for t in [0.0, 1e-45, 1e-30, 1e-8, GREEDY_BELOW_TEMPERATURE / 2.0] {
            assert!(run(t, 0.9).iter().all(|&id| id == 4), "temperature {t}");
        }
        // top_p at or below 0 keeps the most likely token only; above 1 is off.
        for p in [1e-50f64 as f32, 0.0, -1.0, f32::MIN_POSITIVE, 1e-45] {
            assert!(run(1.0, p).iter().all(|&id| id == 4), "top_p {p}");
        }
        let wide = run(1.0, 2.0);
        assert!(wide.contains(&4) && wide.contains(&5), "{wide:?}");
        // At the threshold it samples: 0.0005 apart, scaled by 1000, is p = 0.62 / 0.38.
        let ids = run(GREEDY_BELOW_TEMPERATURE, 1.0);
        assert!(ids.iter().all(|&id| id == 4 || id == 5), "{ids:?}");
        assert!(ids.contains(&4) && ids.contains(&5), "{ids:?}");
    }

    #[test]
    fn extreme_logits_and_penalties_stay_finite() {
        let cfg = SamplerConfig {
            temperature: 0.5,
            repetition_penalty: 1e-45,
            seed: 9,
            ..SamplerConfig::default()
        };
        let mut s = Sampler::new(cfg);
        // The penalty turns token 1's logit infinite; the sample is still a real token.
        for _ in 0..20 {
            let mut l = [f32::MAX, 2.0, -f32::MAX, f32::NEG_INFINITY];
            assert!(s.sample(&mut l, &[1]) < 4);
        }
        let mut nan = [f32::NAN; 4];
        assert!(s.sample(&mut nan, &[]) < 4);
        assert!(SamplerConfig {
            top_p: f32::NAN,
            ..SamplerConfig::default()
        }
        .check()
        .is_err());
    }

    #[test]
    fn sampling_frequencies_follow_softmax() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            seed: 1,
            ..SamplerConfig::default()
        };
        let mut s = Sampler::new(cfg);
        let mut counts = [0u32; 2];
        for _ in 0..10000 {
            counts[s.sample(&mut [0.0, libm::logf(3.0)], &[]) as usize] += 1;
        }
        // Expect 25% / 75%.
        assert!((2200..2800).contains(&counts[0]), "{counts:?}");
    }
}
