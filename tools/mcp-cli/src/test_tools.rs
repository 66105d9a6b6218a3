//! Tools of the host test server (`mcp-cli serve`). They stand in for the kernel's tools so
//! the CLI, the bridge and standard clients can be tested without a VM: `echo`, `count`
//! (progress), a fake `infer` that streams words with a per-token delay and honours
//! cancellation, `health` and `logs`. `infer`, `health` and `logs` use the kernel's schemas
//! from `mk_service::catalog`, so the CLI commands exercise the real contracts.

use std::thread;
use std::time::{Duration, Instant};

use mcp::{CallContext, Tool, ToolDef, ToolError, ToolOutput, ToolRegistry};
use mk_service::catalog::{self, InferArgs, InferInput, InferStats, LogsArgs};
pub use mk_service::host::SharedLog;
use mk_service::logs::{self, Level};
use serde_json::{json, Map, Value};

/// Nanoseconds since the server started (time stamps of log records).
pub fn ns_since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

pub struct Echo;

impl Tool for Echo {
    fn exclusive(&self) -> bool {
        false
    }

    fn def(&self) -> ToolDef {
        ToolDef::new(
            "echo",
            "Return `text` unchanged (test tool).",
            json!({ "type": "object", "properties": { "text": { "type": "string" } },
                    "required": ["text"], "additionalProperties": false }),
        )
        .title("Echo")
        .output_schema(
            json!({ "type": "object", "properties": { "text": { "type": "string" } },
                               "required": ["text"] }),
        )
    }

    fn call(
        &mut self,
        args: &Map<String, Value>,
        _: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        let text = args.get("text").and_then(Value::as_str).unwrap_or_default();
        Ok(ToolOutput::with_text_and_structured(
            text,
            json!({ "text": text }),
        ))
    }
}

pub struct Count {
    pub delay: Duration,
}

impl Tool for Count {
    fn def(&self) -> ToolDef {
        ToolDef::new(
            "count",
            "Count from 1 to `to`, reporting progress at each step (test tool).",
            json!({ "type": "object",
                    "properties": { "to": { "type": "integer", "minimum": 1, "maximum": 100000 } },
                    "required": ["to"], "additionalProperties": false }),
        )
        .title("Count")
        .output_schema(json!({ "type": "object",
                               "properties": { "counted": { "type": "integer" },
                                               "cancelled": { "type": "boolean" } },
                               "required": ["counted"] }))
    }

    fn call(
        &mut self,
        args: &Map<String, Value>,
        ctx: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        let to = args.get("to").and_then(Value::as_u64).unwrap_or(1);
        let mut counted = 0;
        for i in 1..=to {
            thread::sleep(self.delay);
            counted = i;
            if ctx.progress(i, Some(to), Some(&i.to_string())) {
                break;
            }
        }
        Ok(ToolOutput::with_text_and_structured(
            format!("counted to {counted}"),
            json!({ "counted": counted, "cancelled": counted < to }),
        ))
    }
}

/// A stand-in generator: repeats the prompt's words as "tokens", one per `delay`.
pub struct FakeInfer {
    pub delay: Duration,
    pub log: SharedLog,
    pub start: Instant,
}

impl Tool for FakeInfer {
    fn def(&self) -> ToolDef {
        let mut def = catalog::infer();
        def.description = format!(
            "TEST SERVER: echoes the prompt's words as tokens, no model. {}",
            def.description
        );
        def
    }

