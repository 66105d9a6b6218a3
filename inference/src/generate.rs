//! Streaming generation: prefill the prompt as one batch, then decode token by token, calling
//! back with each token and the text it completes. Stops on an end token, a stop string, the
//! token limit, a full context, or when the cancellation hook says so (checked between
//! prefill batches and between tokens). The clock is a parameter (`fn() -> u64` nanoseconds) because no_std has none.

use alloc::string::String;
use alloc::vec::Vec;

use crate::exec::Executor;
use crate::forward::{forward, ForwardError, Logits, State};
use crate::kernels::Kernels;
use crate::model::Model;
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::StreamDecoder;

#[derive(Clone, Debug, PartialEq)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Generation stops when the text contains one of these; the stop string and anything
    /// after it are not emitted.
    pub stop_strings: Vec<String>,
    pub sampler: SamplerConfig,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            stop_strings: Vec::new(),
            sampler: SamplerConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-sequence token.
    Eos,
    StopString,
    MaxTokens,
    /// The KV cache is full.
    ContextFull,
    Cancelled,
}

/// Per-phase timings, in nanoseconds of the supplied clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    pub prompt_tokens: usize,
    /// Prompt forward pass (batched).
    pub prefill_ns: u64,
    /// From the start of the call until the first generated token was sampled.
    pub time_to_first_token_ns: u64,
    /// Single-token forward passes after the prompt, and their total time (incl. sampling).
    pub decode_tokens: usize,
    pub decode_ns: u64,
    pub generated_tokens: usize,
}

fn per_second(n: usize, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        n as f64 * 1e9 / ns as f64
    }
}

impl Timings {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        per_second(self.prompt_tokens, self.prefill_ns)
    }

    pub fn decode_tokens_per_s(&self) -> f64 {
        per_second(self.decode_tokens, self.decode_ns)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// Generated token ids (the end token, if any, is not included).
    pub tokens: Vec<u32>,
    /// Text emitted through the callback, concatenated.
    pub text: String,
    pub stop: StopReason,
    pub timings: Timings,
}

#[derive(Clone, Debug, PartialEq)]
pub enum GenerateError {
    EmptyPrompt,
    BadSampler(&'static str),
    Forward(ForwardError),
}

impl core::fmt::Display for GenerateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GenerateError::EmptyPrompt => write!(f, "empty prompt"),
            GenerateError::BadSampler(w) => write!(f, "bad sampler settings: {w}"),
            GenerateError::Forward(e) => write!(f, "{e}"),
        }
    }
}

/// Holds back text that might be the start of a stop string.
struct StopFilter<'p> {
    stops: &'p [String],
    pending: String,
}

impl StopFilter<'_> {
    /// Adds text; returns (text safe to emit, stop string found).
    fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        let first_hit = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = first_hit {
            let out = String::from(&self.pending[..at]);
            self.pending.clear();
            return (out, true);
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        let mut keep = 0;
        for s in self.stops {
            for (i, _) in self.pending.char_indices() {
                let suffix = &self.pending[i..];
                if suffix.len() < s.len() && s.starts_with(suffix) {
                    keep = keep.max(suffix.len());
                    break;
                }
            }
        }
        let cut = self.pending.len() - keep;
        let out = String::from(&self.pending[..cut]);
        self.pending.drain(..cut);
        (out, false)
    }
}

/// Everything needed to run a model.
pub struct Engine<'m, 'a> {
    pub model: &'m Model<'a>,
    pub kernels: &'m Kernels,
    pub exec: &'m dyn Executor,
}

