//! Measurement tool behind docs/BENCHMARKS.md "Accuracy" (quantisation mixes): teacher-forced
//! top-1 agreement with f32 of 4-bit models in which chosen layer matrices keep Q8_0.
//!
//! ```text
//! cargo run --profile test -p mk-models --example mix_sweep -- stories
//! cargo run --profile test -p mk-models --example mix_sweep -- smollm2 SmolLM2-135M-Instruct.Q4_1.gguf
//! ```
//! Env: `SPECS` mixes separated by `;`, each a comma list of `layer.matrix` entries kept at Q8_0
//! (layer: index, `*`, `last`, or `mb` = llama.cpp's use_more_bits layers; matrix: `wq`..`w3`
//! joined by `+`, or `*`); the empty spec is the plain model. `QT=q4_1|both` (default q4_0).
//! `GPTQ=1` adds GPTQ to SmolLM2 (stories260K always uses it, as its converter does).
//! `MARGIN=1` lists the reference's smallest top-1 margins and which positions flip (plain mix).

use inference::exec::Inline;
use inference::kernels::{CpuFeatures, Kernels};
use inference::quant::QuantType;
use inference::sampler::argmax;
use inference::{Engine, GenerateParams, Model, State};
use mk_models::calibration::{calibrate, ActivationStats};
use mk_models::eval::{all_logits, teacher_forced, Agreement};
use mk_models::requantize::{requantize_mixed, self_generated_sequences};
use mk_models::{gguf, llama2c, Quant};

/// llama.cpp's `use_more_bits`: first and last eighth of the layers, and every third between.
fn more_bits(l: usize, n: usize) -> bool {
    l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2
}

fn keep8(spec: &str, matrix: &str, l: usize, n: usize) -> bool {
    spec.split(',').filter(|e| !e.is_empty()).any(|e| {
        let (ls, ms) = e.split_once('.').unwrap_or((e, "*"));
        let layer_ok = ls == "*"
            || (ls == "mb" && more_bits(l, n))
            || (ls == "last" && l + 1 == n)
            || ls.parse::<usize>().ok() == Some(l);
        layer_ok && (ms == "*" || ms.split('+').any(|x| x == matrix))
    })
}

struct Setup {
    name: &'static str,
    /// The f32 reference model file and the exact model the 4-bit files are made from.
    reference: Vec<u8>,
    exact: Vec<u8>,
    sequences: Vec<Vec<u32>>,
}

/// stories260K: BOS + the f32 greedy 200 tokens (as models/tests/stories260k.rs).
fn stories(k: &Kernels) -> Setup {
    let ckpt = std::fs::read("models/stories260k/stories260K.bin").expect("stories260K.bin");
    let tok = std::fs::read("models/stories260k/tok512.bin").expect("tok512.bin");
    let f = llama2c::convert_f32(&ckpt, &tok).expect("conversion");
    let m = Model::load(&f).expect("f32 model");
    let engine = Engine {
        model: &m,
        kernels: k,
        exec: &Inline,
    };
    let mut state = State::new(&m.config, 200, 64);
    let params = GenerateParams {
        max_tokens: 200,
        ..GenerateParams::default()
    };
    let g = engine
        .generate(&mut state, &[1], &params, || 0, &|| false, &mut |_, _| {})
        .expect("generation");
    let mut seq = vec![1];
    seq.extend(g.tokens);
    Setup {
        name: "stories260K",
        reference: f.clone(),
        exact: f,
        sequences: vec![seq],
    }
}

/// SmolLM2: the 4 sequences of models/tests/smollm2.rs.
fn smollm2(path: &str) -> Setup {
    let g = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let fx: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/smollm2-llamacpp.json")).expect("fixture");
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        let a = v.as_array().expect("id array");
        a.iter().map(|x| x.as_u64().expect("id") as u32).collect()
    };
    let mut first = ids(&fx["greedy_prompt_ids"]);
    first.extend(ids(&fx["greedy_ids"]));
    let mut sequences = vec![first];
    for text in [
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "The year 2024 had 365 days; π≈3.14159.",
        "def f(x):\n\treturn x**2  # comment\n",
    ] {
        sequences.push(ids(&fx["tokenize"][text]["special"]));
    }
    Setup {
        name: "SmolLM2",
        reference: gguf::convert(&g, Quant::F32).expect("f32 conversion"),
        exact: gguf::convert_exact(&g).expect("exact conversion"),
        sequences,
    }
}

