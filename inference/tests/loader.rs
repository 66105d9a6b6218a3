//! Model file validation: a well-formed file loads; every kind of damage is a typed error,
//! never a panic.

use inference::exec::Inline;
use inference::format::{token_type, ModelWriter};
use inference::kernels::{CpuFeatures, Kernels};
use inference::quant::QuantType;
use inference::tokenizer::{TokenizerKind, Vocab};
use inference::{forward, Config, LoadError, Logits, Model, State};

fn config() -> Config {
    Config {
        dim: 16,
        hidden_dim: 40, // not a multiple of 32: exercises padded row tails
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        vocab_size: 262,
        seq_len: 32,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        tied_classifier: true,
    }
}

fn vocab(n: usize) -> Vocab {
    let mut tokens: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"<s>".to_vec(), b"</s>".to_vec()];
    let mut types = vec![
        token_type::UNKNOWN,
        token_type::CONTROL,
        token_type::CONTROL,
    ];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>").into_bytes());
        types.push(token_type::BYTE);
    }
    for t in [" ", "a", "b"] {
        tokens.push(t.as_bytes().to_vec());
        types.push(token_type::NORMAL);
    }
    tokens.truncate(n);
    types.truncate(n);
    let scores = (0..tokens.len()).map(|i| -(i as f32)).collect();
    Vocab {
        kind: TokenizerKind::SentencePiece,
        tokens,
        scores,
        types,
        merges: vec![],
        bos: Some(1),
        eos: vec![2],
        add_bos: true,
    }
}

fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32 - 0.5) * 0.5
        })
        .collect()
}

fn build(c: &Config, qt: QuantType) -> Vec<u8> {
    let mut w = ModelWriter::new(c);
    let mut seed = 1;
    let mut mat = |w: &mut ModelWriter, name: &str, rows: usize, cols: usize| {
        seed += 1;
        w.add_matrix(name, qt, rows, cols, &pseudo_random(rows * cols, seed))
            .unwrap();
    };
    mat(&mut w, "tok_embeddings", c.vocab_size, c.dim);
    for l in 0..c.n_layers {
        for s in inference::format::LAYER_MATRICES {
            let (r, cl) = inference::format::layer_matrix_shape(c, s).unwrap();
            mat(&mut w, &inference::format::layer_tensor(l, s), r, cl);
        }
        for s in inference::format::LAYER_VECTORS {
            w.add_vector(&inference::format::layer_tensor(l, s), &vec![1.0; c.dim])
                .unwrap();
        }
    }
    w.add_vector("norm", &vec![1.0; c.dim]).unwrap();
    w.set_tokenizer(&vocab(c.vocab_size)).unwrap();
    w.finish()
}