    fn call(
        &mut self,
        args: &Map<String, Value>,
        ctx: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        let args = InferArgs::from_args(args).map_err(ToolError::new)?;
        let prompt = match &args.input {
            InferInput::Prompt(p) => p.clone(),
            InferInput::Chat(messages) => messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        };
        let words: Vec<&str> = prompt.split_whitespace().collect();
        if words.is_empty() {
            return Err(ToolError::new("the prompt has no words to echo"));
        }
        let t0 = Instant::now();
        // "Prefill": one delay for the whole prompt.
        thread::sleep(self.delay);
        let prefill = t0.elapsed();
        let mut text = String::new();
        let mut finish = "length";
        let mut ttft = None;
        let mut generated = 0u64;
        let decode_start = Instant::now();
        while generated < args.max_tokens as u64 {
            let piece = format!("{} ", words[generated as usize % words.len()]);
            if generated > 0 {
                thread::sleep(self.delay);
            }
            ttft.get_or_insert_with(|| t0.elapsed());
            generated += 1;
            text.push_str(&piece);
            if ctx.progress(generated, Some(args.max_tokens as u64), Some(&piece)) {
                finish = "cancelled";
                break;
            }
            if args.stop.iter().any(|s| text.ends_with(s.as_str())) {
                finish = "stop";
                break;
            }
        }
        let decode = decode_start.elapsed().as_secs_f64();
        let stats = InferStats {
            finish_reason: finish,
            prompt_tokens: words.len() as u64,
            completion_tokens: generated,
            ttft_ms: ttft.unwrap_or_default().as_secs_f64() * 1e3,
            prefill_tokens_per_s: words.len() as f64 / prefill.as_secs_f64(),
            decode_tokens_per_s: generated as f64 / decode,
            total_ms: t0.elapsed().as_secs_f64() * 1e3,
        };
        self.log.borrow_mut().push(
            Level::Info,
            ns_since(self.start),
            "infer",
            &format!(
                "infer: {generated} tokens, {:.1} tok/s, finish={finish}",
                stats.decode_tokens_per_s
            ),
        );
        let value = stats.to_value(&text);
        Ok(ToolOutput::with_text_and_structured(text, value))
    }
}

pub struct Health {
    pub start: Instant,
}

impl Tool for Health {
    fn exclusive(&self) -> bool {
        false
    }

    fn def(&self) -> ToolDef {
        catalog::health()
    }

    fn call(
        &mut self,
        _: &Map<String, Value>,
        ctx: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        let stats = ctx.stats();
        let value = json!({
            "uptime_ms": self.start.elapsed().as_millis() as u64,
            "heap_used_bytes": 0,
            "heap_free_bytes": 0,
            "requests_served": stats.requests,
            "errors": stats.errors,
            "model": "test-echo",
        });
        Ok(ToolOutput::structured(value))
    }
}

pub struct Logs {
    pub log: SharedLog,
}

impl Tool for Logs {
    fn exclusive(&self) -> bool {
        false
    }

    fn def(&self) -> ToolDef {
        catalog::logs()
    }

    fn call(
        &mut self,
        args: &Map<String, Value>,
        _: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        let args = LogsArgs::from_args(args);
        let page = logs::page(&self.log.borrow(), args.cursor, args.level, args.limit);
        let lines: Vec<Value> = page
            .lines
            .iter()
            .map(|l| json!({ "seq": l.seq, "ms": l.ms, "level": l.level.as_str(), "text": l.text }))
            .collect();
        let text = page
            .lines
            .iter()
            .map(|l| format!("{} {:>8} {:<7} {}", l.seq, l.ms, l.level.as_str(), l.text))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(ToolOutput::with_text_and_structured(
            text,
            json!({ "lines": lines, "next_cursor": page.next_cursor, "dropped": page.dropped }),
        ))
    }
}

pub fn registry(delay: Duration, log: SharedLog, start: Instant) -> ToolRegistry {
    let mut reg = ToolRegistry::new();
    let tools: Vec<Box<dyn Tool>> = vec![
        Box::new(Echo),
        Box::new(Count { delay }),
        Box::new(FakeInfer {
            delay,
            log: log.clone(),
            start,
        }),
        Box::new(Health { start }),
        Box::new(Logs { log }),
    ];
    for tool in tools {
        reg.register(tool).expect("test tool names are unique");
    }
    reg
}
