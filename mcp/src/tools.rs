//! The tool registry and the per-call context a tool gets.
//!
//! The server validates arguments against the tool's `inputSchema` before calling it, and its
//! structured output against `outputSchema` after, so a tool only sees well-formed input and
//! a client only sees output that matches what `tools/list` promised.

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::{Map, Value};

use crate::jsonrpc::{notification_value, to_bytes};
use crate::logging::LogLevel;
use crate::server::{log_notification, ServerStats};

/// What `tools/list` says about a tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub title: Option<String>,
    pub description: String,
    /// JSON Schema of `arguments` (an object schema).
    pub input_schema: Value,
    /// JSON Schema of `structuredContent` (an object schema), when the tool returns one.
    pub output_schema: Option<Value>,
    /// Behaviour hints (`readOnlyHint`, `destructiveHint`, `idempotentHint`, `openWorldHint`).
    pub annotations: Option<Value>,
}

impl ToolDef {
    pub fn new(name: &str, description: &str, input_schema: Value) -> Self {
        ToolDef {
            name: name.to_owned(),
            title: None,
            description: description.to_owned(),
            input_schema,
            output_schema: None,
            annotations: None,
        }
    }

    pub fn title(mut self, title: &str) -> Self {
        self.title = Some(title.to_owned());
        self
    }

    pub fn output_schema(mut self, schema: Value) -> Self {
        self.output_schema = Some(schema);
        self
    }

    pub fn annotations(mut self, annotations: Value) -> Self {
        self.annotations = Some(annotations);
        self
    }

    /// The `Tool` object of `tools/list`. `structured` adds the 2025-06-18 fields.
    pub fn to_value(&self, structured: bool) -> Value {
        let mut obj = Map::new();
        obj.insert("name".into(), Value::String(self.name.clone()));
        if structured {
            if let Some(t) = &self.title {
                obj.insert("title".into(), Value::String(t.clone()));
            }
        }
        obj.insert(
            "description".into(),
            Value::String(self.description.clone()),
        );
        obj.insert("inputSchema".into(), self.input_schema.clone());
        if structured {
            if let Some(s) = &self.output_schema {
                obj.insert("outputSchema".into(), s.clone());
            }
        }
        if let Some(a) = &self.annotations {
            obj.insert("annotations".into(), a.clone());
        }
        Value::Object(obj)
    }
}

/// A successful tool result: human-readable text plus optional structured data.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    pub structured: Option<Value>,
}

impl ToolOutput {
    pub fn text(text: impl Into<String>) -> Self {
        ToolOutput {
            text: text.into(),
            structured: None,
        }
    }

    /// Structured output; the text content is its JSON (as the spec recommends for
    /// backwards compatibility with clients that only read `content`).
    pub fn structured(value: Value) -> Self {
        ToolOutput {
            text: value.to_string(),
            structured: Some(value),
        }
    }

    pub fn with_text_and_structured(text: impl Into<String>, value: Value) -> Self {
        ToolOutput {
            text: text.into(),
            structured: Some(value),
        }
    }
}

/// A tool failure, reported as a result with `isError: true`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolError {
    pub message: String,
}

impl ToolError {
    pub fn new(message: impl Into<String>) -> Self {
        ToolError {
            message: message.into(),
        }
    }
}

pub type ToolResult = Result<ToolOutput, ToolError>;

/// A callable tool. The kernel implements it for the real tools (infer, health, ...).
pub trait Tool {
    fn def(&self) -> ToolDef;
    /// True (the default) when the tool uses the model, so calls must run one at a time.
    /// While an exclusive call runs, other connections' requests that are not exclusive
    /// tool calls (ping, tools/list, calls of non-exclusive tools such as health or logs)
    /// are served between its cancellation checks; exclusive calls wait their turn.
    fn exclusive(&self) -> bool {
        true
    }
    /// `args` already matched `def().input_schema`.
    fn call(&mut self, args: &Map<String, Value>, ctx: &mut CallContext<'_>) -> ToolResult;
}

/// What the server offers a running tool: progress out, cancellation in. Implemented by the
/// server over the caller's [`crate::Peer`].
pub trait CallIo {
    /// Sends a notification (serialised JSON-RPC) to the caller.
    fn send_notification(&mut self, message: &[u8]);
    /// Pumps the caller's incoming bytes without waiting; true once the call was cancelled
    /// (a `notifications/cancelled` for it arrived, or the caller disconnected).
    fn poll_cancelled(&mut self) -> bool;
    /// The caller's minimum level for `notifications/message`, if it asked for any.
    fn log_level(&self) -> Option<LogLevel>;
}

/// Per-call context handed to [`Tool::call`].
pub struct CallContext<'a> {
    io: &'a mut dyn CallIo,
    progress_token: Option<Value>,
    stats: &'a ServerStats,
    cancelled: bool,
}