/// Replaces the JSON header using `f`, keeping the data section.
fn with_header(bytes: &[u8], f: impl Fn(&str) -> String) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let mut h = f(header.trim_end());
    while !h.len().is_multiple_of(8) {
        h.push(' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

fn load_err(bytes: &[u8]) -> LoadError {
    match Model::load(bytes) {
        Ok(_) => panic!("damaged file loaded"),
        Err(e) => e,
    }
}

#[test]
fn well_formed_models_load_and_run() {
    let k = Kernels::select(&CpuFeatures::default());
    for qt in [
        QuantType::F32,
        QuantType::Q8_0,
        QuantType::Q4_0,
        QuantType::Q4_1,
    ] {
        let bytes = build(&config(), qt);
        let m = Model::load(&bytes).unwrap();
        assert_eq!(m.config, config());
        assert_eq!(m.weights.layers[1].w2.qtype, qt);
        assert_eq!(m.weights.layers[1].w2.cols, 40);
        assert_eq!(m.tokenizer.vocab(), &vocab(262));
        let mut s = State::new(&m.config, 8, 4);
        let l = forward(
            &m,
            &mut s,
            &[1, 260, 261, 259, 5],
            0,
            Logits::All,
            &k,
            &Inline,
        )
        .unwrap();
        assert_eq!(l.len(), 5 * 262);
        assert!(l.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn forward_rejects_bad_tokens_and_full_context() {
    let bytes = build(&config(), QuantType::Q8_0);
    let m = Model::load(&bytes).unwrap();
    let k = Kernels::select(&CpuFeatures::default());
    let mut s = State::new(&m.config, 4, 4);
    assert!(forward(&m, &mut s, &[262], 0, Logits::Last, &k, &Inline).is_err());
    assert!(forward(&m, &mut s, &[1, 2, 3], 2, Logits::Last, &k, &Inline).is_err());
    assert!(forward(&m, &mut s, &[], 0, Logits::Last, &k, &Inline).is_err());
}

#[test]
fn truncated_files_are_rejected() {
    let bytes = build(&config(), QuantType::Q4_1);
    for len in [0, 1, 7, 8, 9, 100, bytes.len() / 2, bytes.len() - 1] {
        let e = load_err(&bytes[..len]);
        assert!(matches!(e, LoadError::Container(_)), "len {len}: {e:?}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(load_err(&longer), LoadError::Container(_)));
}

#[test]
fn container_damage_is_rejected() {
    let bytes = build(&config(), QuantType::Q8_0);
    // Header length beyond the file.
    let mut b = bytes.clone();
    b[..8].copy_from_slice(&(u64::MAX).to_le_bytes());
    assert!(matches!(load_err(&b), LoadError::Container(_)));
    // Not JSON.
    let b = with_header(&bytes, |h| h.replacen('{', "[", 1));
    assert!(matches!(load_err(&b), LoadError::Container(_)));
    // Offsets that overlap / leave a hole.
    let b = with_header(&bytes, |h| {
        h.replacen("\"data_offsets\":[0,", "\"data_offsets\":[4,", 1)
    });
    assert!(
        matches!(load_err(&b), LoadError::Container(_)),
        "{:?}",
        load_err(&b)
    );
    // Shape that does not match the byte range.
    let b = with_header(&bytes, |h| {
        h.replacen("\"shape\":[16]", "\"shape\":[17]", 1)
    });
    assert!(matches!(load_err(&b), LoadError::Container(_)));
}

#[test]
fn schema_damage_gets_a_specific_error() {
    let bytes = build(&config(), QuantType::Q4_0);
    type Case = (Vec<u8>, fn(&LoadError) -> bool);
    let cases: Vec<Case> = vec![
        (
            with_header(&bytes, |h| {
                h.replace("\"format\":\"microkernelia-llm\"", "\"format\":\"other\"")
            }),
            |e| matches!(e, LoadError::NotAModel(_)),
        ),
        (
            with_header(&bytes, |h| {
                h.replace("\"format_version\":\"1\"", "\"format_version\":\"9\"")
            }),
            |e| matches!(e, LoadError::NotAModel(_)),
        ),
        (
            with_header(&bytes, |h| {
                h.replace("\"dim\":\"16\"", "\"dim\":\"sixteen\"")
            }),
            |e| matches!(e, LoadError::BadMetadata { .. }),
        ),
        (
            with_header(&bytes, |h| h.replace("\"dim\":\"16\",", "")),
            |e| matches!(e, LoadError::MissingMetadata("dim")),
        ),
        (
            with_header(&bytes, |h| {
                h.replace("\"n_kv_heads\":\"2\"", "\"n_kv_heads\":\"3\"")
            }),
            |e| matches!(e, LoadError::InvalidConfig(_)),
        ),
        (
            with_header(&bytes, |h| {
                h.replace("\"rope_theta\":\"10000.0\"", "\"rope_theta\":\"NaN\"")
            }),
            |e| matches!(e, LoadError::InvalidConfig(_)),
        ),
        (
            with_header(&bytes, |h| {
                h.replace(
                    "\"qtype.layers.0.wq\":\"q4_0\"",
                    "\"qtype.layers.0.wq\":\"q3_k\"",
                )
            }),
            |e| matches!(e, LoadError::BadQuant { .. }),
        ),
        (
            // Logical shape that disagrees with the config.
            with_header(&bytes, |h| {
                h.replace(
                    "\"shape.layers.0.w2\":\"16,40\"",
                    "\"shape.layers.0.w2\":\"16,41\"",
                )
            }),
            |e| matches!(e, LoadError::WrongShape { .. }),
        ),
        (
            // Quant type that disagrees with the stored row size.
            with_header(&bytes, |h| {
                h.replace(
                    "\"qtype.layers.0.w2\":\"q4_0\"",
                    "\"qtype.layers.0.w2\":\"q4_1\"",
                )
            }),
            |e| matches!(e, LoadError::WrongShape { .. }),
        ),
        (
            with_header(&bytes, |h| {
                h.replace("\"norm\":{\"dtype\":\"F32\"", "\"norm\":{\"dtype\":\"I32\"")
            }),
            |e| matches!(e, LoadError::WrongDtype { .. }),
        ),
        (
            with_header(&bytes, |h| {
                h.replace("\"layers.1.ffn_norm\"", "\"layers.1.ffn_nurm\"")
            }),
            |e| matches!(e, LoadError::MissingTensor(_)),
        ),
        (
            with_header(&bytes, |h| h.replace("\"norm\":{", "\"extra\":{")),
            |e| matches!(e, LoadError::MissingTensor(_)),
        ),
        (
            with_header(&bytes, |h| {
                h.replace(
                    "\"tokenizer.kind\":\"sentencepiece\"",
                    "\"tokenizer.kind\":\"wordpiece\"",
                )
            }),
            |e| matches!(e, LoadError::BadMetadata { .. }),
        ),
        (
            with_header(&bytes, |h| {
                h.replace(
                    "\"tokenizer.eos_ids\":\"2\"",
                    "\"tokenizer.eos_ids\":\"999\"",
                )
            }),
            |e| matches!(e, LoadError::Tokenizer(_)),
        ),
    ];
    for (i, (b, ok)) in cases.iter().enumerate() {
        assert_ne!(b, &bytes, "case {i} did not change the file");
        let e = load_err(b);
        assert!(ok(&e), "case {i}: {e:?}");
    }
}

#[test]
fn unexpected_tensor_is_rejected() {
    let c = config();
    let mut w = ModelWriter::new(&c);
    w.add_vector("surprise", &[1.0]).unwrap();
    let base = build(&c, QuantType::F32);
    let m = Model::load(&base).unwrap();
    // Rebuild the same model plus one tensor.
    let mut seed = 1;
    let mut mat = |w: &mut ModelWriter, name: &str, rows: usize, cols: usize| {
        seed += 1;
        w.add_matrix(
            name,
            QuantType::F32,
            rows,
            cols,
            &pseudo_random(rows * cols, seed),
        )
        .unwrap();
    };
    mat(&mut w, "tok_embeddings", c.vocab_size, c.dim);
    for l in 0..c.n_layers {
        for s in inference::format::LAYER_MATRICES {
            let (r, cl) = inference::format::layer_matrix_shape(&c, s).unwrap();
            mat(&mut w, &inference::format::layer_tensor(l, s), r, cl);
        }
        for s in inference::format::LAYER_VECTORS {
            w.add_vector(&inference::format::layer_tensor(l, s), &vec![1.0; c.dim])
                .unwrap();
        }
    }
    w.add_vector("norm", &vec![1.0; c.dim]).unwrap();
    w.set_tokenizer(m.tokenizer.vocab()).unwrap();
    let e = load_err(&w.finish());
    assert_eq!(e, LoadError::UnexpectedTensor("surprise".into()));
}

#[test]
fn tokenizer_offsets_are_checked() {
    let bytes = build(&config(), QuantType::F32);
    // Find the offsets tensor's data and make one offset jump past the blob.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let key = "\"tokenizer.token_offsets\":{\"dtype\":\"U32\",\"shape\":[263],\"data_offsets\":[";
    let at = header.find(key).unwrap() + key.len();
    let start: usize = header[at..].split(',').next().unwrap().parse().unwrap();
    let mut b = bytes.clone();
    let pos = 8 + n + start + 4 * 5;
    b[pos..pos + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(load_err(&b), LoadError::BadTokenizerData(_)));
}

#[test]
fn random_corruption_never_panics() {
    let bytes = build(&config(), QuantType::Q4_1);
    let mut s = 0x1234_5678u32;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        s as usize
    };
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 4 {
            // Bias towards the header, where damage matters most.
            let i = if next() % 2 == 0 {
                next() % 2048.min(b.len())
            } else {
                next() % b.len()
            };
            b[i] = next() as u8;
        }
        let _ = Model::load(&b);
    }
}

#[test]
fn k_quant_matrix_with_partial_super_blocks_is_refused() {
    // dim 16: a Q4_K row would be padded to one 256-value super-block; the kernels need whole
    // ones, so the loader must refuse it (an error, not a panic in the first matmul).
    let bytes = build(&config(), QuantType::Q4_K);
    match Model::load(&bytes) {
        Err(LoadError::BadQuant { why, .. }) => assert!(why.contains("multiple"), "{why}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a Q4_K matrix with 16-value rows loaded"),
    }
}
