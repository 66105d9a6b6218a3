//! The catalog of the kernel's tools: names, descriptions, input and output JSON Schemas
//! and annotations, shared by the implementations (`tools.rs`) and the host test server
//! (`mcp-cli serve`), which fakes some of them. Also typed views of the validated
//! arguments, so implementations do not re-parse JSON.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use mcp::logging::{LogLevel, LOG_LEVEL_NAMES};
use mcp::serde_json::{json, Map, Value};
use mcp::ToolDef;

pub const INFER: &str = "infer";
pub const HEALTH: &str = "health";
pub const METADATA: &str = "metadata";
pub const LOAD_MODEL: &str = "load_model";
pub const LOGS: &str = "logs";
pub const LIST_MODELS: &str = "list_models";

/// Upper bounds enforced by the schemas.
pub const MAX_PROMPT_CHARS: u64 = 65_536;
pub const MAX_NEW_TOKENS: u64 = 4096;
pub const DEFAULT_MAX_TOKENS: u64 = 256;
pub const MAX_STOP_SEQUENCES: u64 = 8;
pub const MAX_LOG_LINES: u64 = 1000;

fn no_arguments() -> Value {
    json!({ "type": "object", "properties": {}, "additionalProperties": false })
}

fn read_only() -> Value {
    json!({ "readOnlyHint": true, "destructiveHint": false, "idempotentHint": true,
            "openWorldHint": false })
}

pub fn infer() -> ToolDef {
    ToolDef::new(
        INFER,
        "Generate text with the loaded model. Give either `prompt` (raw text) or `messages` \
         (a chat, formatted with the model's chat template). Send `_meta.progressToken` to \
         receive each decoded piece as a notifications/progress `message`; \
         notifications/cancelled stops generation between prompt batches and tokens.",
        json!({
            "type": "object",
            "properties": {
                "prompt": { "type": "string", "maxLength": MAX_PROMPT_CHARS,
                            "description": "Raw prompt text; empty starts from the \
                                            model's BOS token alone (unconditional)." },
                "messages": {
                    "type": "array", "minItems": 1, "maxItems": 256,
                    "description": "Chat messages, oldest first.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "role": { "type": "string", "enum": ["system", "user", "assistant"] },
                            "content": { "type": "string", "maxLength": MAX_PROMPT_CHARS }
                        },
                        "required": ["role", "content"],
                        "additionalProperties": false
                    }
                },
                "max_tokens": { "type": "integer", "minimum": 1, "maximum": MAX_NEW_TOKENS,
                                "default": DEFAULT_MAX_TOKENS,
                                "description": "Maximum number of tokens to generate." },
                "temperature": { "type": "number", "minimum": 0, "maximum": 2, "default": 0.8,
                                 "description": "Below 0.001 (0 included) selects greedy \
                                                 decoding." },
                "top_p": { "type": "number", "minimum": 0, "maximum": 1, "default": 0.95,
                           "description": "Sample from the most likely tokens whose \
                                           probabilities add up to top_p: 1 disables it, \
                                           0 keeps only the most likely token." },
                "top_k": { "type": "integer", "minimum": 0, "maximum": 1000, "default": 40,
                           "description": "0 disables top-k filtering." },
                "seed": { "type": "integer", "minimum": 0, "maximum": 18446744073709551615u64,
                          "description": "Sampling seed; fixed seed + greedy-free settings \
                                          reproduce the same text." },
                "stop": { "type": "array", "maxItems": MAX_STOP_SEQUENCES,
                          "items": { "type": "string", "minLength": 1, "maxLength": 64 },
                          "description": "Generation ends when the output ends with one of these." }
            },
            "oneOf": [ { "required": ["prompt"] }, { "required": ["messages"] } ],
            "additionalProperties": false
        }),
    )
    .title("Generate text")
    .output_schema(json!({
        "type": "object",
        "properties": {
            "text": { "type": "string" },
            "finish_reason": { "type": "string", "enum": ["stop", "length", "cancelled", "context"] },
            "prompt_tokens": { "type": "integer", "minimum": 0 },
            "completion_tokens": { "type": "integer", "minimum": 0 },
            "ttft_ms": { "type": "number", "minimum": 0,
                         "description": "Time to first generated token." },
            "prefill_tokens_per_s": { "type": "number", "minimum": 0 },
            "decode_tokens_per_s": { "type": "number", "minimum": 0 },
            "total_ms": { "type": "number", "minimum": 0 }
        },
        "required": ["text", "finish_reason", "prompt_tokens", "completion_tokens", "ttft_ms",
                     "prefill_tokens_per_s", "decode_tokens_per_s"]
    }))
    .annotations(json!({ "readOnlyHint": true, "destructiveHint": false,
                         "idempotentHint": false, "openWorldHint": false }))
}

