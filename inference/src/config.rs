//! Model hyper-parameters (llama family).

/// Hyper-parameters of a llama-family transformer, as stored in the model file.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Residual stream width.
    pub dim: usize,
    /// SwiGLU inner width.
    pub hidden_dim: usize,
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when < n_heads).
    pub n_kv_heads: usize,
    pub vocab_size: usize,
    /// Maximum context the model was trained for.
    pub seq_len: usize,
    /// RoPE base (10000 for llama2.c models, 100000 for SmolLM2).
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// Classifier shares the token embedding matrix.
    pub tied_classifier: bool,
}

impl Config {
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }

    /// Width of one position's keys (or values) across all kv heads.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim()
    }

    /// Checks the relations the forward pass relies on. Returns a description of the first
    /// violated rule.
    pub fn check(&self) -> Result<(), &'static str> {
        // Upper bounds keep every buffer size computation far from overflow.
        const MAX: usize = 1 << 24;
        let fields = [
            self.dim,
            self.hidden_dim,
            self.n_layers,
            self.n_heads,
            self.n_kv_heads,
            self.vocab_size,
            self.seq_len,
        ];
        if fields.contains(&0) {
            return Err("a dimension is zero");
        }
        if fields.iter().any(|&v| v > MAX) || self.n_layers > 4096 {
            return Err("a dimension is implausibly large");
        }
        if !self.dim.is_multiple_of(self.n_heads) {
            return Err("dim is not a multiple of n_heads");
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err("n_heads is not a multiple of n_kv_heads");
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err("head_dim is odd (RoPE rotates pairs)");
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err("rope_theta must be a finite number > 1");
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return Err("norm_eps must be in (0, 1)");
        }
        Ok(())
    }
}
