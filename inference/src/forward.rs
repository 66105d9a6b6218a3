//! The transformer forward pass, llama2.c `run.c` style: RMSNorm, interleaved-pair RoPE,
//! grouped-query attention over a KV cache, SwiGLU FFN, classifier.
//!
//! `forward` takes a run of tokens starting at `pos`: several tokens (prefill) go through every
//! matmul as one matrix x matrix product (batch = tokens); one token (decode) is a matrix x
//! vector product. The element-wise maths (crate::ops) follows run.c operation for operation
//! with the scalar kernels, so that f32 weights reproduce llama2.c's output bit for bit; the SIMD
//! kernel sets get its vectorised flavour.

use alloc::vec::Vec;

use crate::config::Config;
use crate::exec::Executor;
use crate::kernels::Kernels;
use crate::model::{Matrix, Model};
use crate::ops::Maths;
use crate::quant::dequantize_row;

/// Which logits `forward` computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only for the last token of the run (generation).
    Last,
    /// None (a prefill chunk that more tokens follow).
    None,
    /// For every token of the run, `tokens.len() * vocab` values (teacher forcing, tests).
    All,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardError {
    /// A token id is not below the vocabulary size.
    TokenOutOfRange(u32),
    /// `pos + tokens.len()` exceeds the KV cache.
    ContextFull {
        needed: usize,
        capacity: usize,
    },
    EmptyInput,
}

impl core::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ForwardError::TokenOutOfRange(t) => write!(f, "token id {t} out of range"),
            ForwardError::ContextFull { needed, capacity } => {
                write!(
                    f,
                    "context full: {needed} positions needed, {capacity} available"
                )
            }
            ForwardError::EmptyInput => write!(f, "no tokens"),
        }
    }
}

/// Sees what goes into the matmuls as the forward pass runs. The converter's calibration
/// (activation statistics for importance-weighted and GPTQ rounding) plugs in here; a plain
/// `State` has `NoObserver`, whose empty calls compile to nothing.
pub trait Observer {
    /// `x` holds one input row per token of the current chunk, for the matrices at `site`.
    fn matmul_input(&mut self, site: MatmulInput, x: &[f32]);
}

/// Where a matmul input row goes (the matrices sharing one input are one site).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulInput {
    /// wq, wk, wv of a layer: the attention-normed hidden state.
    Attention(usize),
    /// wo of a layer: the attention output.
    AttentionOutput(usize),
    /// w1, w3 of a layer: the FFN-normed hidden state.
    Ffn(usize),
    /// w2 of a layer: the gated FFN activation.
    FfnOutput(usize),
    /// The classifier: the final-normed hidden state.
    Classifier,
}

/// The observer of a `State` that nobody observes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoObserver;

impl Observer for NoObserver {
    #[inline(always)]
    fn matmul_input(&mut self, _: MatmulInput, _: &[f32]) {}
}

/// Activations and KV cache for one sequence.
pub struct State<O = NoObserver> {
    /// Sees every matmul input (calibration).
    pub observer: O,
    /// Most tokens processed by one batched step (longer runs are chunked).
    batch: usize,
    /// KV cache length in positions.
    max_seq: usize,
    x: Vec<f32>,
    xb: Vec<f32>,
    xb2: Vec<f32>,
    hb: Vec<f32>,
    hb2: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    /// [layer][position][kv_dim]
    key_cache: Vec<f32>,
    value_cache: Vec<f32>,
    /// RoPE cos/sin for each position of the current chunk, [batch][head_dim/2].
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
    logits: Vec<f32>,
}

/// The lengths (in f32s) of a `State`'s buffers for a model, context and prefill batch: what
/// `State::try_new` allocates, and what a memory budget counts before allocating (one source,
/// so the two cannot drift apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateLayout {
    /// KV cache length in positions (the context, capped at the model's `seq_len`).
    pub max_seq: usize,
    /// Most tokens one batched step takes.
    pub batch: usize,
    x: usize,
    xb: usize,
    xb2: usize,
    hb: usize,
    hb2: usize,
    q: usize,
    k: usize,
    v: usize,
    att: usize,
    key_cache: usize,
    value_cache: usize,
    rope_cos: usize,
    rope_sin: usize,
    /// One token's logits (generation); `Logits::All` grows it to the run's.
    logits: usize,
}

