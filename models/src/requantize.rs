//! Re-quantising a loaded model to a target quant type, optionally weighted by activation
//! statistics from a calibration run (importance-weighted rounding, as llama.cpp's imatrix).
//! Every converter ends here: it first produces an exact model (f32, or the source blocks),
//! then this writes the target.

use inference::exec::Executor;
use inference::format::{self, ModelWriter};
use inference::kernels::Kernels;
use inference::model::Matrix;
use inference::quant::{dequantize_row, QuantType};
use inference::{Engine, GenerateParams, Model, SamplerConfig, State};

use crate::calibration::{ActivationStats, LayerStats};
use crate::gptq::gptq_quantize;
use crate::quantize::quantize_matrix;
use crate::{ConvertError, Quant};

/// Calibration text the model writes itself: `count` samples at temperature 1 from BOS (or
/// from `prompt` for models without BOS), `len` tokens each, seeds 1..=count.
pub fn self_generated_sequences(
    model: &Model,
    prompt: &str,
    count: usize,
    len: usize,
    kernels: &Kernels,
    exec: &dyn Executor,
) -> Vec<Vec<u32>> {
    let engine = Engine {
        model,
        kernels,
        exec,
    };
    let mut prompt_ids = model.tokenizer.encode(prompt, false);
    if prompt_ids.is_empty() {
        prompt_ids = model.tokenizer.bos().into_iter().collect();
    }
    let mut out = Vec::new();
    for seed in 1..=count as u64 {
        let mut state = State::new(&model.config, len + prompt_ids.len(), 64);
        let params = GenerateParams {
            max_tokens: len,
            sampler: SamplerConfig {
                temperature: 1.0,
                seed,
                ..SamplerConfig::default()
            },
            ..GenerateParams::default()
        };
        if let Ok(g) = engine.generate(
            &mut state,
            &prompt_ids,
            &params,
            || 0,
            &|| false,
            &mut |_, _| {},
        ) {
            let mut seq = prompt_ids.clone();
            seq.extend(g.tokens);
            out.push(seq);
        }
    }
    out
}

fn mean(v: &[f32], n: usize) -> Vec<f32> {
    v.iter().map(|x| x / n.max(1) as f32).collect()
}

fn dequantize(m: &Matrix) -> Vec<f32> {
    let mut v = vec![0.0f32; m.rows * m.cols];
    if m.cols > 0 {
        for (r, dst) in v.chunks_exact_mut(m.cols).enumerate() {
            dequantize_row(m.qtype, m.row(r), dst);
        }
    }
    v
}

fn add(
    w: &mut ModelWriter,
    name: &str,
    m: &Matrix,
    target: QuantType,
    importance: Option<&[f32]>,
    inputs: Option<&[f32]>,
) -> Result<(), ConvertError> {
    let four_bit = matches!(target, QuantType::Q4_0 | QuantType::Q4_1);
    if m.qtype == target {
        // Same layout: keep the blocks bit for bit (e.g. the GGUF's Q4_1 matrices).
        w.add_matrix_raw(name, target, m.rows, m.cols, m.data.to_vec())?;
    } else if let (true, Some(x)) = (four_bit, inputs.filter(|x| !x.is_empty())) {
        let v = dequantize(m);
        w.add_matrix_raw(
            name,
            target,
            m.rows,
            m.cols,
            gptq_quantize(target, m.rows, m.cols, &v, x),
        )?;
    } else {
        let v = dequantize(m);
        w.add_matrix_raw(
            name,
            target,
            m.rows,
            m.cols,
            quantize_matrix(target, m.rows, m.cols, &v, importance),
        )?;
    }
    Ok(())
}

/// Writes `model` with its matrices at `quant`'s mix (`Quant::tensor_type`: which tensors
/// keep 8 bits). Matrices already at their target type are copied unchanged.
pub fn requantize(
    model: &Model,
    quant: Quant,
    stats: Option<&ActivationStats>,
) -> Result<Vec<u8>, ConvertError> {
    let n_layers = model.config.n_layers;
    requantize_mixed(model, stats, &|m, l| quant.tensor_type(m, l, n_layers))
}

