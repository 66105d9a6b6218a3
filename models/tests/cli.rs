//! The mk-models command line: convert, inspect, generate, and clear errors on bad input.

use std::process::Command;

fn mk() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mk-models"))
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = mk().args(args).output().expect("run mk-models");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn convert_inspect_generate() {
    let dir = std::env::temp_dir().join(format!("mk-models-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("s.safetensors");
    let m = model.to_str().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let bin = format!("{root}/stories260k/stories260K.bin");
    let tok = format!("{root}/stories260k/tok512.bin");
    let (ok, out, err) = run(&["convert", "llama2c", &bin, &tok, "--quant", "q8_0", "-o", m]);
    assert!(ok, "{err}");
    assert!(out.contains("wrote"));

    let (ok, out, _) = run(&["inspect", m]);
    assert!(ok);
    assert!(
        out.contains("dim 64 hidden 172 layers 5 heads 8 kv_heads 4"),
        "{out}"
    );
    assert!(out.contains("q8_0"), "{out}");

    let (ok, out, err) = run(&[
        "generate",
        "--model",
        m,
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        "20",
        "--temperature",
        "0.7",
        "--seed",
        "5",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("Once upon a time") && out.len() > 20,
        "{out}"
    );
    assert!(
        err.contains("20 generated") && err.contains("decode"),
        "{err}"
    );
    // Same seed, same text.
    let (_, again, _) = run(&[
        "generate",
        "--model",
        m,
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        "20",
        "--temperature",
        "0.7",
        "--seed",
        "5",
    ]);
    assert_eq!(out, again);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let root = env!("CARGO_MANIFEST_DIR");
    let tok = format!("{root}/stories260k/tok512.bin");
    for args in [
        vec!["frobnicate"],
        vec!["inspect"],
        vec!["inspect", "/nonexistent/model.safetensors"],
        vec!["inspect", tok.as_str()],
        vec!["generate", "--model", tok.as_str()],
        vec!["generate", "--prompt", "x"],
        vec!["convert", "gguf", tok.as_str(), "-o", "/tmp/x.safetensors"],
        vec![
            "convert",
            "llama2c",
            tok.as_str(),
            tok.as_str(),
            "-o",
            "/tmp/x.safetensors",
        ],
        vec![
            "convert",
            "gguf",
            tok.as_str(),
            "--quant",
            "q2_k",
            "-o",
            "/tmp/x",
        ],
        vec!["generate", "--model", tok.as_str(), "--temperature", "hot"],
    ] {
        let (ok, _, err) = run(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(err.starts_with("mk-models: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
