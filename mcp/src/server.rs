//! The MCP protocol state machine: lifecycle (legacy `initialize` and the stateless
//! 2026-07-28 style), dispatch, tool calls with progress and cancellation.
//!
//! One [`Session`] per connection holds what the legacy style negotiates (protocol version,
//! log level) plus the connection's frame decoder. [`Server`] holds what all connections
//! share: configuration, tools and counters. Everything here is transport independent; the
//! bytes come from and go to a [`Connection`].

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde_json::{json, Map, Value};

use crate::connection::Connection;
use crate::frame::{encode_frame, FrameDecoder, FrameEvent, DEFAULT_MAX_FRAME};
use crate::jsonrpc::{
    classify, error_value, parse_payload, success_value, to_bytes, Incoming, RpcError,
    UNSUPPORTED_PROTOCOL_VERSION,
};
use crate::log_ring::{LogLevel, LOG_LEVEL_NAMES};
use crate::schema;
use crate::tools::{CallContext, CallIo, ToolOutput, ToolRegistry};
use crate::version::{
    ProtocolVersion, META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, MODERN_VERSIONS,
};

/// Static server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub title: Option<String>,
    pub version: String,
    pub instructions: Option<String>,
    /// Largest accepted (and sent) frame payload in bytes.
    pub max_frame: usize,
    /// Cache lifetime hint for `tools/list` and `server/discover` results (2026-07-28).
    pub list_ttl_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            name: "microkernelia".into(),
            title: Some("microkernelia LLM unikernel".into()),
            version: env!("CARGO_PKG_VERSION").into(),
            instructions: None,
            max_frame: DEFAULT_MAX_FRAME,
            list_ttl_ms: 300_000,
        }
    }
}

/// Counters shared by all connections (read by the `health` tool).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Requests answered or cancelled.
    pub requests: u64,
    /// Error responses plus `isError` tool results plus framing errors.
    pub errors: u64,
    pub tool_calls: u64,
    pub cancelled: u64,
}

/// Per-connection protocol state.
#[derive(Debug)]
pub struct Session {
    pub(crate) decoder: FrameDecoder,
    /// Frames that arrived while a tool was running on this connection, in arrival order.
    pub(crate) backlog: VecDeque<FrameEvent>,
    /// Set by a successful legacy `initialize`.
    legacy_version: Option<ProtocolVersion>,
    initialized_notified: bool,
    log_level: Option<LogLevel>,
    /// The peer will send no more bytes (we may still write).
    pub(crate) read_closed: bool,
    /// A frame cut short by the end of the stream has been reported.
    pub(crate) eof_handled: bool,
    /// Writing failed: the connection is dead.
    pub(crate) write_closed: bool,
}

impl Session {
    pub fn new(max_frame: usize) -> Self {
        Session {
            decoder: FrameDecoder::new(max_frame),
            backlog: VecDeque::new(),
            legacy_version: None,
            initialized_notified: false,
            log_level: None,
            read_closed: false,
            eof_handled: false,
            write_closed: false,
        }
    }

    /// The version negotiated by `initialize`, if any.
    pub fn legacy_version(&self) -> Option<ProtocolVersion> {
        self.legacy_version
    }

    /// True once the client sent `notifications/initialized`.
    pub fn initialized(&self) -> bool {
        self.initialized_notified
    }

    /// The level set through `logging/setLevel`.
    pub fn log_level(&self) -> Option<LogLevel> {
        self.log_level
    }

    /// Whether this session wants `notifications/message` at `level`.
    pub fn admits_log(&self, level: LogLevel) -> bool {
        self.legacy_version
            .is_some_and(|v| v.has_logging_and_ping())
            && self.log_level.is_some_and(|min| level >= min)
    }

    pub fn is_finished(&self) -> bool {
        self.write_closed || (self.read_closed && self.backlog.is_empty())
    }

