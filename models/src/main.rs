//! mk-models: convert models to the microkernelia format, inspect them, and run them on the
//! host. `mk-models help` prints the usage.

use std::io::Write;
use std::process::ExitCode;

use inference::chat::{Message, Role};
use inference::generate::{Engine, GenerateParams};
use inference::kernels::{KernelVariant, Kernels};
use inference::prompt::{Prompt, PromptError};
use inference::{Model, SamplerConfig, State};
use mk_models::host::{clock_ns, host_features, ThreadPool};
use mk_models::{gguf, hf, llama2c, read_file, Quant};

const USAGE: &str = "usage:
  mk-models convert llama2c <model.bin> <tokenizer.bin> [--quant Q] -o <out.safetensors>
  mk-models convert gguf <model.gguf> [--quant Q] -o <out.safetensors>
  mk-models convert hf <dir with config.json, tokenizer.json, *.safetensors> [--quant Q] -o <out>
      Q = f32 | q8_0 | q4_0 | q4_1 (default f32; GGUF Q4_1 blocks are kept as they are)
      --gptq: GPTQ error feedback when rounding to 4 bits (slower)
  mk-models accuracy --reference R --model M [--text T]...
      teacher-forced top-1 agreement of M with R on each text (default: a few built-in ones)
  mk-models inspect <model.safetensors>
  mk-models generate --model M --prompt P [--max-tokens N] [--temperature T] [--seed S]
      [--top-k K] [--top-p P] [--repeat-penalty R] [--chat] [--system S] [--threads N]
      [--context N] [--stop STRING]... [--kernel scalar|avx2|avx512|avx512vnni|neon|...]
  mk-models export-gguf-f32 <in.gguf> <out.gguf>   (every tensor dequantised to F32)";

/// Appends a line to a String (output is written at the end, so a closed pipe such as
/// `| head` is not an error).
macro_rules! outln {
    ($o:ident, $($t:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($t)*);
    }};
}

fn emit(s: &str) {
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("convert") => convert(&args[1..]),
        Some("inspect") => inspect(&args[1..]),
        Some("generate") => generate(&args[1..]),
        Some("export-gguf-f32") => export(&args[1..]),
        Some("accuracy") => accuracy(&args[1..]),
        Some("help") | Some("--help") | Some("-h") => {
            emit(&format!("{USAGE}\n"));
            Ok(())
        }
        _ => Err(format!("unknown command\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mk-models: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Splits `--flag value` options from positional arguments.
struct Opts {
    positional: Vec<String>,
    flags: Vec<(String, String)>,
    switches: Vec<String>,
}

const SWITCHES: [&str; 2] = ["--chat", "--gptq"];

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        positional: Vec::new(),
        flags: Vec::new(),
        switches: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if SWITCHES.contains(&a.as_str()) {
            o.switches.push(a.clone());
        } else if a.starts_with('-') && a.len() > 1 {
            let v = it.next().ok_or(format!("{a} needs a value"))?;
            o.flags.push((a.clone(), v.clone()));
        } else {
            o.positional.push(a.clone());
        }
    }
    Ok(o)
}

impl Opts {
    fn get(&self, k: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, k: &str) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(f, _)| f == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T, String> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("{k}: bad value {v:?}")),
        }
    }
    fn check_known(&self, known: &[&str]) -> Result<(), String> {
        for (f, _) in &self.flags {
            if !known.contains(&f.as_str()) {
                return Err(format!("unknown option {f}"));
            }
        }
        Ok(())
    }
}

fn convert(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    o.check_known(&["--quant", "-o"])?;
    let quant = match o.get("--quant") {
        None => Quant::F32,
        Some(q) => Quant::parse(q).ok_or(format!("unknown quant {q:?}"))?,
    };
    let out = o.get("-o").ok_or("missing -o <output>")?;
    let gptq = o.switches.iter().any(|s| s == "--gptq");
    let p = &o.positional;
    let bytes = match p.first().map(String::as_str) {
        Some("llama2c") if p.len() == 3 => {
            llama2c::convert_with(&load_file(&p[1])?, &load_file(&p[2])?, quant, gptq)
        }
        Some("gguf") if p.len() == 2 => gguf::convert_with(&load_file(&p[1])?, quant, gptq),
        Some("hf") if p.len() == 2 => hf::convert_dir(std::path::Path::new(&p[1]), quant),
        _ => return Err(format!("bad convert arguments\n{USAGE}")),
    }
    .map_err(|e| e.to_string())?;
    // Validate what we wrote with the same loader the kernel uses.
    Model::load(&bytes).map_err(|e| format!("converted model does not load: {e}"))?;
    if let Some(dir) = std::path::Path::new(out).parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(out, &bytes).map_err(|e| format!("{out}: {e}"))?;
    emit(&format!("wrote {out} ({} bytes)\n", bytes.len()));
    Ok(())
}