pub fn health() -> ToolDef {
    ToolDef::new(
        HEALTH,
        "Server health: uptime, heap usage, requests served, errors and the loaded model.",
        no_arguments(),
    )
    .title("Health")
    .output_schema(json!({
        "type": "object",
        "properties": {
            "uptime_ms": { "type": "integer", "minimum": 0 },
            "heap_used_bytes": { "type": "integer", "minimum": 0 },
            "heap_free_bytes": { "type": "integer", "minimum": 0 },
            "requests_served": { "type": "integer", "minimum": 0 },
            "errors": { "type": "integer", "minimum": 0 },
            "model": { "type": ["string", "null"], "description": "Name of the loaded model." }
        },
        "required": ["uptime_ms", "heap_used_bytes", "heap_free_bytes", "requests_served",
                     "errors", "model"]
    }))
    .annotations(read_only())
}

pub fn metadata() -> ToolDef {
    ToolDef::new(
        METADATA,
        "Kernel and model facts: kernel version, architecture, CPU features in use, the \
         matmul kernel variant chosen, model hyper-parameters and quantisation.",
        no_arguments(),
    )
    .title("Metadata")
    .output_schema(json!({
        "type": "object",
        "properties": {
            "kernel_version": { "type": "string" },
            "arch": { "type": "string", "enum": ["x86_64", "aarch64"] },
            "cpu_features": { "type": "array", "items": { "type": "string" } },
            "kernel_variant": { "type": "string" },
            "model": {
                "type": ["object", "null"],
                "properties": {
                    "name": { "type": "string" },
                    "architecture": { "type": "string" },
                    "quant": { "type": "string" },
                    "vocab_size": { "type": "integer", "minimum": 0 },
                    "dim": { "type": "integer", "minimum": 0 },
                    "hidden_dim": { "type": "integer", "minimum": 0 },
                    "n_layers": { "type": "integer", "minimum": 0 },
                    "n_heads": { "type": "integer", "minimum": 0 },
                    "n_kv_heads": { "type": "integer", "minimum": 0 },
                    "context_length": { "type": "integer", "minimum": 0 }
                },
                "required": ["name", "quant"]
            }
        },
        "required": ["kernel_version", "arch", "cpu_features", "kernel_variant", "model"]
    }))
    .annotations(read_only())
}

pub fn load_model() -> ToolDef {
    ToolDef::new(
        LOAD_MODEL,
        "Load a model file from the virtio-fs share (path relative to the share root). The \
         new model replaces the old one atomically; on any error the old model stays loaded.",
        json!({
            "type": "object",
            "properties": {
                "path": { "type": "string", "minLength": 1, "maxLength": 4096,
                          "description": "Path inside the share, e.g. `tinyllama-q8.safetensors`." }
            },
            "required": ["path"],
            "additionalProperties": false
        }),
    )
    .title("Load model")
    .output_schema(json!({
        "type": "object",
        "properties": {
            "path": { "type": "string" },
            "name": { "type": "string" },
            "quant": { "type": "string" },
            "parameters": { "type": "integer", "minimum": 0 },
            "load_ms": { "type": "number", "minimum": 0 }
        },
        "required": ["path", "name", "load_ms"]
    }))
    .annotations(json!({ "readOnlyHint": false, "destructiveHint": false,
                         "idempotentHint": true, "openWorldHint": false }))
}

