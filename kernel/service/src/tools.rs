//! The six MCP tools of the [`crate::catalog`], implemented over the service state.
//!
//! `infer`, `load_model`, `metadata` and `list_models` use the model (and the share): they are
//! exclusive, one at a time. `health` and `logs` are light: the server loop may run them while
//! an `infer` is generating, so they never touch the model cell — they read [`Status`] and the
//! platform's log and memory interfaces only.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;

use inference::chat::{Message, Role};
use inference::prompt::{self, Prompt, PromptError};
use inference::{Engine, GenerateParams, SamplerConfig, StopReason};
use mcp::serde_json::{json, Map, Value};
use mcp::{CallContext, Tool, ToolDef, ToolError, ToolOutput};

use crate::catalog::{self, InferArgs, InferInput, InferStats, LogsArgs};
use crate::loaded_model::LoadedModel;
use crate::{ModelHost, Status};

type ToolResult = Result<ToolOutput, ToolError>;

fn err(message: impl Into<String>) -> ToolError {
    ToolError::new(message)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

// ------------------------------------------------------------------ infer ----

pub struct InferTool {
    pub host: Rc<RefCell<ModelHost>>,
}

fn role(name: &str) -> Result<Role, ToolError> {
    match name {
        "system" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        other => Err(err(format!("unknown chat role {other:?}"))),
    }
}

fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::Eos | StopReason::StopString => "stop",
        StopReason::MaxTokens => "length",
        StopReason::ContextFull => "context",
        StopReason::Cancelled => "cancelled",
    }
}

impl Tool for InferTool {
    fn def(&self) -> ToolDef {
        catalog::infer()
    }

    fn call(&mut self, args: &Map<String, Value>, ctx: &mut CallContext<'_>) -> ToolResult {
        let args = InferArgs::from_args(args).map_err(err)?;
        let mut host = self.host.borrow_mut();
        let host = &mut *host;
        let clock = host.clock;
        let loaded = host
            .model
            .as_mut()
            .ok_or_else(|| err("no model is loaded: call load_model first"))?;
        let (model, state) = loaded.parts();
        let mut chat = Vec::new();
        let input = match &args.input {
            // An empty prompt is BOS alone (the model's unconditional start), if it has one.
            InferInput::Prompt(text) => Prompt::Text(text),
            InferInput::Chat(messages) => {
                for m in messages {
                    chat.push(Message {
                        role: role(&m.role)?,
                        content: &m.content,
                    });
                }
                Prompt::Chat(&chat)
            }
        };
        let prompt = prompt::encode(model, input, state.max_seq()).map_err(|e| match e {
            PromptError::NoChatTemplate => err(format!(
                "model {} has no chat template: use `prompt`",
                loaded_name(model.name.as_deref())
            )),
            e => err(e.to_string()),
        })?;
        let params = GenerateParams {
            max_tokens: args.max_tokens as usize,
            stop_strings: args.stop.clone(),
            sampler: SamplerConfig {
                temperature: args.temperature,
                top_k: args.top_k as usize,
                top_p: args.top_p,
                seed: args.seed.unwrap_or_else(clock),
                ..SamplerConfig::default()
            },
        };
        let engine = Engine {
            model,
            kernels: &host.kernels,
            exec: &*host.executor,
        };
        let ctx = RefCell::new(ctx);
        let mut produced = 0u64;
        let total = args.max_tokens as u64;
        let t0 = clock();
        let generation = engine.generate(
            state,
            &prompt,
            &params,
            clock,
            &|| ctx.borrow_mut().is_cancelled(),
            &mut |token, piece| {
                produced += token.is_some() as u64;
                let mut c = ctx.borrow_mut();
                if c.wants_progress() {
                    c.progress(produced, Some(total), Some(piece));
                }
            },
        );
        let total_ns = clock().saturating_sub(t0);
        let g = generation.map_err(|e| err(format!("generation failed: {e}")))?;
        let t = g.timings;
        let stats = InferStats {
            finish_reason: finish_reason(g.stop),
            prompt_tokens: prompt.len() as u64,
            completion_tokens: g.tokens.len() as u64,
            ttft_ms: ms(t.time_to_first_token_ns),
            prefill_tokens_per_s: t.prefill_tokens_per_s(),
            decode_tokens_per_s: t.decode_tokens_per_s(),
            total_ms: ms(total_ns),
        };
        host.infer_count += 1;
        let value = stats.to_value(&g.text);
        Ok(ToolOutput::with_text_and_structured(g.text, value))
    }
}

