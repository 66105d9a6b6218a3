//! Tokenizers: llama2.c/sentencepiece-style BPE (stories260K's tok512) and GPT-2 byte-level
//! BPE (SmolLM2). Both keep every token as raw bytes; `StreamDecoder` turns a token stream into
//! valid UTF-8 text even when a token ends in the middle of a character.

mod gpt2;
mod merge;
mod pretokenize;
mod sentencepiece;
mod unicode_letters;

use alloc::string::String;
use alloc::vec::Vec;

use crate::format::token_type;
pub use gpt2::Gpt2Tokenizer;
pub use merge::EncodeWork;
pub use pretokenize::pretokenize;
pub use sentencepiece::SentencePieceTokenizer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// llama2.c `tokenizer.bin` semantics: score-driven pair merges, `<0xHH>` byte fallback,
    /// dummy-prefix space.
    SentencePiece,
    /// GPT-2 byte-level BPE: pre-tokenisation, then rank-ordered merges.
    Gpt2,
}

/// Everything a tokenizer needs, as stored in the model file.
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    pub kind: TokenizerKind,
    /// Token id -> raw bytes (GPT-2 tokens are stored already mapped back from the
    /// byte-to-unicode alphabet; control tokens hold their literal text).
    pub tokens: Vec<Vec<u8>>,
    /// Merge scores (sentencepiece), empty for GPT-2.
    pub scores: Vec<f32>,
    /// One `format::token_type` code per token.
    pub types: Vec<u8>,
    /// GPT-2 merges in rank order, as (left id, right id).
    pub merges: Vec<(u32, u32)>,
    pub bos: Option<u32>,
    /// Tokens that end generation.
    pub eos: Vec<u32>,
    /// Prepend BOS when encoding a prompt.
    pub add_bos: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerError {
    EmptyVocab,
    /// scores/types arrays do not have one entry per token.
    LengthMismatch(&'static str),
    /// A special id (bos/eos/merge operand) is outside the vocabulary.
    IdOutOfRange(u32),
    /// A GPT-2 merge whose concatenation is not a token.
    MergeWithoutToken(u32),
    /// A GPT-2 vocabulary lacks the single-byte token for this byte.
    MissingByteToken(u8),
}

impl core::fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TokenizerError::EmptyVocab => write!(f, "empty vocabulary"),
            TokenizerError::LengthMismatch(w) => write!(f, "{w} has the wrong length"),
            TokenizerError::IdOutOfRange(id) => write!(f, "token id {id} out of range"),
            TokenizerError::MergeWithoutToken(r) => {
                write!(f, "merge rank {r} produces no vocabulary token")
            }
            TokenizerError::MissingByteToken(b) => write!(f, "no token for byte 0x{b:02x}"),
        }
    }
}

/// A ready-to-use tokenizer.
#[derive(Clone, Debug)]
// One per model, never moved in hot paths: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Tokenizer {
    SentencePiece(SentencePieceTokenizer),
    Gpt2(Gpt2Tokenizer),
}

impl Tokenizer {
    pub fn new(v: Vocab) -> Result<Tokenizer, TokenizerError> {
        if v.tokens.is_empty() {
            return Err(TokenizerError::EmptyVocab);
        }
        if v.types.len() != v.tokens.len() {
            return Err(TokenizerError::LengthMismatch("token_types"));
        }
        let n = v.tokens.len() as u32;
        for &id in v.bos.iter().chain(v.eos.iter()) {
            if id >= n {
                return Err(TokenizerError::IdOutOfRange(id));
            }
        }
        Ok(match v.kind {
            TokenizerKind::SentencePiece => {
                Tokenizer::SentencePiece(SentencePieceTokenizer::new(v)?)
            }
            TokenizerKind::Gpt2 => Tokenizer::Gpt2(Gpt2Tokenizer::new(v)?),
        })
    }