impl Engine<'_, '_> {
    /// Generates a continuation of `prompt` (token ids, starting at position 0 of `state`).
    /// `on_token(Some(id), text)` is called for every generated token with the text it
    /// completes (possibly empty while a character or a potential stop string is incomplete);
    /// a last `on_token(None, text)` flushes held-back text at the end, if there is any.
    pub fn generate(
        &self,
        state: &mut State,
        prompt: &[u32],
        params: &GenerateParams,
        clock: fn() -> u64,
        cancel: &dyn Fn() -> bool,
        on_token: &mut dyn FnMut(Option<u32>, &str),
    ) -> Result<Generation, GenerateError> {
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        params.sampler.check().map_err(GenerateError::BadSampler)?;
        let tok = &self.model.tokenizer;
        let mut sampler = Sampler::new(params.sampler.clone());
        let mut timings = Timings {
            prompt_tokens: prompt.len(),
            ..Timings::default()
        };
        let mut history: Vec<u32> = prompt.to_vec();
        let mut generated = Vec::new();
        let mut text = String::new();
        let mut decoder = StreamDecoder::new();
        let mut filter = StopFilter {
            stops: &params.stop_strings,
            pending: String::new(),
        };

        if prompt.len() > state.max_seq() {
            return Err(GenerateError::Forward(ForwardError::ContextFull {
                needed: prompt.len(),
                capacity: state.max_seq(),
            }));
        }
        let t0 = clock();
        // The prompt goes in one state batch at a time, with a cancellation check between
        // batches: a long prompt must not hold the caller (and, in the kernel, every other
        // client) for its whole length.
        let mut logits = Vec::new();
        let mut done = 0;
        for chunk in prompt.chunks(state.batch()) {
            if done > 0 && cancel() {
                timings.prefill_ns = clock().saturating_sub(t0);
                return Ok(Generation {
                    tokens: Vec::new(),
                    text: String::new(),
                    stop: StopReason::Cancelled,
                    timings,
                });
            }
            let last = done + chunk.len() == prompt.len();
            let which = if last { Logits::Last } else { Logits::None };
            let out = forward(
                self.model,
                state,
                chunk,
                done,
                which,
                self.kernels,
                self.exec,
            )
            .map_err(GenerateError::Forward)?;
            if last {
                logits = out.to_vec();
            }
            done += chunk.len();
        }
        timings.prefill_ns = clock().saturating_sub(t0);
        let mut pos = prompt.len();
        let mut prev = prompt.last().copied();

        let stop = loop {
            if cancel() {
                break StopReason::Cancelled;
            }
            if generated.len() >= params.max_tokens {
                break StopReason::MaxTokens;
            }
            let t_step = clock();
            let next = sampler.sample(&mut logits, &history);
            if generated.is_empty() {
                timings.time_to_first_token_ns = clock().saturating_sub(t0);
            }
            if tok.is_eos(next) {
                break StopReason::Eos;
            }
            history.push(next);
            generated.push(next);
            let piece = decoder.push(tok.decode_token(prev, next));
            prev = Some(next);
            let (emit, hit) = filter.push(piece);
            text.push_str(&emit);
            on_token(Some(next), &emit);
            if hit {
                break StopReason::StopString;
            }
            if generated.len() >= params.max_tokens {
                break StopReason::MaxTokens;
            }
            if pos >= state.max_seq() {
                break StopReason::ContextFull;
            }
            let step = forward(
                self.model,
                state,
                &[next],
                pos,
                Logits::Last,
                self.kernels,
                self.exec,
            )
            .map_err(GenerateError::Forward)?;
            logits.copy_from_slice(step);
            pos += 1;
            timings.decode_tokens += 1;
            timings.decode_ns += clock().saturating_sub(t_step);
        };
        if stop != StopReason::StopString {
            let rest = String::from(decoder.finish());
            let (mut emit, _) = filter.push(&rest);
            emit.push_str(&filter.pending);
            if !emit.is_empty() {
                text.push_str(&emit);
                on_token(None, &emit);
            }
        }
        timings.generated_tokens = generated.len();
        Ok(Generation {
            tokens: generated,
            text,
            stop,
            timings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn stop_filter_holds_back_prefixes() {
        let stops = ["<end>".to_string()];
        let mut f = StopFilter {
            stops: &stops,
            pending: String::new(),
        };
        assert_eq!(f.push("hello <"), ("hello ".to_string(), false));
        assert_eq!(f.push("en"), (String::new(), false));
        assert_eq!(f.push("x"), ("<enx".to_string(), false));
        assert_eq!(f.push("a<end>b"), ("a".to_string(), true));
    }
}