pub fn logs() -> ToolDef {
    ToolDef::new(
        LOGS,
        "Kernel log lines from the ring buffer, starting at `cursor` (pass `next_cursor` from \
         the previous call to follow), at or above `level`.",
        json!({
            "type": "object",
            "properties": {
                "cursor": { "type": "integer", "minimum": 0, "default": 0 },
                "level": { "type": "string", "enum": LOG_LEVEL_NAMES, "default": "debug" },
                "limit": { "type": "integer", "minimum": 1, "maximum": MAX_LOG_LINES,
                           "default": 200 }
            },
            "additionalProperties": false
        }),
    )
    .title("Logs")
    .output_schema(json!({
        "type": "object",
        "properties": {
            "lines": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "seq": { "type": "integer", "minimum": 0 },
                        "ms": { "type": "integer", "minimum": 0 },
                        "level": { "type": "string", "enum": LOG_LEVEL_NAMES },
                        "text": { "type": "string" }
                    },
                    "required": ["seq", "ms", "level", "text"]
                }
            },
            "next_cursor": { "type": "integer", "minimum": 0 },
            "dropped": { "type": "integer", "minimum": 0 }
        },
        "required": ["lines", "next_cursor", "dropped"]
    }))
    .annotations(read_only())
}

pub fn list_models() -> ToolDef {
    ToolDef::new(
        LIST_MODELS,
        "Model files in the virtio-fs share that the kernel can load.",
        no_arguments(),
    )
    .title("List models")
    .output_schema(json!({
        "type": "object",
        "properties": {
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "path": { "type": "string" },
                        "size_bytes": { "type": "integer", "minimum": 0 },
                        "quant": { "type": "string" },
                        "loaded": { "type": "boolean" }
                    },
                    "required": ["path", "size_bytes"]
                }
            }
        },
        "required": ["models"]
    }))
    .annotations(read_only())
}

/// All kernel tool definitions, in the order `tools/list` shows them.
pub fn all() -> Vec<ToolDef> {
    alloc::vec![
        infer(),
        health(),
        metadata(),
        load_model(),
        logs(),
        list_models()
    ]
}

/// One chat message of `infer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// What `infer` generates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InferInput {
    Prompt(String),
    Chat(Vec<ChatMessage>),
}

/// Typed `infer` arguments with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct InferArgs {
    pub input: InferInput,
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
}

fn str_field(args: &Map<String, Value>, key: &str) -> Option<String> {
    args.get(key)
        .and_then(Value::as_str)
        .map(ToString::to_string)
}

fn int_field(args: &Map<String, Value>, key: &str) -> Option<u64> {
    // Schema validation admits 2.0 as an integer; accept it here too.
    args.get(key)
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
}

impl InferArgs {
    /// Reads arguments already validated against [`infer`]'s input schema.
    pub fn from_args(args: &Map<String, Value>) -> Result<Self, String> {
        let input = if let Some(prompt) = str_field(args, "prompt") {
            InferInput::Prompt(prompt)
        } else if let Some(Value::Array(items)) = args.get("messages") {
            let messages = items
                .iter()
                .map(|m| ChatMessage {
                    role: m
                        .get("role")
                        .and_then(Value::as_str)
                        .unwrap_or("user")
                        .into(),
                    content: m
                        .get("content")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                })
                .collect();
            InferInput::Chat(messages)
        } else {
            return Err("infer needs `prompt` or `messages`".into());
        };
        let stop = match args.get("stop") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(ToString::to_string)
                .collect(),
            _ => Vec::new(),
        };
        Ok(InferArgs {
            input,
            max_tokens: int_field(args, "max_tokens")
                .unwrap_or(DEFAULT_MAX_TOKENS)
                .min(MAX_NEW_TOKENS) as u32,
            temperature: args
                .get("temperature")
                .and_then(Value::as_f64)
                .unwrap_or(0.8) as f32,
            top_p: args.get("top_p").and_then(Value::as_f64).unwrap_or(0.95) as f32,
            top_k: int_field(args, "top_k").unwrap_or(40).min(1000) as u32,
            seed: int_field(args, "seed"),
            stop,
        })
    }
}

/// Typed `logs` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogsArgs {
    pub cursor: u64,
    pub level: LogLevel,
    pub limit: usize,
}

impl LogsArgs {
    pub fn from_args(args: &Map<String, Value>) -> Self {
        LogsArgs {
            cursor: int_field(args, "cursor").unwrap_or(0),
            level: args
                .get("level")
                .and_then(Value::as_str)
                .and_then(LogLevel::parse)
                .unwrap_or(LogLevel::Debug),
            limit: int_field(args, "limit")
                .unwrap_or(200)
                .clamp(1, MAX_LOG_LINES) as usize,
        }
    }
}

/// Statistics of one generation, turned into `infer`'s structured output.
#[derive(Debug, Clone, PartialEq)]
pub struct InferStats {
    pub finish_reason: &'static str,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub ttft_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    pub total_ms: f64,
}