impl StateLayout {
    pub fn new(c: &Config, max_seq: usize, batch: usize) -> StateLayout {
        let max_seq = max_seq.clamp(1, c.seq_len);
        let batch = batch.max(1);
        let kv = c.kv_dim();
        let cache = c.n_layers.saturating_mul(max_seq).saturating_mul(kv);
        StateLayout {
            max_seq,
            batch,
            x: batch * c.dim,
            xb: batch * c.dim,
            xb2: batch * c.dim,
            hb: batch * c.hidden_dim,
            hb2: batch * c.hidden_dim,
            q: batch * c.dim,
            k: batch * kv,
            v: batch * kv,
            att: max_seq,
            key_cache: cache,
            value_cache: cache,
            rope_cos: batch * c.head_dim() / 2,
            rope_sin: batch * c.head_dim() / 2,
            logits: c.vocab_size,
        }
    }

    fn lengths(&self) -> [usize; 14] {
        [
            self.x,
            self.xb,
            self.xb2,
            self.hb,
            self.hb2,
            self.q,
            self.k,
            self.v,
            self.att,
            self.key_cache,
            self.value_cache,
            self.rope_cos,
            self.rope_sin,
            self.logits,
        ]
    }

    /// Bytes `State::try_new` allocates (KV cache: `2 * n_layers * max_seq * kv_dim * 4`).
    pub fn bytes(&self) -> u64 {
        self.lengths().iter().fold(0u64, |sum, &n| {
            sum.saturating_add((n as u64).saturating_mul(4))
        })
    }
}

/// A `State` did not fit in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateAllocError {
    pub bytes: u64,
}

impl core::fmt::Display for StateAllocError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "cannot allocate {} MiB for the KV cache and activations",
            self.bytes.div_ceil(1 << 20)
        )
    }
}

/// `len` zeros, or an error instead of an out-of-memory abort.
fn zeroed(len: usize, layout: &StateLayout) -> Result<Vec<f32>, StateAllocError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| StateAllocError {
        bytes: layout.bytes(),
    })?;
    v.resize(len, 0.0);
    Ok(v)
}

impl State {
    /// Buffers for contexts of up to `max_seq` positions (capped at the model's `seq_len`)
    /// and prefill batches of up to `batch` tokens. Aborts when memory runs out, as `vec!`
    /// does; `try_new` returns an error instead.
    pub fn new(c: &Config, max_seq: usize, batch: usize) -> State {
        State::with_observer(c, max_seq, batch, NoObserver)
    }

    /// As `new`; an error when the buffers do not fit in memory.
    pub fn try_new(c: &Config, max_seq: usize, batch: usize) -> Result<State, StateAllocError> {
        State::try_with_observer(StateLayout::new(c, max_seq, batch), NoObserver)
    }
}

impl<O: Observer> State<O> {
    /// As `State::new`, with `observer` shown every matmul input.
    pub fn with_observer(c: &Config, max_seq: usize, batch: usize, observer: O) -> Self {
        let layout = StateLayout::new(c, max_seq, batch);
        State::try_with_observer(layout, observer).unwrap_or_else(|e| {
            // What `vec!` does when memory runs out.
            let size = usize::try_from(e.bytes).unwrap_or(usize::MAX);
            let l = core::alloc::Layout::from_size_align(size, 4);
            alloc::alloc::handle_alloc_error(l.unwrap_or(core::alloc::Layout::new::<f32>()))
        })
    }

    /// The buffers `layout` lists, each allocated fallibly.
    pub fn try_with_observer(layout: StateLayout, observer: O) -> Result<Self, StateAllocError> {
        let l = &layout;
        let mut logits = Vec::new();
        logits
            .try_reserve_exact(l.logits)
            .map_err(|_| StateAllocError { bytes: l.bytes() })?;
        Ok(State {
            observer,
            batch: l.batch,
            max_seq: l.max_seq,
            x: zeroed(l.x, l)?,
            xb: zeroed(l.xb, l)?,
            xb2: zeroed(l.xb2, l)?,
            hb: zeroed(l.hb, l)?,
            hb2: zeroed(l.hb2, l)?,
            q: zeroed(l.q, l)?,
            k: zeroed(l.k, l)?,
            v: zeroed(l.v, l)?,
            att: zeroed(l.att, l)?,
            key_cache: zeroed(l.key_cache, l)?,
            value_cache: zeroed(l.value_cache, l)?,
            rope_cos: zeroed(l.rope_cos, l)?,
            rope_sin: zeroed(l.rope_sin, l)?,
            logits,
        })
    }