    /// Writes one message as a frame; a failed write marks the session dead.
    pub(crate) fn send(&mut self, conn: &mut dyn Connection, message: &Value) {
        if self.write_closed {
            return;
        }
        let bytes = to_bytes(message);
        if conn.write_all(&encode_frame(&bytes)).is_err() {
            self.write_closed = true;
        }
    }
}

/// How a request ended.
enum Reply {
    Result(Value),
    Error(RpcError),
    /// Cancelled by the client: per spec no response is sent.
    Cancelled,
}

/// Which protocol style a request uses.
#[derive(Clone, Copy)]
struct Style {
    version: ProtocolVersion,
}

impl Style {
    fn modern(self) -> bool {
        self.version.is_modern()
    }
}

/// The protocol engine shared by all connections.
pub struct Server {
    config: ServerConfig,
    tools: ToolRegistry,
    stats: ServerStats,
}

impl Server {
    pub fn new(config: ServerConfig, tools: ToolRegistry) -> Self {
        Server {
            config,
            tools,
            stats: ServerStats::default(),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    pub fn tools_mut(&mut self) -> &mut ToolRegistry {
        &mut self.tools
    }

    pub fn new_session(&self) -> Session {
        Session::new(self.config.max_frame)
    }

    /// Handles one decoded frame event, writing any reply to `conn`.
    pub fn handle_event(
        &mut self,
        session: &mut Session,
        event: FrameEvent,
        conn: &mut dyn Connection,
    ) {
        self.handle_event_with(session, event, conn, &mut NoOthers)
    }

    /// Like [`Server::handle_event`]; while an exclusive tool runs, `others` is serviced
    /// between the tool's cancellation checks.
    pub(crate) fn handle_event_with(
        &mut self,
        session: &mut Session,
        event: FrameEvent,
        conn: &mut dyn Connection,
        others: &mut dyn Others,
    ) {
        let reply = match event {
            FrameEvent::Frame(payload) => self.handle_payload_with(session, &payload, conn, others),
            FrameEvent::Oversized { len, limit } => {
                self.stats.errors += 1;
                let err = RpcError::invalid_request(format!(
                    "frame of {len} bytes exceeds the limit of {limit} bytes"
                ))
                .with_data(json!({ "length": len, "limit": limit }));
                Some(error_value(Value::Null, &err))
            }
            FrameEvent::Empty => {
                self.stats.errors += 1;
                let err = RpcError::parse("empty frame (length 0): expected a JSON-RPC message");
                Some(error_value(Value::Null, &err))
            }
        };
        if let Some(reply) = reply {
            self.send_reply(session, conn, reply);
        }
    }

    /// Reports a frame cut short by the end of the stream (best effort: the peer may have
    /// closed only its sending side and still read our answer).
    pub fn handle_truncated(&mut self, session: &mut Session, conn: &mut dyn Connection) {
        if let Some(t) = session.decoder.truncated() {
            self.stats.errors += 1;
            let message = match t.expected {
                Some(n) => format!(
                    "truncated frame: the stream ended after {} of {n} payload bytes",
                    t.received
                ),
                None => format!(
                    "truncated frame: the stream ended after {} of 4 header bytes",
                    t.received
                ),
            };
            session.send(conn, &error_value(Value::Null, &RpcError::parse(message)));
        }
    }

    fn send_reply(&mut self, session: &mut Session, conn: &mut dyn Connection, reply: Value) {
        let size = to_bytes(&reply).len();
        // Our own error objects are short; only results can grow past the limit.
        let is_error = reply.get("error").is_some();
        if size > self.config.max_frame && !is_error {
            // A reply the client would refuse is replaced by an error it can read.
            let id = reply.get("id").cloned().unwrap_or(Value::Null);
            let err = RpcError::internal(format!(
                "the response ({size} bytes) exceeds the frame limit of {} bytes",
                self.config.max_frame
            ));
            self.stats.errors += 1;
            session.send(conn, &error_value(id, &err));
        } else {
            session.send(conn, &reply);
        }
    }

    /// Handles one payload (a message or a batch); returns the reply to send, if any.
    /// Notifications produced while a tool runs are written to `conn` directly.
    pub fn handle_payload(
        &mut self,
        session: &mut Session,
        payload: &[u8],
        conn: &mut dyn Connection,
    ) -> Option<Value> {
        self.handle_payload_with(session, payload, conn, &mut NoOthers)
    }

    fn handle_payload_with(
        &mut self,
        session: &mut Session,
        payload: &[u8],
        conn: &mut dyn Connection,
        others: &mut dyn Others,
    ) -> Option<Value> {
        let value = match parse_payload(payload) {
            Ok(v) => v,
            Err(e) => {
                self.stats.errors += 1;
                return Some(error_value(Value::Null, &e));
            }
        };
        match value {
            Value::Array(items) => self.handle_batch(session, items, conn, others),
            single => self.handle_message(session, single, conn, others),
        }
    }

    fn handle_batch(
        &mut self,
        session: &mut Session,
        items: Vec<Value>,
        conn: &mut dyn Connection,
        others: &mut dyn Others,
    ) -> Option<Value> {
        let allowed = session.legacy_version.is_some_and(|v| v.allows_batch());
        if !allowed {
            self.stats.errors += 1;
            let current = session
                .legacy_version
                .map_or("none negotiated", |v| v.as_str());
            let err = RpcError::invalid_request(format!(
                "JSON-RPC batch arrays are only allowed with protocol version 2025-03-26 \
                 (this connection: {current})"
            ));
            return Some(error_value(Value::Null, &err));
        }
        if items.is_empty() {
            self.stats.errors += 1;
            return Some(error_value(
                Value::Null,
                &RpcError::invalid_request("empty batch array"),
            ));
        }
        let replies: Vec<Value> = items
            .into_iter()
            .filter_map(|item| self.handle_message(session, item, conn, others))
            .collect();
        (!replies.is_empty()).then_some(Value::Array(replies))
    }

    fn handle_message(
        &mut self,
        session: &mut Session,
        value: Value,
        conn: &mut dyn Connection,
        others: &mut dyn Others,
    ) -> Option<Value> {
        match classify(value) {
            Err((id, err)) => {
                self.stats.errors += 1;
                Some(error_value(id, &err))
            }
            Ok(Incoming::Response) => None,
            Ok(Incoming::Notification { method, .. }) => {
                if method == "notifications/initialized" && session.legacy_version.is_some() {
                    session.initialized_notified = true;
                }
                // notifications/cancelled outside a running call refers to a finished
                // request: nothing to do. Unknown notifications are ignored per JSON-RPC.
                None
            }
            Ok(Incoming::Request { id, method, params }) => {
                self.stats.requests += 1;
                match self.handle_request(session, &id, &method, params, conn, others) {
                    Reply::Result(result) => Some(success_value(id, result)),
                    Reply::Error(err) => {
                        self.stats.errors += 1;
                        Some(error_value(id, &err))
                    }
                    Reply::Cancelled => {
                        self.stats.cancelled += 1;
                        None
                    }
                }
            }
        }
    }

    fn handle_request(
        &mut self,
        session: &mut Session,
        id: &Value,
        method: &str,
        params: Option<Value>,
        conn: &mut dyn Connection,
        others: &mut dyn Others,
    ) -> Reply {
        if method == "initialize" {
            return self.initialize(session, params);
        }
        // A per-request protocol version selects the stateless 2026-07-28 style, whatever
        // the connection negotiated before.
        let meta_version = params
            .as_ref()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(META_PROTOCOL_VERSION));
        if let Some(requested) = meta_version {
            let style = match modern_style(requested, params.as_ref()) {
                Ok(style) => style,
                Err(e) => return Reply::Error(e),
            };
            return match method {
                "server/discover" => Reply::Result(self.discover_result()),
                "tools/list" => self.tools_list(style, params.as_ref()),
                "tools/call" => self.call_tool(session, conn, style, id, params, others),
                // ping and logging/setLevel were removed in 2026-07-28.
                _ => Reply::Error(RpcError::method_not_found(method)),
            };
        }
        if method == "server/discover" {
            return Reply::Error(RpcError::invalid_params(format!(
                "server/discover needs `params._meta[\"{META_PROTOCOL_VERSION}\"]` \
                 (protocol 2026-07-28)"
            )));
        }
        let Some(version) = session.legacy_version else {
            if method == "ping" {
                // Allowed before initialization (2024-11-05 lifecycle).
                return Reply::Result(json!({}));
            }
            return Reply::Error(RpcError::invalid_request(format!(
                "connection not initialized: send `initialize` first, or use the stateless \
                 style with `params._meta[\"{META_PROTOCOL_VERSION}\"] = \"2026-07-28\"`"
            )));
        };
        let style = Style { version };
        match method {
            "ping" => Reply::Result(json!({})),
            "tools/list" => self.tools_list(style, params.as_ref()),
            "tools/call" => self.call_tool(session, conn, style, id, params, others),
            "logging/setLevel" => set_level(session, params),
            _ => Reply::Error(RpcError::method_not_found(method)),
        }
    }

    fn server_info(&self, with_title: bool) -> Value {
        let mut info = Map::new();
        info.insert("name".into(), Value::String(self.config.name.clone()));
        if with_title {
            if let Some(t) = &self.config.title {
                info.insert("title".into(), Value::String(t.clone()));
            }
        }
        info.insert("version".into(), Value::String(self.config.version.clone()));
        Value::Object(info)
    }

    fn initialize(&mut self, session: &mut Session, params: Option<Value>) -> Reply {
        let Some(Value::Object(p)) = params else {
            return Reply::Error(RpcError::invalid_params(
                "initialize needs params {protocolVersion, capabilities, clientInfo}",
            ));
        };
        let Some(requested) = p.get("protocolVersion").and_then(Value::as_str) else {
            return Reply::Error(RpcError::invalid_params(
                "initialize: `protocolVersion` must be a string such as \"2025-11-25\"",
            ));
        };
        if let Some(caps) = p.get("capabilities") {
            if !caps.is_object() {
                return Reply::Error(RpcError::invalid_params(
                    "initialize: `capabilities` must be an object",
                ));
            }
        }
        if let Some(v) = session.legacy_version {
            return Reply::Error(RpcError::invalid_request(format!(
                "already initialized (protocol {})",
                v.as_str()
            )));
        }
        let version = ProtocolVersion::negotiate(requested);
        session.legacy_version = Some(version);
        let mut result = Map::new();
        result.insert("protocolVersion".into(), version.as_str().into());
        result.insert(
            "capabilities".into(),
            json!({ "tools": { "listChanged": false }, "logging": {} }),
        );
        result.insert(
            "serverInfo".into(),
            self.server_info(version.has_structured_tools()),
        );
        if let Some(text) = &self.config.instructions {
            result.insert("instructions".into(), Value::String(text.clone()));
        }
        Reply::Result(Value::Object(result))
    }

    fn discover_result(&self) -> Value {
        let mut result = Map::new();
        result.insert("resultType".into(), "complete".into());
        let versions: Vec<Value> = MODERN_VERSIONS.iter().map(|v| v.as_str().into()).collect();
        result.insert("supportedVersions".into(), Value::Array(versions));
        result.insert(
            "capabilities".into(),
            json!({ "tools": { "listChanged": false } }),
        );
        result.insert("serverInfo".into(), self.server_info(true));
        if let Some(text) = &self.config.instructions {
            result.insert("instructions".into(), Value::String(text.clone()));
        }
        result.insert("ttlMs".into(), self.config.list_ttl_ms.into());
        result.insert("cacheScope".into(), "public".into());
        Value::Object(result)
    }

    fn tools_list(&self, style: Style, params: Option<&Value>) -> Reply {
        // The list is never paginated, so no cursor we could have issued exists.
        if let Some(cursor) = params.and_then(|p| p.get("cursor")) {
            if !cursor.is_null() {
                return Reply::Error(RpcError::invalid_params(format!(
                    "tools/list: unknown cursor {cursor} (this server does not paginate)"
                )));
            }
        }
        Reply::Result(self.tools_list_result(style))
    }

    fn tools_list_result(&self, style: Style) -> Value {
        let structured = style.version.has_structured_tools();
        let tools: Vec<Value> = self.tools.defs().map(|d| d.to_value(structured)).collect();
        let mut result = Map::new();
        if style.modern() {
            result.insert("resultType".into(), "complete".into());
        }
        result.insert("tools".into(), Value::Array(tools));
        if style.modern() {
            // The tool set does not depend on who asks.
            result.insert("ttlMs".into(), self.config.list_ttl_ms.into());
            result.insert("cacheScope".into(), "public".into());
        }
        Value::Object(result)
    }

    #[allow(clippy::too_many_arguments)]
    fn call_tool(
        &mut self,
        session: &mut Session,
        conn: &mut dyn Connection,
        style: Style,
        id: &Value,
        params: Option<Value>,
        others: &mut dyn Others,
    ) -> Reply {
        let Some(Value::Object(mut p)) = params else {
            return Reply::Error(RpcError::invalid_params(
                "tools/call needs params {name, arguments}",
            ));
        };
        let Some(Value::String(name)) = p.remove("name") else {
            return Reply::Error(RpcError::invalid_params(
                "tools/call: `name` must be a string naming a tool from tools/list",
            ));
        };
        let args = match p.remove("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(args)) => args,
            Some(other) => {
                return Reply::Error(RpcError::invalid_params(format!(
                    "tools/call: `arguments` must be an object, got {}",
                    schema::type_name(&other)
                )))
            }
        };
        let progress_token = match p.get("_meta").and_then(|m| m.get("progressToken")) {
            None => None,
            Some(t @ (Value::String(_) | Value::Number(_))) => Some(t.clone()),
            Some(_) => {
                return Reply::Error(RpcError::invalid_params(
                    "tools/call: `_meta.progressToken` must be a string or a number",
                ))
            }
        };

        let Some(index) = self.tools.find(&name) else {
            let known: Vec<&str> = self.tools.defs().map(|d| d.name.as_str()).collect();
            return Reply::Error(
                RpcError::invalid_params(format!(
                    "unknown tool `{name}` (available: {})",
                    known.join(", ")
                ))
                .with_data(json!({ "tool": name })),
            );
        };

        let def = self.tools.def(index);
        let args_value = Value::Object(args);
        if let Err(e) = schema::validate(&def.input_schema, &args_value, "arguments") {
            let message = format!("invalid arguments for tool `{name}`: {e}");
            if style.version.validation_errors_are_results() {
                self.stats.errors += 1;
                return Reply::Result(tool_result(style, &ToolOutput::text(message), true));
            }
            return Reply::Error(
                RpcError::invalid_params(message).with_data(json!({ "path": e.path })),
            );
        }
        let Value::Object(args) = args_value else {
            unreachable!("constructed as an object above")
        };
        let output_schema = def.output_schema.clone();

        // A cancellation that arrived while this request waited in the backlog (behind an
        // earlier call) applies before the tool even starts.
        if take_cancellation(&mut session.backlog, id) {
            return Reply::Cancelled;
        }
        let exclusive = self.tools.is_exclusive(index);
        let Some(mut tool) = self.tools.take(index) else {
            // Only reachable if a tool re-entered itself; requests for a running tool are
            // queued by the loop instead.
            return Reply::Error(RpcError::internal(format!("tool `{name}` is busy")));
        };
        self.stats.tool_calls += 1;
        let stats = self.stats.clone();
        let mut no_others = NoOthers;
        let mut live = LiveCall {
            server: self,
            conn,
            session,
            request_id: id,
            cancelled: false,
            // Only a model-bound (exclusive) call lets the other connections' light
            // requests through; a light call is short and never nests.
            others: if exclusive { others } else { &mut no_others },
        };
        let mut ctx = CallContext::new(&mut live, progress_token, &stats);
        let outcome = tool.call(&args, &mut ctx);
        drop(ctx);
        let cancelled = live.cancelled;
        self.tools.put_back(index, tool);
        if cancelled {
            return Reply::Cancelled;
        }
        match outcome {
            Ok(out) => {
                if let (Some(schema), Some(data)) = (&output_schema, &out.structured) {
                    if let Err(e) = schema::validate(schema, data, "structuredContent") {
                        return Reply::Error(RpcError::internal(format!(
                            "tool `{name}` produced output that does not match its \
                             outputSchema: {e}"
                        )));
                    }
                }
                Reply::Result(tool_result(style, &out, false))
            }
            Err(err) => {
                self.stats.errors += 1;
                Reply::Result(tool_result(style, &ToolOutput::text(err.message), true))
            }
        }
    }

    /// True when `event` must wait for the running exclusive tool: a `tools/call` (alone or
    /// in a batch) of an exclusive tool, or of a tool that is running right now.
    pub(crate) fn must_wait(&self, event: &FrameEvent) -> bool {
        let FrameEvent::Frame(payload) = event else {
            return false;
        };
        let Ok(value) = parse_payload(payload) else {
            return false;
        };
        let waits = |msg: &Value| {
            msg.get("id").is_some()
                && msg.get("method").and_then(Value::as_str) == Some("tools/call")
                && msg
                    .get("params")
                    .and_then(|p| p.get("name"))
                    .and_then(Value::as_str)
                    .is_some_and(|name| self.tools.is_exclusive_or_busy(name))
        };
        match &value {
            Value::Array(items) => items.iter().any(waits),
            single => waits(single),
        }
    }
}

/// Connections other than the caller's, serviced while an exclusive tool runs.
pub(crate) trait Others {
    fn service(&mut self, server: &mut Server);
}

/// Nothing to service.
pub(crate) struct NoOthers;

impl Others for NoOthers {
    fn service(&mut self, _: &mut Server) {}
}

/// Validates the stateless-style `_meta` of a request.
fn modern_style(requested: &Value, params: Option<&Value>) -> Result<Style, RpcError> {
    let Some(requested) = requested.as_str() else {
        return Err(RpcError::invalid_params(format!(
            "`_meta[\"{META_PROTOCOL_VERSION}\"]` must be a string"
        )));
    };
    let version = match ProtocolVersion::parse(requested) {
        Some(v) if v.is_modern() => v,
        _ => {
            let supported: Vec<Value> = MODERN_VERSIONS.iter().map(|v| v.as_str().into()).collect();
            return Err(RpcError::new(
                UNSUPPORTED_PROTOCOL_VERSION,
                format!("unsupported protocol version `{requested}` in _meta"),
            )
            .with_data(json!({ "supported": supported, "requested": requested })));
        }
    };
    let caps = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_CLIENT_CAPABILITIES));
    if !caps.is_some_and(Value::is_object) {
        return Err(RpcError::invalid_params(format!(
            "`_meta[\"{META_CLIENT_CAPABILITIES}\"]` (an object) is required with protocol {}",
            version.as_str()
        )));
    }
    Ok(Style { version })
}

