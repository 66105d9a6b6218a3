//! llama2.c-style sentencepiece BPE (run.c `encode`/`decode` semantics, tok512.bin).
//!
//! Encoding: a dummy-prefix space for non-empty text, one token per UTF-8 character (or its
//! bytes as `<0xHH>` fallback tokens, id = byte + 3), then repeatedly merge the adjacent pair
//! whose concatenation is a token with the highest score (first such pair on ties), through
//! the merge queue of `merge.rs`.

use alloc::vec::Vec;

use super::merge::{score_priority, EncodeWork, Merger};
use super::{TokenizerError, Vocab};
use crate::format::token_type;

/// First byte-fallback token id: `<0x00>` is id 3 in llama2.c vocabularies.
const BYTE_FALLBACK_BASE: u32 = 3;

#[derive(Clone, Debug)]
pub struct SentencePieceTokenizer {
    pub(super) vocab: Vocab,
    /// Token ids sorted by their bytes, for binary-search lookup.
    sorted: Vec<u32>,
    /// Decoded byte of each `<0xHH>` token, so decode can return a slice.
    byte_values: [u8; 256],
    /// Bytes of the longest token (at least 1).
    longest: usize,
}

impl SentencePieceTokenizer {
    pub(super) fn new(vocab: Vocab) -> Result<Self, TokenizerError> {
        if vocab.scores.len() != vocab.tokens.len() {
            return Err(TokenizerError::LengthMismatch("scores"));
        }
        let mut sorted: Vec<u32> = (0..vocab.tokens.len() as u32).collect();
        sorted.sort_by(|&a, &b| vocab.tokens[a as usize].cmp(&vocab.tokens[b as usize]));
        let mut byte_values = [0u8; 256];
        for (i, b) in byte_values.iter_mut().enumerate() {
            *b = i as u8;
        }
        let longest = vocab.tokens.iter().map(Vec::len).max().unwrap_or(0).max(1);
        Ok(SentencePieceTokenizer {
            vocab,
            sorted,
            byte_values,
            longest,
        })
    }

    fn lookup(&self, piece: &[u8]) -> Option<u32> {
        let t = &self.vocab.tokens;
        self.sorted
            .binary_search_by(|&id| t[id as usize].as_slice().cmp(piece))
            .ok()
            .map(|i| self.sorted[i])
    }

    /// Every byte of the text ends up in some token (a character's token, a byte-fallback or
    /// `<unk>` token for one byte, or a merge of those), and no token covers more text than
    /// the longest token's bytes.
    pub(super) fn min_tokens(&self, text: &str) -> usize {
        text.len().div_ceil(self.longest)
    }

    pub(super) fn encode_into(&self, text: &str, out: &mut Vec<u32>, work: &mut EncodeWork) {
        let mut syms = Vec::with_capacity(text.len() + 1);
        if !text.is_empty() {
            if let Some(space) = self.lookup(b" ") {
                syms.push(space);
            }
        }
        let n = self.vocab.tokens.len() as u32;
        let mut buf = [0u8; 4];
        for ch in text.chars() {
            let s = ch.encode_utf8(&mut buf);
            match self.lookup(s.as_bytes()) {
                Some(id) => syms.push(id),
                None => {
                    for &b in s.as_bytes() {
                        let id = b as u32 + BYTE_FALLBACK_BASE;
                        // A vocabulary without byte fallback maps the byte to <unk> (0).
                        syms.push(if id < n { id } else { 0 });
                    }
                }
            }
        }
        let mut joined = Vec::new();
        let pair = |a: u32, b: u32| {
            joined.clear();
            joined.extend_from_slice(&self.vocab.tokens[a as usize]);
            joined.extend_from_slice(&self.vocab.tokens[b as usize]);
            let id = self.lookup(&joined)?;
            Some((score_priority(self.vocab.scores[id as usize]), id))
        };
        Merger::default().merge(&mut syms, pair, work);
        out.extend_from_slice(&syms);
    }

    pub(super) fn decode_token(&self, prev: Option<u32>, id: u32) -> &[u8] {
        let Some(piece) = self.vocab.tokens.get(id as usize) else {
            return &[];
        };
        match self.vocab.types.get(id as usize) {
            Some(&token_type::CONTROL) | Some(&token_type::UNKNOWN) => return &[],
            Some(&token_type::BYTE) => {
                if let Some(b) = parse_byte_token(piece) {
                    return core::slice::from_ref(&self.byte_values[b as usize]);
                }
            }
            _ => {}
        }
        // run.c: after BOS, the leading (dummy-prefix) space of a piece is dropped.
        if prev.is_some() && prev == self.vocab.bos && piece.first() == Some(&b' ') {
            return &piece[1..];
        }
        piece
    }
}

/// `<0xHH>` -> the byte.
fn parse_byte_token(p: &[u8]) -> Option<u8> {
    if p.len() != 6 || !p.starts_with(b"<0x") || p[5] != b'>' {
        return None;
    }
    let hex = |c: u8| (c as char).to_digit(16);
    Some((hex(p[3])? * 16 + hex(p[4])?) as u8)
}
