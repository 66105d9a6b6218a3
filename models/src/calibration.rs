//! Activation statistics for the converter's rounding: the forward pass's `Observer`, fed
//! every matmul input while the exact model runs over calibration text.

use inference::exec::Executor;
use inference::kernels::Kernels;
use inference::{Config, Logits, MatmulInput, Model, Observer, State};

/// Sums of squares of every matmul input, per input column, over all tokens seen: the
/// importance weights the converter's quantiser uses (llama.cpp calls this an imatrix).
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationStats {
    pub tokens: usize,
    /// Also keep every input row (for GPTQ-style quantisers that need X^T X).
    pub keep_inputs: bool,
    pub layers: Vec<LayerStats>,
    /// Input of the classifier (final-normed hidden state).
    pub classifier_in: Vec<f32>,
    pub classifier_rows: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LayerStats {
    /// Input of wq, wk, wv.
    pub attn_in: Vec<f32>,
    /// Input of wo.
    pub wo_in: Vec<f32>,
    /// Input of w1, w3.
    pub ffn_in: Vec<f32>,
    /// Input of w2.
    pub w2_in: Vec<f32>,
    /// The input rows themselves, when `keep_inputs` (same order as above).
    pub attn_rows: Vec<f32>,
    pub wo_rows: Vec<f32>,
    pub ffn_rows: Vec<f32>,
    pub w2_rows: Vec<f32>,
}

impl ActivationStats {
    pub fn new(c: &Config) -> Self {
        let layer = LayerStats {
            attn_in: vec![0.0; c.dim],
            wo_in: vec![0.0; c.dim],
            ffn_in: vec![0.0; c.dim],
            w2_in: vec![0.0; c.hidden_dim],
            attn_rows: Vec::new(),
            wo_rows: Vec::new(),
            ffn_rows: Vec::new(),
            w2_rows: Vec::new(),
        };
        ActivationStats {
            tokens: 0,
            keep_inputs: false,
            classifier_rows: Vec::new(),
            layers: vec![layer; c.n_layers],
            classifier_in: vec![0.0; c.dim],
        }
    }
}

impl Observer for ActivationStats {
    fn matmul_input(&mut self, site: MatmulInput, x: &[f32]) {
        let (sums, rows) = match site {
            MatmulInput::Attention(l) => {
                let s = &mut self.layers[l];
                (&mut s.attn_in, &mut s.attn_rows)
            }
            MatmulInput::AttentionOutput(l) => {
                let s = &mut self.layers[l];
                (&mut s.wo_in, &mut s.wo_rows)
            }
            MatmulInput::Ffn(l) => {
                let s = &mut self.layers[l];
                (&mut s.ffn_in, &mut s.ffn_rows)
            }
            MatmulInput::FfnOutput(l) => {
                let s = &mut self.layers[l];
                (&mut s.w2_in, &mut s.w2_rows)
            }
            MatmulInput::Classifier => {
                // Every token of a chunk reaches the classifier's input once.
                self.tokens += x.len() / self.classifier_in.len();
                (&mut self.classifier_in, &mut self.classifier_rows)
            }
        };
        if self.keep_inputs {
            rows.extend_from_slice(x);
        }
        for row in x.chunks_exact(sums.len()) {
            for (a, &v) in sums.iter_mut().zip(row) {
                *a += v * v;
            }
        }
    }
}

/// Runs `model` over `sequences` (token ids, each from position 0) collecting the mean
/// square of every matmul input column.
/// With `keep_inputs`, the input rows are kept too, and `requantize` then rounds 4-bit
/// matrices with GPTQ error feedback.
pub fn calibrate(
    model: &Model,
    sequences: &[Vec<u32>],
    keep_inputs: bool,
    kernels: &Kernels,
    exec: &dyn Executor,
) -> ActivationStats {
    let longest = sequences.iter().map(Vec::len).max().unwrap_or(1);
    let mut stats = ActivationStats::new(&model.config);
    stats.keep_inputs = keep_inputs;
    let mut state = State::with_observer(&model.config, longest, 64, stats);
    for seq in sequences.iter().filter(|s| !s.is_empty()) {
        // Tokens beyond the vocabulary cannot be in a generated sequence; ignore errors.
        let _ = inference::forward(model, &mut state, seq, 0, Logits::Last, kernels, exec);
    }
    state.observer
}
