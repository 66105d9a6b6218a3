//! llama2.c-style sentencepiece BPE (run.c `encode`/`decode` semantics, tok512.bin).
//!
//! Encoding: a dummy-prefix space for non-empty text, one token per UTF-8 character (or its
//! bytes as `<0xHH>` fallback tokens, id = byte + 3), then repeatedly merge the adjacent pair
//! whose concatenation is a token with the highest score (first such pair on ties).

use alloc::vec::Vec;

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
        Ok(SentencePieceTokenizer {
            vocab,
            sorted,
            byte_values,
        })
    }

    fn lookup(&self, piece: &[u8]) -> Option<u32> {
        let t = &self.vocab.tokens;
        self.sorted
            .binary_search_by(|&id| t[id as usize].as_slice().cmp(piece))
            .ok()
            .map(|i| self.sorted[i])
    }

    pub(super) fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        let start = out.len();
        if !text.is_empty() {
            if let Some(space) = self.lookup(b" ") {
                out.push(space);
            }
        }
        let n = self.vocab.tokens.len() as u32;
        let mut buf = [0u8; 4];
        for ch in text.chars() {
            let s = ch.encode_utf8(&mut buf);
            match self.lookup(s.as_bytes()) {
                Some(id) => out.push(id),
                None => {
                    for &b in s.as_bytes() {
                        let id = b as u32 + BYTE_FALLBACK_BASE;
                        // A vocabulary without byte fallback maps the byte to <unk> (0).
                        out.push(if id < n { id } else { 0 });
                    }
                }
            }
        }
        let toks = &mut out[start..];
        let mut len = toks.len();
        let mut joined = Vec::new();
        loop {
            let mut best: Option<(f32, usize, u32)> = None;
            for i in 0..len.saturating_sub(1) {
                joined.clear();
                joined.extend_from_slice(&self.vocab.tokens[toks[i] as usize]);
                joined.extend_from_slice(&self.vocab.tokens[toks[i + 1] as usize]);
                if let Some(id) = self.lookup(&joined) {
                    let score = self.vocab.scores[id as usize];
                    if best.is_none_or(|(s, _, _)| score > s) {
                        best = Some((score, i, id));
                    }
                }
            }
            let Some((_, i, id)) = best else { break };
            toks[i] = id;
            toks.copy_within(i + 2..len, i + 1);
            len -= 1;
        }
        out.truncate(start + len);
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