    /// Context capacity in positions.
    pub fn max_seq(&self) -> usize {
        self.max_seq
    }

    /// Most tokens one batched step takes.
    pub fn batch(&self) -> usize {
        self.batch
    }
}

/// Rotates interleaved pairs (v[2i], v[2i+1]) of each head by the position's angles.
fn rope(v: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    for head in v.chunks_exact_mut(head_dim) {
        for i in 0..head_dim / 2 {
            let (v0, v1) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = v0 * cos[i] - v1 * sin[i];
            head[2 * i + 1] = v0 * sin[i] + v1 * cos[i];
        }
    }
}

/// Angles for position `pos`: freq_i = theta^(-2i/head_dim), as run.c computes them.
fn rope_angles(pos: usize, head_dim: usize, theta: f32, cos: &mut [f32], sin: &mut [f32]) {
    for i in 0..head_dim / 2 {
        let freq = 1.0 / libm::powf(theta, (2 * i) as f32 / head_dim as f32);
        let val = pos as f32 * freq;
        cos[i] = libm::cosf(val);
        sin[i] = libm::sinf(val);
    }
}

fn matmul(k: &Kernels, exec: &dyn Executor, w: &Matrix, x: &[f32], batch: usize, out: &mut [f32]) {
    k.matmul(
        w.as_ref(),
        &x[..batch * w.cols],
        batch,
        &mut out[..batch * w.rows],
        exec,
    );
}

/// Runs `tokens` at positions `pos..pos + tokens.len()` and returns the requested logits.
pub fn forward<'s, O: Observer>(
    model: &Model,
    s: &'s mut State<O>,
    tokens: &[u32],
    pos: usize,
    which: Logits,
    kernels: &Kernels,
    exec: &dyn Executor,
) -> Result<&'s [f32], ForwardError> {
    let c = &model.config;
    if tokens.is_empty() {
        return Err(ForwardError::EmptyInput);
    }
    if let Some(&t) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
        return Err(ForwardError::TokenOutOfRange(t));
    }
    let needed = pos.saturating_add(tokens.len());
    if needed > s.max_seq {
        return Err(ForwardError::ContextFull {
            needed,
            capacity: s.max_seq,
        });
    }
    let vocab = c.vocab_size;
    s.logits.clear();
    let mut done = 0;
    for chunk in tokens.chunks(s.batch) {
        let last = done + chunk.len() == tokens.len();
        forward_chunk(model, s, chunk, pos + done, kernels, exec);
        let (from, rows) = match which {
            Logits::All => (0, chunk.len()),
            Logits::Last if last => (chunk.len() - 1, 1),
            Logits::Last | Logits::None => (0, 0),
        };
        if rows > 0 {
            let start = s.logits.len();
            s.logits.resize(start + rows * vocab, 0.0);
            let cls = model.weights.classifier();
            let x = &s.x[from * c.dim..(from + rows) * c.dim];
            matmul(kernels, exec, cls, x, rows, &mut s.logits[start..]);
        }
        done += chunk.len();
    }
    Ok(&s.logits)
}