fn loaded_name(name: Option<&str>) -> &str {
    name.unwrap_or("(unnamed)")
}

// ----------------------------------------------------------------- health ----

pub struct HealthTool {
    pub status: Rc<RefCell<Status>>,
}

impl Tool for HealthTool {
    fn def(&self) -> ToolDef {
        catalog::health()
    }

    fn exclusive(&self) -> bool {
        false
    }

    fn call(&mut self, _: &Map<String, Value>, ctx: &mut CallContext<'_>) -> ToolResult {
        let status = self.status.borrow();
        let stats = ctx.stats();
        let uptime_ms = (status.clock)() / 1_000_000;
        Ok(ToolOutput::structured(json!({
            "uptime_ms": uptime_ms,
            "heap_used_bytes": status.memory.heap_used_bytes(),
            "heap_free_bytes": status.memory.heap_free_bytes(),
            "requests_served": stats.requests,
            "errors": stats.errors,
            "model": status.model_name.clone(),
        })))
    }
}

// --------------------------------------------------------------- metadata ----

pub struct MetadataTool {
    pub host: Rc<RefCell<ModelHost>>,
}

impl Tool for MetadataTool {
    fn def(&self) -> ToolDef {
        catalog::metadata()
    }

    fn call(&mut self, _: &Map<String, Value>, _: &mut CallContext<'_>) -> ToolResult {
        let host = self.host.borrow();
        let info = &host.info;
        let model = host.model.as_ref().map(|m| {
            let c = &m.model().config;
            json!({
                "name": m.name(),
                "path": m.path,
                "architecture": "llama",
                "quant": m.quant(),
                "parameters": m.parameters(),
                "file_bytes": m.file_bytes(),
                "vocab_size": c.vocab_size,
                "dim": c.dim,
                "hidden_dim": c.hidden_dim,
                "n_layers": c.n_layers,
                "n_heads": c.n_heads,
                "n_kv_heads": c.n_kv_heads,
                "context_length": c.seq_len,
                "kv_cache_positions": m.state.max_seq(),
                "rope_theta": c.rope_theta,
                "tokenizer": match m.model().tokenizer {
                    inference::Tokenizer::SentencePiece(_) => "sentencepiece",
                    inference::Tokenizer::Gpt2(_) => "gpt2-bpe",
                },
                "chat_template": m.model().chat_template,
            })
        });
        Ok(ToolOutput::structured(json!({
            "kernel_version": info.kernel_version,
            "arch": info.arch,
            "cpu_features": info.cpu_feature_names,
            "kernel_variant": host.kernels.variant().name(),
            "model": model,
        })))
    }
}

// ------------------------------------------------------------- load_model ----

pub struct LoadModelTool {
    pub host: Rc<RefCell<ModelHost>>,
    pub status: Rc<RefCell<Status>>,
}

impl Tool for LoadModelTool {
    fn def(&self) -> ToolDef {
        catalog::load_model()
    }

    fn call(&mut self, args: &Map<String, Value>, _: &mut CallContext<'_>) -> ToolResult {
        let path = args
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| err("load_model needs `path`"))?;
        let mut host = self.host.borrow_mut();
        let summary = host.load(path).map_err(err)?;
        self.status.borrow_mut().model_name = host.model.as_ref().map(LoadedModel::name);
        Ok(ToolOutput::with_text_and_structured(
            format!(
                "loaded {} ({}, {} parameters) in {:.0} ms",
                summary["name"].as_str().unwrap_or(path),
                summary["quant"].as_str().unwrap_or("?"),
                summary["parameters"],
                summary["load_ms"].as_f64().unwrap_or(0.0)
            ),
            summary,
        ))
    }
}