/// As `requantize`, with the type of every matrix chosen by `type_of(matrix, layer)`
/// (`matrix`: a `format` tensor name for the global ones, `wq`..`w3` with `Some(layer)`).
pub fn requantize_mixed(
    model: &Model,
    stats: Option<&ActivationStats>,
    type_of: &dyn Fn(&str, Option<usize>) -> QuantType,
) -> Result<Vec<u8>, ConvertError> {
    let c = &model.config;
    let wts = &model.weights;
    let mut w = ModelWriter::new(c);
    let n = stats.map_or(1, |s| s.tokens);
    let cls_imp = stats.map(|s| mean(&s.classifier_in, n));
    let emb_imp = if c.tied_classifier {
        cls_imp.as_deref()
    } else {
        None
    };
    let cls_rows = stats.map(|s| s.classifier_rows.as_slice());
    let emb_rows = if c.tied_classifier { cls_rows } else { None };
    let emb_q = type_of(format::T_TOK_EMBD, None);
    add(
        &mut w,
        format::T_TOK_EMBD,
        &wts.tok_embeddings,
        emb_q,
        emb_imp,
        emb_rows,
    )?;
    if let Some(out) = &wts.output {
        add(
            &mut w,
            format::T_OUTPUT,
            out,
            type_of(format::T_OUTPUT, None),
            cls_imp.as_deref(),
            cls_rows,
        )?;
    }
    w.add_vector(format::T_NORM, &wts.norm)?;
    for (l, lw) in wts.layers.iter().enumerate() {
        let ls = stats.map(|s| &s.layers[l]);
        let imp = |f: fn(&LayerStats) -> &Vec<f32>| ls.map(|s| mean(f(s), n));
        let attn = imp(|s| &s.attn_in);
        let wo = imp(|s| &s.wo_in);
        let ffn = imp(|s| &s.ffn_in);
        let w2 = imp(|s| &s.w2_in);
        let rows = |f: fn(&LayerStats) -> &Vec<f32>| ls.map(|s| f(s).as_slice());
        let (attn_x, wo_x) = (rows(|s| &s.attn_rows), rows(|s| &s.wo_rows));
        let (ffn_x, w2_x) = (rows(|s| &s.ffn_rows), rows(|s| &s.w2_rows));
        let name = |s: &str| format::layer_tensor(l, s);
        let mq = |m: &str| type_of(m, Some(l));
        w.add_vector(&name("attention_norm"), &lw.attention_norm)?;
        w.add_vector(&name("ffn_norm"), &lw.ffn_norm)?;
        add(
            &mut w,
            &name("wq"),
            &lw.wq,
            mq("wq"),
            attn.as_deref(),
            attn_x,
        )?;
        add(
            &mut w,
            &name("wk"),
            &lw.wk,
            mq("wk"),
            attn.as_deref(),
            attn_x,
        )?;
        add(
            &mut w,
            &name("wv"),
            &lw.wv,
            mq("wv"),
            attn.as_deref(),
            attn_x,
        )?;
        add(&mut w, &name("wo"), &lw.wo, mq("wo"), wo.as_deref(), wo_x)?;
        add(&mut w, &name("w1"), &lw.w1, mq("w1"), ffn.as_deref(), ffn_x)?;
        add(&mut w, &name("w2"), &lw.w2, mq("w2"), w2.as_deref(), w2_x)?;
        add(&mut w, &name("w3"), &lw.w3, mq("w3"), ffn.as_deref(), ffn_x)?;
    }
    w.set_tokenizer(model.tokenizer.vocab())?;
    let meta = [
        (format::KEY_CHAT_TEMPLATE, &model.chat_template),
        (format::KEY_CHAT_SYSTEM, &model.default_system),
        (format::KEY_NAME, &model.name),
        (format::KEY_SOURCE, &model.source),
    ];
    for (k, v) in meta {
        if let Some(v) = v {
            w.set_meta(k, v);
        }
    }
    if let Some(s) = stats {
        let how = if s.keep_inputs {
            "gptq"
        } else {
            "activation-weighted"
        };
        w.set_meta("quant.calibration", how);
    }
    Ok(w.finish())
}