/// The same calibration as the converters (llama2c.rs, gguf.rs).
fn stats(s: &Setup, exact: &Model, k: &Kernels) -> ActivationStats {
    if s.name == "stories260K" {
        let cal = self_generated_sequences(exact, "", 32, 400, k, &Inline);
        calibrate(exact, &cal, true, k, &Inline)
    } else {
        let host = Kernels::select(&mk_models::host::host_features());
        let seq = exact.tokenizer.encode(gguf::CALIBRATION_TEXT, true);
        calibrate(
            exact,
            &[seq],
            std::env::var_os("GPTQ").is_some(),
            &host,
            &Inline,
        )
    }
}

fn print_margins(s: &Setup, reference: &Model, model: &Model, k: &Kernels) {
    let v = reference.config.vocab_size;
    // (reference margin top1 - top2, flipped?)
    let mut margins = Vec::new();
    for seq in &s.sequences {
        let a = all_logits(reference, seq, k, &Inline);
        let b = all_logits(model, seq, k, &Inline);
        for (la, lb) in a.chunks_exact(v).zip(b.chunks_exact(v)) {
            let top = argmax(la) as usize;
            let second = la
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != top)
                .fold(f32::MIN, |m, (_, &x)| m.max(x));
            margins.push((la[top] - second, top != argmax(lb) as usize));
        }
    }
    margins.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (rank, (m, flip)) in margins.iter().enumerate() {
        if *flip || rank < 20 {
            println!(
                "rank {rank:3}: margin {m:.3}{}",
                if *flip { " FLIP" } else { "" }
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let k = Kernels::select(&CpuFeatures::default());
    let s = match args.first().map(String::as_str) {
        Some("smollm2") => smollm2(args.get(1).expect("path of the SmolLM2 Q4_1 GGUF")),
        _ => stories(&k),
    };
    let reference = Model::load(&s.reference).expect("reference");
    let exact = Model::load(&s.exact).expect("exact model");
    let n = exact.config.n_layers;
    let stats = stats(&s, &exact, &k);
    if std::env::var_os("MARGIN").is_some() {
        let bytes = requantize_mixed(&exact, Some(&stats), &|m, l| {
            Quant::Q4_0.tensor_type(m, l, n)
        })
        .expect("requantize");
        print_margins(&s, &reference, &Model::load(&bytes).expect("model"), &k);
        return;
    }
    let quants = match std::env::var("QT").as_deref() {
        Ok("q4_1") => vec![Quant::Q4_1],
        Ok("both") => vec![Quant::Q4_0, Quant::Q4_1],
        _ => vec![Quant::Q4_0],
    };
    let specs = std::env::var("SPECS").unwrap_or_default();
    for q in quants {
        for spec in specs.split(';') {
            let bytes = requantize_mixed(&exact, Some(&stats), &|m, l| match l {
                Some(l) if keep8(spec, m, l, n) => QuantType::Q8_0,
                _ => q.tensor_type(m, l, n),
            })
            .expect("requantize");
            let model = Model::load(&bytes).expect("model");
            let mut total = Agreement {
                positions: 0,
                top1_equal: 0,
                max_logit_error: 0.0,
            };
            for seq in &s.sequences {
                total.merge(&teacher_forced(&reference, &model, seq, &k, &Inline));
            }
            println!(
                "{} {q:?} [{spec}]: {}/{} = {:.1}%, max logit error {:.3}, {} bytes",
                s.name,
                total.top1_equal,
                total.positions,
                100.0 * total.ratio(),
                total.max_logit_error,
                bytes.len()
            );
        }
    }
}