fn load_file(path: &str) -> Result<Vec<u8>, String> {
    read_file(path).map_err(|e| e.to_string())
}

fn inspect(args: &[String]) -> Result<(), String> {
    let mut ob = String::new();
    let path = args.first().ok_or("inspect needs a model path")?;
    let bytes = load_file(path)?;
    let m = Model::load(&bytes).map_err(|e| e.to_string())?;
    let c = &m.config;
    outln!(ob, "model: {path} ({} bytes)", bytes.len());
    if let Some(n) = &m.name {
        outln!(ob, "name: {n}");
    }
    if let Some(s) = &m.source {
        outln!(ob, "source: {s}");
    }
    outln!(
        ob,
        "dim {} hidden {} layers {} heads {} kv_heads {} head_dim {} vocab {} seq_len {}",
        c.dim,
        c.hidden_dim,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
        c.head_dim(),
        c.vocab_size,
        c.seq_len
    );
    outln!(
        ob,
        "rope_theta {} norm_eps {} classifier {}",
        c.rope_theta,
        c.norm_eps,
        if c.tied_classifier {
            "tied"
        } else {
            "separate"
        }
    );
    let t = &m.tokenizer;
    outln!(
        ob,
        "tokenizer: {:?}, {} tokens, bos {:?}, eos {:?}, add_bos {}, {} merges",
        t.vocab().kind,
        t.vocab_size(),
        t.bos(),
        t.vocab().eos,
        t.vocab().add_bos,
        t.vocab().merges.len()
    );
    outln!(
        ob,
        "chat template: {}",
        m.chat_template.as_deref().unwrap_or("none")
    );
    let w = &m.weights;
    let mut mats = vec![("tok_embeddings".to_string(), w.tok_embeddings)];
    if let Some(o) = w.output {
        mats.push(("output".into(), o));
    }
    let mut params = 0usize;
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for (l, lw) in w.layers.iter().enumerate() {
        for (s, mat) in [
            ("wq", lw.wq),
            ("wk", lw.wk),
            ("wv", lw.wv),
            ("wo", lw.wo),
            ("w1", lw.w1),
            ("w2", lw.w2),
            ("w3", lw.w3),
        ] {
            mats.push((format!("layers.{l}.{s}"), mat));
        }
    }
    outln!(ob, "tensors:");
    for (name, mat) in &mats {
        params += mat.rows * mat.cols;
        *counts.entry(mat.qtype.name()).or_default() += 1;
        if !name.starts_with("layers.") || name.starts_with("layers.0.") {
            outln!(
                ob,
                "  {name:<24} {:<5} [{} x {}] {} bytes",
                mat.qtype.name(),
                mat.rows,
                mat.cols,
                mat.data.len()
            );
        }
    }
    if c.n_layers > 1 {
        outln!(ob, "  (layers 1..{} alike)", c.n_layers - 1);
    }
    params += c.dim * (2 * c.n_layers + 1);
    outln!(ob, "quant types: {counts:?}");
    outln!(ob, "parameters: {params}");
    emit(&ob);
    Ok(())
}