// ------------------------------------------------------------------- logs ----

pub struct LogsTool {
    pub status: Rc<RefCell<Status>>,
}

impl Tool for LogsTool {
    fn def(&self) -> ToolDef {
        catalog::logs()
    }

    fn exclusive(&self) -> bool {
        false
    }

    fn call(&mut self, args: &Map<String, Value>, _: &mut CallContext<'_>) -> ToolResult {
        let a = LogsArgs::from_args(args);
        let page = self.status.borrow().logs.page(a.cursor, a.level, a.limit);
        let mut text = String::new();
        let lines: Vec<Value> = page
            .lines
            .iter()
            .map(|l| {
                text.push_str(&l.text);
                text.push('\n');
                json!({ "seq": l.seq, "ms": l.ms, "level": l.level.as_str(), "text": l.text })
            })
            .collect();
        Ok(ToolOutput::with_text_and_structured(
            text,
            json!({ "lines": lines, "next_cursor": page.next_cursor, "dropped": page.dropped }),
        ))
    }
}

// ------------------------------------------------------------ list_models ----

pub struct ListModelsTool {
    pub host: Rc<RefCell<ModelHost>>,
}

/// File names the loader reads.
pub fn is_model_file(name: &str) -> bool {
    name.ends_with(".safetensors")
}

impl Tool for ListModelsTool {
    fn def(&self) -> ToolDef {
        catalog::list_models()
    }

    fn call(&mut self, _: &Map<String, Value>, _: &mut CallContext<'_>) -> ToolResult {
        let mut host = self.host.borrow_mut();
        let loaded = host.model.as_ref().map(|m| m.path.clone());
        let mut found: Vec<(String, u64)> = Vec::new();
        // The root and one level of sub-directories.
        let root = host
            .fs
            .list("")
            .map_err(|e| err(format!("list share: {e}")))?;
        for e in root {
            if e.is_dir {
                if let Ok(sub) = host.fs.list(&e.name) {
                    for s in sub
                        .into_iter()
                        .filter(|s| !s.is_dir && is_model_file(&s.name))
                    {
                        let path = format!("{}/{}", e.name, s.name);
                        let size = file_size(&mut host, &path, s.size);
                        found.push((path, size));
                    }
                }
            } else if is_model_file(&e.name) {
                let size = file_size(&mut host, &e.name, e.size);
                found.push((e.name, size));
            }
        }
        found.sort();
        let mut text = String::new();
        let models: Vec<Value> = found
            .into_iter()
            .map(|(path, size)| {
                let is_loaded = loaded.as_deref() == Some(path.as_str());
                text.push_str(&format!(
                    "{path} {} MiB{}\n",
                    size.div_ceil(1 << 20),
                    if is_loaded { " (loaded)" } else { "" }
                ));
                json!({ "path": path, "size_bytes": size, "loaded": is_loaded })
            })
            .collect();
        Ok(ToolOutput::with_text_and_structured(
            text,
            json!({ "models": models }),
        ))
    }
}

fn file_size(host: &mut ModelHost, path: &str, known: Option<u64>) -> u64 {
    if let Some(s) = known {
        return s;
    }
    match host.fs.open(path) {
        Ok(f) => {
            let s = host.fs.size(f).unwrap_or(0);
            host.fs.close(f);
            s
        }
        Err(_) => 0,
    }
}

/// All six tools over the shared state, in catalog order.
pub fn all(host: &Rc<RefCell<ModelHost>>, status: &Rc<RefCell<Status>>) -> Vec<Box<dyn Tool>> {
    alloc::vec![
        Box::new(InferTool { host: host.clone() }) as Box<dyn Tool>,
        Box::new(HealthTool {
            status: status.clone()
        }),
        Box::new(MetadataTool { host: host.clone() }),
        Box::new(LoadModelTool {
            host: host.clone(),
            status: status.clone()
        }),
        Box::new(LogsTool {
            status: status.clone()
        }),
        Box::new(ListModelsTool { host: host.clone() }),
    ]
}