/// One batched step; leaves the final-normed hidden states in `s.x`.
fn forward_chunk<O: Observer>(
    model: &Model,
    s: &mut State<O>,
    tokens: &[u32],
    pos: usize,
    kernels: &Kernels,
    exec: &dyn Executor,
) {
    let c = &model.config;
    let w = &model.weights;
    let (dim, hidden, hs) = (c.dim, c.hidden_dim, c.head_dim());
    let kv_dim = c.kv_dim();
    let kv_mul = c.n_heads / c.n_kv_heads;
    let n = tokens.len();
    let eps = c.norm_eps;
    let maths = Maths::for_kernels(kernels);

    // RoPE angles of the chunk's positions, shared by every layer.
    let half = hs / 2;
    for b in 0..n {
        let r = b * half..(b + 1) * half;
        let (cos, sin) = (&mut s.rope_cos[r.clone()], &mut s.rope_sin[r]);
        rope_angles(pos + b, hs, c.rope_theta, cos, sin);
    }

    // Token embeddings (dequantised rows of the embedding matrix).
    for (b, &t) in tokens.iter().enumerate() {
        let e = &w.tok_embeddings;
        dequantize_row(e.qtype, e.row(t as usize), &mut s.x[b * dim..(b + 1) * dim]);
    }

    for (l, lw) in w.layers.iter().enumerate() {
        // Attention block.
        for b in 0..n {
            let r = b * dim..(b + 1) * dim;
            maths.rmsnorm(&mut s.xb[r.clone()], &s.x[r], &lw.attention_norm, eps);
        }
        s.observer
            .matmul_input(MatmulInput::Attention(l), &s.xb[..n * dim]);
        matmul(kernels, exec, &lw.wq, &s.xb, n, &mut s.q);
        matmul(kernels, exec, &lw.wk, &s.xb, n, &mut s.k);
        matmul(kernels, exec, &lw.wv, &s.xb, n, &mut s.v);

        let layer_off = l * s.max_seq * kv_dim;
        for b in 0..n {
            let p = pos + b;
            let (cos, sin) = (
                &s.rope_cos[b * half..(b + 1) * half],
                &s.rope_sin[b * half..(b + 1) * half],
            );
            rope(&mut s.q[b * dim..(b + 1) * dim], hs, cos, sin);
            rope(&mut s.k[b * kv_dim..(b + 1) * kv_dim], hs, cos, sin);
            let at = layer_off + p * kv_dim;
            s.key_cache[at..at + kv_dim].copy_from_slice(&s.k[b * kv_dim..(b + 1) * kv_dim]);
            s.value_cache[at..at + kv_dim].copy_from_slice(&s.v[b * kv_dim..(b + 1) * kv_dim]);
        }

        // Causal attention: token b sees positions 0..=pos+b.
        let cache = layer_off..layer_off + (pos + n) * kv_dim;
        let (keys, values) = (&s.key_cache[cache.clone()], &s.value_cache[cache]);
        for b in 0..n {
            let p = pos + b;
            for h in 0..c.n_heads {
                let q = &s.q[b * dim + h * hs..b * dim + (h + 1) * hs];
                let out = &mut s.xb[b * dim + h * hs..b * dim + (h + 1) * hs];
                let kv_off = (h / kv_mul) * hs;
                maths.attention(q, keys, values, kv_dim, kv_off, &mut s.att[..=p], out);
            }
        }
        s.observer
            .matmul_input(MatmulInput::AttentionOutput(l), &s.xb[..n * dim]);
        matmul(kernels, exec, &lw.wo, &s.xb, n, &mut s.xb2);
        for i in 0..n * dim {
            s.x[i] += s.xb2[i];
        }

        // SwiGLU feed-forward block: w2(silu(w1 x) * w3 x).
        for b in 0..n {
            let r = b * dim..(b + 1) * dim;
            maths.rmsnorm(&mut s.xb[r.clone()], &s.x[r], &lw.ffn_norm, eps);
        }
        s.observer
            .matmul_input(MatmulInput::Ffn(l), &s.xb[..n * dim]);
        matmul(kernels, exec, &lw.w1, &s.xb, n, &mut s.hb);
        matmul(kernels, exec, &lw.w3, &s.xb, n, &mut s.hb2);
        maths.swiglu(&mut s.hb[..n * hidden], &s.hb2[..n * hidden]);
        s.observer
            .matmul_input(MatmulInput::FfnOutput(l), &s.hb[..n * hidden]);
        matmul(kernels, exec, &lw.w2, &s.hb, n, &mut s.xb);
        for i in 0..n * dim {
            s.x[i] += s.xb[i];
        }
    }

    for b in 0..n {
        let r = b * dim..(b + 1) * dim;
        s.xb[r.clone()].copy_from_slice(&s.x[r.clone()]);
        maths.rmsnorm(&mut s.x[r.clone()], &s.xb[r], &w.norm, eps);
    }
    s.observer
        .matmul_input(MatmulInput::Classifier, &s.x[..n * dim]);
}