fn set_level(session: &mut Session, params: Option<Value>) -> Reply {
    let level = params
        .as_ref()
        .and_then(|p| p.get("level"))
        .and_then(Value::as_str)
        .and_then(LogLevel::parse);
    match level {
        Some(level) => {
            session.log_level = Some(level);
            Reply::Result(json!({}))
        }
        None => Reply::Error(RpcError::invalid_params(format!(
            "logging/setLevel: `level` must be one of {}",
            LOG_LEVEL_NAMES.join(", ")
        ))),
    }
}

/// A `CallToolResult`.
fn tool_result(style: Style, out: &ToolOutput, is_error: bool) -> Value {
    let mut result = Map::new();
    if style.modern() {
        result.insert("resultType".into(), "complete".into());
    }
    result.insert(
        "content".into(),
        json!([{ "type": "text", "text": out.text }]),
    );
    if style.version.has_structured_tools() {
        if let Some(data) = &out.structured {
            result.insert("structuredContent".into(), data.clone());
        }
    }
    result.insert("isError".into(), Value::Bool(is_error));
    Value::Object(result)
}

/// The server side of a running tool call: writes notifications to the caller and pumps the
/// caller's incoming bytes, setting the cancel flag when `notifications/cancelled` names
/// this request. Other frames are queued and served after the call.
struct LiveCall<'a> {
    server: &'a mut Server,
    conn: &'a mut dyn Connection,
    session: &'a mut Session,
    request_id: &'a Value,
    cancelled: bool,
    others: &'a mut dyn Others,
}

