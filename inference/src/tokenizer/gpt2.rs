//! GPT-2 byte-level BPE (SmolLM2). Tokens are stored as raw bytes (the converter undoes the
//! GPT-2 byte-to-unicode alphabet), so encoding starts from one token per byte and applies
//! merges lowest rank first within each pre-token (the merge queue of `merge.rs`).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::merge::{rank_priority, EncodeWork, Merger};
use super::pretokenize::pretokenize;
use super::{TokenizerError, Vocab};
use crate::format::token_type;

#[derive(Clone, Debug)]
pub struct Gpt2Tokenizer {
    pub(super) vocab: Vocab,
    /// Token of each single byte; `NO_TOKEN` for bytes the vocabulary lacks (SmolLM2 has
    /// 235 of the 256): such a byte never merges and is dropped, as llama.cpp does.
    byte_token: [u32; 256],
    /// (left << 32 | right) -> (rank, merged token).
    merges: BTreeMap<u64, (u32, u32)>,
    /// Control / user-defined tokens recognised in text when `special` is on, longest first.
    specials: Vec<u32>,
    /// Whether some special token starts with this byte (most text positions start none).
    special_first_byte: [bool; 256],
    /// Bytes of the longest token, ordinary or special (at least 1).
    longest: usize,
}

const NO_TOKEN: u32 = u32::MAX;

fn is_special(ty: u8) -> bool {
    ty == token_type::CONTROL || ty == token_type::USER_DEFINED
}

impl Gpt2Tokenizer {
    pub(super) fn new(vocab: Vocab) -> Result<Self, TokenizerError> {
        let n = vocab.tokens.len() as u32;
        // Ordinary tokens sorted by bytes, to find merge results and byte tokens.
        let mut sorted: Vec<u32> = (0..n)
            .filter(|&i| !is_special(vocab.types[i as usize]))
            .collect();
        sorted.sort_by(|&a, &b| vocab.tokens[a as usize].cmp(&vocab.tokens[b as usize]));
        let lookup = |bytes: &[u8]| {
            sorted
                .binary_search_by(|&id| vocab.tokens[id as usize].as_slice().cmp(bytes))
                .ok()
                .map(|i| sorted[i])
        };
        let mut byte_token = [NO_TOKEN; 256];
        for (b, slot) in byte_token.iter_mut().enumerate() {
            if let Some(id) = lookup(&[b as u8]) {
                *slot = id;
            }
        }
        if byte_token.iter().all(|&t| t == NO_TOKEN) {
            return Err(TokenizerError::MissingByteToken(0));
        }
        let mut merges = BTreeMap::new();
        let mut joined = Vec::new();
        for (rank, &(a, b)) in vocab.merges.iter().enumerate() {
            if a >= n || b >= n {
                return Err(TokenizerError::IdOutOfRange(a.max(b)));
            }
            joined.clear();
            joined.extend_from_slice(&vocab.tokens[a as usize]);
            joined.extend_from_slice(&vocab.tokens[b as usize]);
            let merged = lookup(&joined).ok_or(TokenizerError::MergeWithoutToken(rank as u32))?;
            // The first (lowest-rank) occurrence of a pair wins.
            merges
                .entry(((a as u64) << 32) | b as u64)
                .or_insert((rank as u32, merged));
        }
        let mut specials: Vec<u32> = (0..n)
            .filter(|&i| {
                is_special(vocab.types[i as usize]) && !vocab.tokens[i as usize].is_empty()
            })
            .collect();
        specials.sort_by_key(|&i| core::cmp::Reverse(vocab.tokens[i as usize].len()));
        let mut special_first_byte = [false; 256];
        for &id in &specials {
            special_first_byte[vocab.tokens[id as usize][0] as usize] = true;
        }
        let longest = vocab.tokens.iter().map(Vec::len).max().unwrap_or(0).max(1);
        Ok(Gpt2Tokenizer {
            vocab,
            byte_token,
            merges,
            specials,
            special_first_byte,
            longest,
        })
    }

    /// Each token covers at most `longest` bytes of text; bytes without a token are dropped
    /// (counting them as dropped even where a special token covers them only lowers the bound).
    pub(super) fn min_tokens(&self, text: &str) -> usize {
        let kept = text
            .bytes()
            .filter(|&b| self.byte_token[b as usize] != NO_TOKEN)
            .count();
        kept.div_ceil(self.longest)
    }

    pub(super) fn encode_into(
        &self,
        text: &str,
        special: bool,
        out: &mut Vec<u32>,
        work: &mut EncodeWork,
    ) {
        let mut merger = Merger::default();
        if !special || self.specials.is_empty() {
            self.encode_plain(text, out, &mut merger, work);
            return;
        }
        let bytes = text.as_bytes();
        let mut plain_start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let hit = self.special_first_byte[bytes[i] as usize]
                .then(|| {
                    self.specials.iter().copied().find(|&id| {
                        let t = &self.vocab.tokens[id as usize];
                        bytes[i..].starts_with(t)
                    })
                })
                .flatten();
            match hit {
                Some(id) => {
                    // Special tokens are ASCII-delimited in practice; slicing at a non
                    // character boundary cannot happen because `t` is valid UTF-8 that
                    // matched at byte i of a str, but guard anyway.
                    if let Some(seg) = text.get(plain_start..i) {
                        self.encode_plain(seg, out, &mut merger, work);
                    }
                    out.push(id);
                    i += self.vocab.tokens[id as usize].len();
                    plain_start = i;
                }
                None => i += 1,
            }
        }
        if let Some(seg) = text.get(plain_start..) {
            self.encode_plain(seg, out, &mut merger, work);
        }
    }

    fn encode_plain(
        &self,
        text: &str,
        out: &mut Vec<u32>,
        merger: &mut Merger,
        work: &mut EncodeWork,
    ) {
        let mut syms: Vec<u32> = Vec::new();
        let pair = |a: u32, b: u32| {
            let &(rank, merged) = self.merges.get(&(((a as u64) << 32) | b as u64))?;
            Some((rank_priority(rank), merged))
        };
        for piece in pretokenize(text) {
            syms.clear();
            syms.extend(piece.bytes().map(|b| self.byte_token[b as usize]));
            merger.merge(&mut syms, pair, work);
            out.extend(syms.iter().copied().filter(|&t| t != NO_TOKEN));
        }
    }

    pub(super) fn decode_token(&self, id: u32) -> &[u8] {
        match self.vocab.types.get(id as usize) {
            None | Some(&token_type::CONTROL) => &[],
            Some(_) => &self.vocab.tokens[id as usize],
        }
    }
}
