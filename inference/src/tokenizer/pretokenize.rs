//! SmolLM2 ("smollm" pre-tokeniser) splitting, written out by hand because no_std has no
//! regex engine. Two passes, as llama.cpp applies its regex list in order:
//!
//! 1. `\p{N}`: every numeric character becomes a piece of its own; the text between them
//!    is kept as pieces too.
//! 2. On each piece, the GPT-2 pattern, alternatives tried in order (leftmost-first):
//!    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//!
//! `\p{L}` uses the generated letter table, `\p{N}` is `char::is_numeric` (Nd, Nl, No) and
//! `\s` is `char::is_whitespace` (White_Space), matching the regex classes.

use alloc::vec::Vec;

use super::unicode_letters::LETTER_RANGES;

pub(crate) fn is_letter(c: char) -> bool {
    let cp = c as u32;
    if cp < 0x80 {
        return c.is_ascii_alphabetic();
    }
    LETTER_RANGES
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                core::cmp::Ordering::Less
            } else if lo > cp {
                core::cmp::Ordering::Greater
            } else {
                core::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

fn is_number(c: char) -> bool {
    c.is_numeric()
}

fn is_other(c: char) -> bool {
    !c.is_whitespace() && !is_letter(c) && !is_number(c)
}

/// Splits `text` into pre-tokens (byte ranges of `text`, in order, covering all of it).
pub fn pretokenize(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut piece_start = 0;
    for (i, c) in text.char_indices() {
        if is_number(c) {
            if piece_start < i {
                gpt2_split(&text[piece_start..i], &mut out);
            }
            out.push(&text[i..i + c.len_utf8()]);
            piece_start = i + c.len_utf8();
        }
    }
    if piece_start < text.len() {
        gpt2_split(&text[piece_start..], &mut out);
    }
    out
}

/// Length in bytes of the run of characters satisfying `pred` at the start of `s`.
fn run_len(s: &str, pred: impl Fn(char) -> bool) -> usize {
    s.char_indices()
        .find(|&(_, c)| !pred(c))
        .map_or(s.len(), |(i, _)| i)
}

fn gpt2_split<'a>(text: &'a str, out: &mut Vec<&'a str>) {
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        let len = match_at(rest);
        out.push(&rest[..len]);
        pos += len;
    }
}

/// Length of the GPT-2 pattern match at the start of `s` (never 0 for non-empty `s`).
fn match_at(s: &str) -> usize {
    let mut chars = s.chars();
    let Some(c) = chars.next() else { return 0 };
    let next = chars.next();

    // 's 't 're 've 'm 'll 'd
    if c == '\'' {
        let r = &s[1..];
        for suffix in ["s", "t", "re", "ve", "m", "ll", "d"] {
            if r.starts_with(suffix) {
                return 1 + suffix.len();
            }
        }
    }
    // Optional single space, then a run of one class.
    let classes: [fn(char) -> bool; 3] = [is_letter, is_number, is_other];
    for class in classes {
        if class(c) {
            return run_len(s, class);
        }
        if c == ' ' && next.is_some_and(class) {
            return 1 + run_len(&s[1..], class);
        }
    }
    // Whitespace: \s+(?!\S) takes the run but leaves the last whitespace character for the
    // next token when the run is followed by a non-space; \s+ takes a lone one.
    let ws = run_len(s, char::is_whitespace);
    if ws == s.len() {
        return ws;
    }
    let last = s[..ws].chars().next_back().map_or(1, char::len_utf8);
    if ws > last {
        ws - last
    } else {
        ws
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_pattern_pieces() {
        assert_eq!(
            pretokenize("Hello world, it's  me!\n\nok"),
            [
                "Hello", " world", ",", " it", "'s", " ", " me", "!", "
", "
", "ok"
            ]
            .to_vec()
        );
    }

    #[test]
    fn digits_split_one_by_one() {
        assert_eq!(
            pretokenize("abc 123x"),
            ["abc", " ", "1", "2", "3", "x"].to_vec()
        );
    }

    #[test]
    fn whitespace_runs() {
        assert_eq!(pretokenize("a   b"), ["a", "  ", " b"].to_vec());
        assert_eq!(pretokenize("a \n"), ["a", " \n"].to_vec());
        assert_eq!(pretokenize("\tb"), ["\t", "b"].to_vec());
        assert_eq!(pretokenize("x  "), ["x", "  "].to_vec());
    }

    #[test]
    fn unicode_classes() {
        assert!(is_letter('é') && is_letter('中') && is_letter('ß'));
        assert!(!is_letter('1') && !is_letter('!') && !is_letter('\u{0301}'));
        assert_eq!(pretokenize("café ½"), ["café", " ", "½"].to_vec());
        assert_eq!(pretokenize("don'T"), ["don", "'", "T"].to_vec());
    }
}