impl<'a> CallContext<'a> {
    pub fn new(
        io: &'a mut dyn CallIo,
        progress_token: Option<Value>,
        stats: &'a ServerStats,
    ) -> Self {
        CallContext {
            io,
            progress_token,
            stats,
            cancelled: false,
        }
    }

    /// True when the caller asked for progress (`_meta.progressToken`).
    pub fn wants_progress(&self) -> bool {
        self.progress_token.is_some()
    }

    /// Reports progress (`notifications/progress`) if the caller asked for it, then checks
    /// for cancellation. Returns true when the tool should stop.
    pub fn progress(&mut self, progress: u64, total: Option<u64>, message: Option<&str>) -> bool {
        if let Some(token) = &self.progress_token {
            let mut params = Map::new();
            params.insert("progressToken".into(), token.clone());
            params.insert("progress".into(), Value::from(progress));
            if let Some(total) = total {
                params.insert("total".into(), Value::from(total));
            }
            if let Some(message) = message {
                params.insert("message".into(), Value::String(message.into()));
            }
            let note = notification_value("notifications/progress", Value::Object(params));
            self.io.send_notification(&to_bytes(&note));
        }
        self.is_cancelled()
    }

    /// Pumps the connection and reports whether the call was cancelled. Cheap enough to
    /// call between tokens.
    pub fn is_cancelled(&mut self) -> bool {
        if !self.cancelled && self.io.poll_cancelled() {
            self.cancelled = true;
        }
        self.cancelled
    }

    /// Sends `notifications/message` if the caller's log level admits `level`.
    pub fn log(&mut self, level: LogLevel, logger: &str, message: &str) {
        if self.io.log_level().is_some_and(|min| level >= min) {
            self.io
                .send_notification(&log_notification(level, logger, message));
        }
    }

    /// Server counters (for the `health` tool).
    pub fn stats(&self) -> &ServerStats {
        self.stats
    }
}

/// The set of tools a server offers, in registration order.
#[derive(Default)]
pub struct ToolRegistry {
    entries: Vec<Entry>,
}

struct Entry {
    def: ToolDef,
    exclusive: bool,
    /// None while the tool is running (taken out so other tools stay usable meanwhile).
    tool: Option<Box<dyn Tool>>,
}

impl ToolRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool; names must be unique.
    pub fn register(&mut self, tool: Box<dyn Tool>) -> Result<(), String> {
        let def = tool.def();
        if self.entries.iter().any(|e| e.def.name == def.name) {
            return Err(format!("a tool named `{}` is already registered", def.name));
        }
        let exclusive = tool.exclusive();
        self.entries.push(Entry {
            def,
            exclusive,
            tool: Some(tool),
        });
        Ok(())
    }

    pub fn defs(&self) -> impl Iterator<Item = &ToolDef> {
        self.entries.iter().map(|e| &e.def)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.def.name == name)
    }

    pub(crate) fn def(&self, index: usize) -> &ToolDef {
        &self.entries[index].def
    }

    pub(crate) fn is_exclusive(&self, index: usize) -> bool {
        self.entries[index].exclusive
    }

    /// True for an exclusive tool or one that is running now (unknown names: false, they
    /// get their error at once).
    pub(crate) fn is_exclusive_or_busy(&self, name: &str) -> bool {
        self.find(name)
            .is_some_and(|i| self.entries[i].exclusive || self.entries[i].tool.is_none())
    }

    pub(crate) fn take(&mut self, index: usize) -> Option<Box<dyn Tool>> {
        self.entries[index].tool.take()
    }

    pub(crate) fn put_back(&mut self, index: usize, tool: Box<dyn Tool>) {
        self.entries[index].tool = Some(tool);
    }
}