/// Bytes read per cancellation poll at most, so a flooding client cannot stall a tool.
const POLL_BUDGET: usize = 64 * 1024;

impl CallIo for LiveCall<'_> {
    fn send_notification(&mut self, message: &Value) {
        self.session.send(&mut *self.conn, message);
        if self.session.write_closed {
            // Nobody is listening any more: stop the work.
            self.cancelled = true;
        }
    }

    fn poll_cancelled(&mut self) -> bool {
        if self.cancelled || self.session.write_closed {
            self.cancelled = true;
            return true;
        }
        let mut buf = [0u8; 4096];
        let mut events = Vec::new();
        let mut budget = POLL_BUDGET;
        while budget > 0 && !self.session.read_closed {
            match self.conn.try_read(&mut buf) {
                crate::connection::ReadStatus::Data(n) => {
                    budget = budget.saturating_sub(n);
                    self.session.decoder.feed(&buf[..n], &mut events);
                }
                crate::connection::ReadStatus::WouldBlock => break,
                crate::connection::ReadStatus::Closed => self.session.read_closed = true,
            }
        }
        for event in events {
            if let FrameEvent::Frame(payload) = &event {
                if is_cancellation_of(payload, self.request_id) {
                    self.cancelled = true;
                    continue;
                }
            }
            self.session.backlog.push_back(event);
        }
        self.others.service(self.server);
        self.cancelled
    }

    fn log_level(&self) -> Option<LogLevel> {
        let legacy_logging = self
            .session
            .legacy_version
            .is_some_and(|v| v.has_logging_and_ping());
        if legacy_logging {
            self.session.log_level
        } else {
            None
        }
    }
}

/// Removes a queued `notifications/cancelled` for `request_id`; true if there was one.
fn take_cancellation(backlog: &mut VecDeque<FrameEvent>, request_id: &Value) -> bool {
    let found = backlog.iter().position(|event| {
        matches!(event, FrameEvent::Frame(payload) if is_cancellation_of(payload, request_id))
    });
    match found {
        Some(i) => {
            backlog.remove(i);
            true
        }
        None => false,
    }
}

/// True when `payload` is `notifications/cancelled` for `request_id`.
fn is_cancellation_of(payload: &[u8], request_id: &Value) -> bool {
    let Ok(Value::Object(msg)) = serde_json::from_slice::<Value>(payload) else {
        return false;
    };
    msg.get("method").and_then(Value::as_str) == Some("notifications/cancelled")
        && !msg.contains_key("id")
        && msg
            .get("params")
            .and_then(|p| p.get("requestId"))
            .is_some_and(|rid| rid == request_id)
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("tools", &self.tools.len())
            .field("stats", &self.stats)
            .finish()
    }
}