impl InferStats {
    pub fn to_value(&self, text: &str) -> Value {
        json!({
            "text": text,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft_ms": finite(self.ttft_ms),
            "prefill_tokens_per_s": finite(self.prefill_tokens_per_s),
            "decode_tokens_per_s": finite(self.decode_tokens_per_s),
            "total_ms": finite(self.total_ms),
        })
    }
}

/// JSON has no NaN/inf; report 0 for undefined rates (e.g. zero tokens decoded).
fn finite(x: f64) -> f64 {
    if x.is_finite() && x >= 0.0 {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp::schema::validate;

    #[test]
    fn every_schema_is_an_object_schema_and_names_are_unique() {
        let defs = all();
        for (i, d) in defs.iter().enumerate() {
            assert_eq!(d.input_schema["type"], "object", "{}", d.name);
            assert_eq!(d.output_schema.as_ref().unwrap()["type"], "object");
            assert!(defs[i + 1..].iter().all(|o| o.name != d.name));
        }
    }

    #[test]
    fn infer_arguments_validate_and_parse() {
        let schema = infer().input_schema;
        let ok = json!({"prompt": "hi", "max_tokens": 5, "temperature": 0, "top_k": 0,
                        "seed": 42, "stop": ["\n"]});
        validate(&schema, &ok, "arguments").unwrap();
        let args = InferArgs::from_args(ok.as_object().unwrap()).unwrap();
        assert_eq!(args.input, InferInput::Prompt("hi".into()));
        assert_eq!((args.max_tokens, args.top_k, args.seed), (5, 0, Some(42)));
        assert_eq!(args.stop, ["\n"]);

        let chat = json!({"messages": [{"role": "user", "content": "hello"}]});
        validate(&schema, &chat, "arguments").unwrap();
        let args = InferArgs::from_args(chat.as_object().unwrap()).unwrap();
        assert_eq!(args.max_tokens, DEFAULT_MAX_TOKENS as u32);
        assert!(matches!(args.input, InferInput::Chat(ref m) if m[0].content == "hello"));

        let bad = [
            (
                json!({}),
                "needs exactly one of the fields `prompt`, `messages`, got none",
            ),
            (
                json!({"prompt": "a", "messages": [{"role":"user","content":"b"}]}),
                "got 2",
            ),
            (
                json!({"prompt": "a", "max_tokens": 0}),
                "must be at least 1",
            ),
            (
                json!({"prompt": "a", "max_tokens": 5000}),
                "must be at most 4096",
            ),
            (
                json!({"prompt": "a", "temperature": "hot"}),
                "must be of type number",
            ),
            (json!({"prompt": "a", "top_p": -0.5}), "must be at least 0"),
            (json!({"prompt": "a", "seed": -1}), "must be at least 0"),
            (
                json!({"prompt": "a", "nucleus": 1}),
                "unknown field `nucleus`",
            ),
            (
                json!({"messages": [{"role": "robot", "content": ""}]}),
                "must be one of",
            ),
        ];
        for (args, want) in bad {
            let e = validate(&schema, &args, "arguments")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{args}: {e}");
        }
    }

    #[test]
    fn stats_output_matches_output_schema() {
        let stats = InferStats {
            finish_reason: "length",
            prompt_tokens: 3,
            completion_tokens: 0,
            ttft_ms: 1.5,
            prefill_tokens_per_s: 100.0,
            decode_tokens_per_s: f64::NAN,
            total_ms: 2.0,
        };
        let v = stats.to_value("");
        assert_eq!(v["decode_tokens_per_s"], 0.0);
        validate(infer().output_schema.as_ref().unwrap(), &v, "out").unwrap();
    }

    #[test]
    fn logs_arguments() {
        let schema = logs().input_schema;
        let a = json!({"cursor": 5, "level": "warning", "limit": 10});
        validate(&schema, &a, "arguments").unwrap();
        let parsed = LogsArgs::from_args(a.as_object().unwrap());
        assert_eq!(parsed.level, LogLevel::Warning);
        assert_eq!((parsed.cursor, parsed.limit), (5, 10));
        assert!(validate(&schema, &json!({"level": "loud"}), "arguments").is_err());
        assert!(validate(&schema, &json!({"limit": 0}), "arguments").is_err());
    }
}