    pub fn vocab(&self) -> &Vocab {
        match self {
            Tokenizer::SentencePiece(t) => &t.vocab,
            Tokenizer::Gpt2(t) => &t.vocab,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab().tokens.len()
    }

    pub fn bos(&self) -> Option<u32> {
        self.vocab().bos
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.vocab().eos.contains(&id)
    }

    /// Encodes text. BOS is prepended when the vocabulary says so. With `special`, the literal
    /// text of control tokens (e.g. `<|im_start|>`) becomes those tokens; without it, such text
    /// is tokenised as plain text.
    pub fn encode(&self, text: &str, special: bool) -> Vec<u32> {
        self.encode_counted(text, special, &mut EncodeWork::default())
    }

    /// As `encode`, adding the work it took to `work` (O(n log n) in the text's length).
    pub fn encode_counted(&self, text: &str, special: bool, work: &mut EncodeWork) -> Vec<u32> {
        let mut out: Vec<u32> = self.prompt_start().into_iter().collect();
        self.encode_into(text, special, &mut out, work);
        out
    }

    /// Appends the tokens of `text` to `out`, without BOS (a fragment of a prompt).
    pub fn encode_into(
        &self,
        text: &str,
        special: bool,
        out: &mut Vec<u32>,
        work: &mut EncodeWork,
    ) {
        match self {
            Tokenizer::SentencePiece(t) => t.encode_into(text, out, work),
            Tokenizer::Gpt2(t) => t.encode_into(text, special, out, work),
        }
    }

    /// The token a prompt starts with: BOS, when the vocabulary asks for it.
    pub fn prompt_start(&self) -> Option<u32> {
        let v = self.vocab();
        v.bos.filter(|_| v.add_bos)
    }

    /// A lower bound on how many tokens `encode_into(text, ..)` appends, from one pass over
    /// the bytes, so a prompt too long for the context is refused before any merging. Every
    /// token covers at most the longest token's length of text (a byte-fallback or unknown
    /// token covers one byte, a special token its own text), and only bytes the vocabulary
    /// drops (GPT-2 bytes without a token) produce no token at all.
    pub fn min_tokens(&self, text: &str) -> usize {
        match self {
            Tokenizer::SentencePiece(t) => t.min_tokens(text),
            Tokenizer::Gpt2(t) => t.min_tokens(text),
        }
    }

    /// Raw bytes that token `id` contributes to the text when it follows `prev`. Control
    /// tokens render as nothing; unknown ids render as nothing.
    pub fn decode_token(&self, prev: Option<u32>, id: u32) -> &[u8] {
        match self {
            Tokenizer::SentencePiece(t) => t.decode_token(prev, id),
            Tokenizer::Gpt2(t) => t.decode_token(id),
        }
    }

    /// Decodes a whole sequence to text (invalid UTF-8 becomes U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut d = StreamDecoder::new();
        let mut s = String::new();
        let mut prev = None;
        for &id in ids {
            s.push_str(d.push(self.decode_token(prev, id)));
            prev = Some(id);
        }
        s.push_str(d.finish());
        s
    }

    /// Literal text of a control token, e.g. `<|im_end|>`, if it exists.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        let v = self.vocab();
        v.tokens
            .iter()
            .position(|t| t.as_slice() == text.as_bytes())
            .map(|i| i as u32)
    }

    pub fn is_control(&self, id: u32) -> bool {
        matches!(
            self.vocab().types.get(id as usize),
            Some(&token_type::CONTROL)
        )
    }
}

/// Turns a stream of byte pieces into UTF-8 text: bytes of an incomplete trailing character
/// are held back until the next piece completes it; invalid sequences become U+FFFD.
#[derive(Default, Debug, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    out: String,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes and returns the text that became complete.
    pub fn push(&mut self, bytes: &[u8]) -> &str {
        self.out.clear();
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            match core::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    self.out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Safe: from_utf8 just validated this prefix.
                    let s = core::str::from_utf8(&self.pending[start..start + valid])
                        .unwrap_or_default();
                    self.out.push_str(s);
                    start += valid;
                    match e.error_len() {
                        // Incomplete character at the end: keep it for the next push.
                        None => break,
                        Some(bad) => {
                            self.out.push('\u{FFFD}');
                            start += bad;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        &self.out
    }

    /// Flushes held-back bytes (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> &str {
        self.out.clear();
        if !self.pending.is_empty() {
            self.out.push('\u{FFFD}');
            self.pending.clear();
        }
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_decoder_holds_split_characters() {
        let mut d = StreamDecoder::new();
        let bytes = "é€😀".as_bytes();
        let mut s = String::new();
        for b in bytes {
            s.push_str(d.push(core::slice::from_ref(b)));
        }
        assert_eq!(s, "é€😀");
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn stream_decoder_replaces_invalid_bytes() {
        let mut d = StreamDecoder::new();
        assert_eq!(d.push(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(d.push(b"\xe2\x82"), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}
