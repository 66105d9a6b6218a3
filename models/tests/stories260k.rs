//! stories260K end to end: llama2.c checkpoint -> our format -> greedy generation must equal
//! llama2.c's own test expectation byte for byte (f32); quantised models must agree with f32
//! on the teacher-forced top-1 token at >= 95% of positions.

use inference::exec::Inline;
use inference::kernels::{CpuFeatures, Kernels};
use inference::{forward, Engine, GenerateParams, Logits, Model, State, StopReason};
use mk_models::{llama2c, Quant};

const CKPT: &[u8] = include_bytes!("../stories260k/stories260K.bin");
const TOK: &[u8] = include_bytes!("../stories260k/tok512.bin");
const EXPECTED: &str = include_str!("../stories260k/expected-greedy-200.txt");

fn no_clock() -> u64 {
    0
}

fn greedy(model: &Model, kernels: &Kernels, positions: usize) -> (Vec<u32>, String, StopReason) {
    let mut state = State::new(&model.config, positions, 64);
    let engine = Engine {
        model,
        kernels,
        exec: &Inline,
    };
    let prompt = model.tokenizer.encode("", false);
    assert_eq!(prompt, [1], "empty prompt is just BOS");
    let params = GenerateParams {
        max_tokens: positions,
        ..GenerateParams::default()
    };
    let mut streamed = String::new();
    let g = engine
        .generate(
            &mut state,
            &prompt,
            &params,
            no_clock,
            &|| false,
            &mut |_, t| streamed.push_str(t),
        )
        .expect("generation");
    assert_eq!(streamed, g.text);
    (g.tokens, g.text, g.stop)
}

#[test]
fn f32_greedy_200_matches_llama2c() {
    let bytes = llama2c::convert(CKPT, TOK, Quant::F32).unwrap();
    let model = Model::load(&bytes).unwrap();
    let kernels = Kernels::select(&CpuFeatures::default());
    let (_, text, _) = greedy(&model, &kernels, 200);
    assert_eq!(text, EXPECTED);
}
