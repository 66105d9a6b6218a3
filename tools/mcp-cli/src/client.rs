//! An MCP client for the CLI commands, over a framed stream (vsock, TCP, Unix) or MCP
//! Streamable HTTP (`--url`): legacy lifecycle (`initialize`, protocol 2025-11-25) by
//! default, or the stateless 2026-07-28 style (`server/discover`, then the protocol version
//! and client capabilities in every request's `_meta`).

use std::io::{Read, Write};

use mcp::frame::{encode_frame, FrameDecoder, FrameEvent};
use serde_json::{json, Value};

use crate::http_client::HttpClient;
use crate::target::Stream;

/// How messages travel.
enum Io {
    Framed {
        stream: Stream,
        decoder: FrameDecoder,
        queued: std::collections::VecDeque<FrameEvent>,
    },
    Http(HttpClient),
}

pub const CLIENT_PROTOCOL: &str = "2025-11-25";
pub const STATELESS_PROTOCOL: &str = "2026-07-28";

pub struct Client {
    io: Io,
    next_id: u64,
    stateless: bool,
}

impl Client {
    pub fn new(stream: Stream, max_frame: usize) -> Self {
        Client {
            io: Io::Framed {
                stream,
                decoder: FrameDecoder::new(max_frame),
                queued: Default::default(),
            },
            next_id: 1,
            stateless: false,
        }
    }

    /// A client over MCP Streamable HTTP.
    pub fn http(http: HttpClient) -> Self {
        Client {
            io: Io::Http(http),
            next_id: 1,
            stateless: false,
        }
    }

    /// Use the stateless 2026-07-28 style instead of `initialize`.
    pub fn set_stateless(&mut self, on: bool) {
        self.stateless = on;
    }

    /// Opens the session: `initialize` then `notifications/initialized` (legacy), or
    /// `server/discover` (stateless).
    pub fn initialize(&mut self) -> Result<Value, String> {
        if self.stateless {
            let result = self.request("server/discover", json!({}), |_| {})?;
            let supported = result["supportedVersions"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v == STATELESS_PROTOCOL));
            if !supported {
                return Err(format!(
                    "the server does not offer protocol {STATELESS_PROTOCOL}: {}",
                    result["supportedVersions"]
                ));
            }
            return Ok(result);
        }
        let result = self.request(
            "initialize",
            json!({
                "protocolVersion": CLIENT_PROTOCOL,
                "capabilities": {},
                "clientInfo": { "name": "mcp-cli", "version": env!("CARGO_PKG_VERSION") }
            }),
            |_| {},
        )?;
        self.notify("notifications/initialized", json!({}))?;
        Ok(result)
    }

    pub fn send(&mut self, message: &Value) -> Result<(), String> {
        let mut message = message.clone();
        if self.stateless && message.get("id").is_some() && message.get("method").is_some() {
            add_stateless_meta(&mut message);
        }
        let (stream, _, _) = match &mut self.io {
            Io::Http(h) => return h.send(&message),
            Io::Framed {
                stream,
                decoder,
                queued,
            } => (stream, decoder, queued),
        };
        let bytes = serde_json::to_vec(&message).map_err(|e| e.to_string())?;
        stream
            .write_all(&encode_frame(&bytes))
            .map_err(|e| format!("write to server failed: {e}"))
    }

    /// Ends the session where the transport has one (Streamable HTTP: `DELETE`).
    pub fn close(&mut self) {
        if let Io::Http(h) = &mut self.io {
            h.close();
        }
    }

    pub fn notify(&mut self, method: &str, params: Value) -> Result<(), String> {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }))
    }

    /// Next message from the server (blocking).
    pub fn recv(&mut self) -> Result<Value, String> {
        let (stream, decoder, queued) = match &mut self.io {
            Io::Http(h) => return h.recv(),
            Io::Framed {
                stream,
                decoder,
                queued,
            } => (stream, decoder, queued),
        };
        loop {
            if let Some(event) = queued.pop_front() {
                return match event {
                    FrameEvent::Frame(p) => serde_json::from_slice(&p)
                        .map_err(|e| format!("server sent invalid JSON: {e}")),
                    FrameEvent::Oversized { len, limit } => Err(format!(
                        "server sent a {len}-byte frame, over the {limit}-byte limit"
                    )),
                    FrameEvent::Empty => Err("server sent an empty frame".into()),
                };
            }
            let mut buf = [0u8; 8192];
            let n = stream
                .read(&mut buf)
                .map_err(|e| format!("read from server failed: {e}"))?;
            if n == 0 {
                return Err("server closed the connection".into());
            }
            let mut events = Vec::new();
            decoder.feed(&buf[..n], &mut events);
            queued.extend(events);
        }
    }

    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends a request and waits for its response; notifications that arrive meanwhile go
    /// to `on_note`. A JSON-RPC error becomes `Err`.
    pub fn request(
        &mut self,
        method: &str,
        params: Value,
        mut on_note: impl FnMut(&Value),
    ) -> Result<Value, String> {
        let id = self.next_id();
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))?;
        self.wait_for(&json!(id), &mut on_note)
    }

    /// Waits for the response to `id`.
    pub fn wait_for(
        &mut self,
        id: &Value,
        on_note: &mut dyn FnMut(&Value),
    ) -> Result<Value, String> {
        loop {
            let msg = self.recv()?;
            if msg.get("id") == Some(id) {
                if let Some(err) = msg.get("error") {
                    return Err(format!(
                        "error {}: {}",
                        err["code"],
                        err["message"].as_str().unwrap_or("?")
                    ));
                }
                return Ok(msg.get("result").cloned().unwrap_or(Value::Null));
            }
            if msg.get("method").is_some() {
                on_note(&msg);
            }
            // Responses to other ids (e.g. a cancelled call that finished anyway) are dropped.
        }
    }

    /// `tools/call`; returns the CallToolResult.
    pub fn call_tool(
        &mut self,
        name: &str,
        arguments: Value,
        progress_token: Option<Value>,
        on_note: impl FnMut(&Value),
    ) -> Result<Value, String> {
        let mut params = json!({ "name": name, "arguments": arguments });
        if let Some(token) = progress_token {
            params["_meta"] = json!({ "progressToken": token });
        }
        self.request("tools/call", params, on_note)
    }
}

/// The text of a CallToolResult's content.
pub fn result_text(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|c| c["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Adds the 2026-07-28 per-request `_meta` keys to a request.
fn add_stateless_meta(request: &mut Value) {
    let params = &mut request["params"];
    if !params.is_object() {
        *params = json!({});
    }
    let meta = &mut params["_meta"];
    if !meta.is_object() {
        *meta = json!({});
    }
    meta["io.modelcontextprotocol/protocolVersion"] = json!(STATELESS_PROTOCOL);
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({});
    meta["io.modelcontextprotocol/clientInfo"] =
        json!({ "name": "mcp-cli", "version": env!("CARGO_PKG_VERSION") });
}