fn generate(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    o.check_known(&[
        "--model",
        "--prompt",
        "--max-tokens",
        "--temperature",
        "--seed",
        "--top-k",
        "--top-p",
        "--repeat-penalty",
        "--system",
        "--threads",
        "--context",
        "--stop",
        "--kernel",
    ])?;
    let path = o.get("--model").ok_or("missing --model")?;
    let prompt = o.get("--prompt").unwrap_or("");
    let bytes = load_file(path)?;
    let model = Model::load(&bytes).map_err(|e| e.to_string())?;
    let chat = o.switches.iter().any(|s| s == "--chat");
    let mut msgs = Vec::new();
    if let Some(sys) = o.get("--system") {
        msgs.push(Message {
            role: Role::System,
            content: sys,
        });
    }
    msgs.push(Message {
        role: Role::User,
        content: prompt,
    });
    let input = if chat {
        Prompt::Chat(&msgs)
    } else {
        Prompt::Text(prompt)
    };
    let mut ids = match inference::prompt::encode(&model, input, usize::MAX) {
        Ok(ids) => ids,
        Err(PromptError::Empty) => Vec::new(),
        Err(e) => return Err(e.to_string()),
    };
    if ids.is_empty() {
        // A model without BOS needs some prompt; a llama2.c model starts from BOS.
        ids = model.tokenizer.bos().into_iter().collect();
    }
    if ids.is_empty() {
        return Err("empty prompt".into());
    }
    let mut stops = o.all("--stop");
    if chat {
        stops.push(inference::chat::IM_END.to_string());
    }
    let params = GenerateParams {
        max_tokens: o.num("--max-tokens", 128usize)?,
        stop_strings: stops,
        sampler: SamplerConfig {
            temperature: o.num("--temperature", 0.0f32)?,
            top_k: o.num("--top-k", 0usize)?,
            top_p: o.num("--top-p", 1.0f32)?,
            repetition_penalty: o.num("--repeat-penalty", 1.0f32)?,
            seed: o.num("--seed", 0u64)?,
            ..SamplerConfig::default()
        },
    };
    let context = o.num("--context", ids.len() + params.max_tokens + 1)?;
    let kernels = match o.get("--kernel") {
        None => Kernels::select(&host_features()),
        Some(name) => {
            let v = KernelVariant::ALL
                .into_iter()
                .find(|v| v.name().eq_ignore_ascii_case(name))
                .ok_or(format!("unknown kernel variant {name:?}"))?;
            Kernels::with_variant(v, &host_features())
                .ok_or(format!("this CPU cannot run the {name} kernels"))?
        }
    };
    let threads = o.num("--threads", 1usize)?.clamp(1, 256);
    let exec = ThreadPool::new(threads);
    let engine = Engine {
        model: &model,
        kernels: &kernels,
        exec: &exec,
    };
    let mut state = State::new(&model.config, context, 128);
    if !chat {
        emit(prompt);
    }
    let stdout = std::io::stdout();
    let g = engine
        .generate(
            &mut state,
            &ids,
            &params,
            clock_ns,
            &|| false,
            &mut |_, t| {
                let mut out = stdout.lock();
                let _ = out.write_all(t.as_bytes());
                let _ = out.flush();
            },
        )
        .map_err(|e| e.to_string())?;
    let t = g.timings;
    emit("\n");
    eprintln!(
        "[{} prompt tokens, {} generated, stop: {:?}; kernels {:?}, {} thread(s)]",
        t.prompt_tokens,
        t.generated_tokens,
        g.stop,
        kernels.variant(),
        threads
    );
    eprintln!(
        "time to first token {:.1} ms | prefill {:.1} tok/s | decode {:.1} tok/s",
        t.time_to_first_token_ns as f64 / 1e6,
        t.prefill_tokens_per_s(),
        t.decode_tokens_per_s()
    );
    Ok(())
}

fn export(args: &[String]) -> Result<(), String> {
    let [input, output] = args else {
        return Err(format!(
            "export-gguf-f32 needs <in.gguf> <out.gguf>\n{USAGE}"
        ));
    };
    let out = gguf::export_f32(&load_file(input)?).map_err(|e| e.to_string())?;
    std::fs::write(output, &out).map_err(|e| format!("{output}: {e}"))?;
    emit(&format!("wrote {output} ({} bytes)\n", out.len()));
    Ok(())
}

fn accuracy(args: &[String]) -> Result<(), String> {
    let mut ob = String::new();
    let o = parse(args)?;
    o.check_known(&["--reference", "--model", "--text"])?;
    let rb = load_file(o.get("--reference").ok_or("missing --reference")?)?;
    let mb = load_file(o.get("--model").ok_or("missing --model")?)?;
    let r = Model::load(&rb).map_err(|e| e.to_string())?;
    let m = Model::load(&mb).map_err(|e| e.to_string())?;
    if r.config != m.config {
        return Err("models have different hyper-parameters".into());
    }
    let mut texts = o.all("--text");
    if texts.is_empty() {
        texts = [
            "Once upon a time, there was a little girl who loved to play in the garden.",
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\nThe capital of France is Paris.",
            "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # 5",
        ]
        .map(String::from)
        .to_vec();
    }
    let kernels = Kernels::select(&host_features());
    let exec = ThreadPool::new(2);
    let mut total = mk_models::eval::Agreement {
        positions: 0,
        top1_equal: 0,
        max_logit_error: 0.0,
    };
    for t in &texts {
        let ids = r.tokenizer.encode(t, true);
        if ids.is_empty() {
            continue;
        }
        let a = mk_models::eval::teacher_forced(&r, &m, &ids, &kernels, &exec);
        outln!(
            ob,
            "{:>4} positions  top-1 {:5.1}%  max |dlogit| {:.4}  {t:?}",
            a.positions,
            100.0 * a.ratio(),
            a.max_logit_error
        );
        total.merge(&a);
    }
    outln!(
        ob,
        "total: {}/{} = {:.1}% top-1 agreement, max logit error {:.4}",
        total.top1_equal,
        total.positions,
        100.0 * total.ratio(),
        total.max_logit_error
    );
    emit(&ob);
    Ok(())
}
