//! Accuracy measurement: teacher-forced top-1 agreement of a model against a reference model.

use inference::exec::Executor;
use inference::kernels::Kernels;
use inference::sampler::argmax;
use inference::{forward, Logits, Model, State};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agreement {
    /// Positions compared.
    pub positions: usize,
    /// Positions where both models' most likely next token is the same.
    pub top1_equal: usize,
    /// Largest |logit difference| over all positions and tokens.
    pub max_logit_error: f32,
}

impl Agreement {
    pub fn ratio(&self) -> f64 {
        self.top1_equal as f64 / self.positions.max(1) as f64
    }

    pub fn merge(&mut self, o: &Agreement) {
        self.positions += o.positions;
        self.top1_equal += o.top1_equal;
        self.max_logit_error = self.max_logit_error.max(o.max_logit_error);
    }
}

/// All-position logits of `tokens` (one batched prefill).
pub fn all_logits(
    model: &Model,
    tokens: &[u32],
    kernels: &Kernels,
    exec: &dyn Executor,
) -> Vec<f32> {
    let mut state = State::new(&model.config, tokens.len(), 64);
    forward(model, &mut state, tokens, 0, Logits::All, kernels, exec)
        .expect("tokens fit the model")
        .to_vec()
}

/// Feeds `tokens` through both models and compares the next-token distributions at every
/// position.
pub fn teacher_forced(
    reference: &Model,
    candidate: &Model,
    tokens: &[u32],
    kernels: &Kernels,
    exec: &dyn Executor,
) -> Agreement {
    let vocab = reference.config.vocab_size;
    let a = all_logits(reference, tokens, kernels, exec);
    let b = all_logits(candidate, tokens, kernels, exec);
    let mut r = Agreement {
        positions: tokens.len(),
        top1_equal: 0,
        max_logit_error: 0.0,
    };
    for (la, lb) in a.chunks_exact(vocab).zip(b.chunks_exact(vocab)) {
        if argmax(la) == argmax(lb) {
            r.top1_equal += 1;
        }
        for (x, y) in la.iter().zip(lb) {
            r.max_logit_error = r.max_logit_error.max((x - y).abs());
        }
    }
    r
}
