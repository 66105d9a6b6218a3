//! The protocol engine: one incoming message in, its response and notifications out.
//!
//! [`Server`] holds what every client shares (configuration, tools, counters);
//! [`Session`] holds what one client negotiated; a [`Peer`] is the transport's side of the
//! request being handled. [`Server::handle`] parses a message (or a batch), classifies it,
//! dispatches it (lifecycle methods in `lifecycle.rs`, `tools/call` in `call.rs`) and sends
//! the response, serialised once, through the peer.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde_json::{json, Value};

use crate::frame::DEFAULT_MAX_FRAME;
use crate::jsonrpc::{
    classify, error_value, notification_value, parse_payload, success_value, to_bytes, Incoming,
    RpcError,
};
use crate::logging::LogLevel;
use crate::peer::{MessageKind, Peer, Sink};
use crate::session::Session;
use crate::tools::ToolRegistry;
use crate::version::{ProtocolVersion, META_PROTOCOL_VERSION};

/// Static server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub title: Option<String>,
    pub version: String,
    pub instructions: Option<String>,
    /// Largest accepted (and sent) message in bytes: a frame's payload on a stream.
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

/// Counters shared by all clients (read by the `health` tool).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Requests answered or cancelled.
    pub requests: u64,
    /// Error responses plus `isError` tool results plus framing errors.
    pub errors: u64,
    pub tool_calls: u64,
    pub cancelled: u64,
}

/// How a request ended.
pub(crate) enum Reply {
    Result(Value),
    Error(RpcError),
    /// Cancelled by the client: per spec no response is sent.
    Cancelled,
}

/// The protocol revision a request is served under: the one its session negotiated
/// (legacy), or the one named in its `_meta` (stateless).
#[derive(Clone, Copy)]
pub(crate) struct Style {
    pub(crate) version: ProtocolVersion,
}

impl Style {
    pub(crate) fn modern(self) -> bool {
        self.version.is_modern()
    }
}

/// The protocol engine shared by all clients.
pub struct Server {
    pub(crate) config: ServerConfig,
    pub(crate) tools: ToolRegistry,
    pub(crate) stats: ServerStats,
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

    /// Handles one incoming message exactly as the transport received it: a JSON-RPC
    /// request, notification or client response, or a batch of them. The response, if any,
    /// and every notification go to `peer`; while a tool runs, `peer` is pumped between its
    /// steps (see [`crate::Pump`]).
    pub fn handle(&mut self, session: &mut Session, payload: &[u8], peer: &mut dyn Peer) {
        let response = match parse_payload(payload) {
            Err(e) => {
                self.stats.errors += 1;
                Some(error_value(Value::Null, &e))
            }
            Ok(Value::Array(items)) => self.handle_batch(session, items, peer),
            Ok(single) => self.handle_message(session, single, peer),
        };
        if let Some(response) = response {
            self.send_response(peer, response);
        }
    }

    /// Answers input the transport could not turn into a message (an oversized or empty
    /// frame, a stream cut inside a frame): an error with a null id, counted as an error.
    pub fn reject(&mut self, sink: &mut dyn Sink, error: RpcError) {
        self.stats.errors += 1;
        self.send_response(sink, error_value(Value::Null, &error));
    }

    /// True when `payload` must wait for the running exclusive tool: a `tools/call` (alone or
    /// in a batch) of an exclusive tool, or of a tool that is running right now. Everything
    /// else may be handled while an exclusive tool runs.
    pub fn must_wait(&self, payload: &[u8]) -> bool {
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

    /// Serialises a response once and sends it. A result the client would refuse for its
    /// size is replaced by an error (with the request's id) it can read. A failed send is
    /// the transport's to record (its client is gone).
    fn send_response(&mut self, sink: &mut dyn Sink, response: Value) {
        let mut bytes = to_bytes(&response);
        // Our own error objects are short; only results can grow past the limit.
        if bytes.len() > self.config.max_frame && response.get("error").is_none() {
            let id = response.get("id").cloned().unwrap_or(Value::Null);
            let err = RpcError::internal(format!(
                "the response ({} bytes) exceeds the frame limit of {} bytes",
                bytes.len(),
                self.config.max_frame
            ));
            self.stats.errors += 1;
            bytes = to_bytes(&error_value(id, &err));
        }
        let _ = sink.send(MessageKind::Response, &bytes);
    }

    fn handle_batch(
        &mut self,
        session: &mut Session,
        items: Vec<Value>,
        peer: &mut dyn Peer,
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
            .filter_map(|item| self.handle_message(session, item, peer))
            .collect();
        (!replies.is_empty()).then_some(Value::Array(replies))
    }

    fn handle_message(
        &mut self,
        session: &mut Session,
        value: Value,
        peer: &mut dyn Peer,
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
                match self.handle_request(session, &id, &method, params, peer) {
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
        peer: &mut dyn Peer,
    ) -> Reply {
        if method == "initialize" {
            return self.initialize(session, params);
        }
        // A per-request protocol version selects the stateless 2026-07-28 style, whatever
        // the session negotiated before.
        let meta_version = params
            .as_ref()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(META_PROTOCOL_VERSION));
        if let Some(requested) = meta_version {
            let style = match crate::lifecycle::modern_style(requested, params.as_ref()) {
                Ok(style) => style,
                Err(e) => return Reply::Error(e),
            };
            return match method {
                "server/discover" => Reply::Result(self.discover_result()),
                "tools/list" => self.tools_list(style, params.as_ref()),
                "tools/call" => self.call_tool(session, peer, style, id, params),
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
            "tools/call" => self.call_tool(session, peer, style, id, params),
            "logging/setLevel" => crate::lifecycle::set_level(session, params),
            _ => Reply::Error(RpcError::method_not_found(method)),
        }
    }
}

/// `notifications/message`, serialised: what a transport sends to every session that
/// [admits](Session::admits_log) `level`.
pub fn log_notification(level: LogLevel, logger: &str, message: &str) -> Vec<u8> {
    to_bytes(&notification_value(
        "notifications/message",
        json!({ "level": level.as_str(), "logger": logger, "data": message }),
    ))
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
