//! JSON-RPC 2.0 messages: classification of incoming JSON values and encoding of replies.
//!
//! Only what a server needs: requests and notifications come in, responses go out. Client
//! responses (we never send requests) are recognised and dropped.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::{json, Map, Value};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP 2026-07-28: the per-request protocol version is not one the server implements.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn parse(message: impl Into<String>) -> Self {
        Self::new(PARSE_ERROR, message)
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST, message)
    }
    pub fn method_not_found(method: &str) -> Self {
        Self::new(METHOD_NOT_FOUND, format!("method not found: {method}"))
    }
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(INTERNAL_ERROR, message)
    }

    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("code".into(), Value::from(self.code));
        obj.insert("message".into(), Value::String(self.message.clone()));
        if let Some(data) = &self.data {
            obj.insert("data".into(), data.clone());
        }
        Value::Object(obj)
    }
}

/// An incoming message that passed structural validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A response from the client; the server sends no requests, so these are dropped.
    Response,
}

/// Classifies one JSON value (not a batch). On failure returns the error and the id to
/// answer with (null when the id itself could not be read).
pub fn classify(value: Value) -> Result<Incoming, (Value, RpcError)> {
    let Value::Object(mut obj) = value else {
        return Err((
            Value::Null,
            RpcError::invalid_request("a JSON-RPC message must be a JSON object"),
        ));
    };
    // Read the id first so that later errors can echo it.
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::Number(_) | Value::String(_))) => Some(id),
        Some(_) => {
            return Err((
                Value::Null,
                RpcError::invalid_request("`id` must be a string or a number"),
            ))
        }
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        _ => {
            return Err((
                reply_id,
                RpcError::invalid_request("`jsonrpc` must be the string \"2.0\""),
            ))
        }
    }
    let params = match obj.remove("params") {
        None => None,
        Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
        Some(_) => {
            return Err((
                reply_id,
                RpcError::invalid_request("`params` must be an object or an array"),
            ))
        }
    };
    match obj.remove("method") {
        Some(Value::String(method)) => Ok(match id {
            Some(id) => Incoming::Request { id, method, params },
            None => Incoming::Notification { method, params },
        }),
        Some(_) => Err((
            reply_id,
            RpcError::invalid_request("`method` must be a string"),
        )),
        None if id.is_some() && (obj.contains_key("result") || obj.contains_key("error")) => {
            Ok(Incoming::Response)
        }
        None => Err((
            reply_id,
            RpcError::invalid_request("missing `method` (not a request or notification)"),
        )),
    }
}

/// Parses a payload into a JSON value, mapping failures to -32700.
pub fn parse_payload(payload: &[u8]) -> Result<Value, RpcError> {
    if core::str::from_utf8(payload).is_err() {
        return Err(RpcError::parse("payload is not valid UTF-8"));
    }
    let depth = nesting_depth(payload);
    if depth > MAX_NESTING {
        return Err(RpcError::parse(format!(
            "JSON nested {depth} levels deep; the limit is {MAX_NESTING}"
        )));
    }
    serde_json::from_slice(payload).map_err(|e| RpcError::parse(format!("invalid JSON: {e}")))
}

/// Deepest array/object nesting accepted. serde_json recurses per level (and so does
/// dropping a `Value`); the kernel's stacks are small, so bound it well below serde_json's
/// own limit of 128. MCP messages need fewer than 20 levels.
pub const MAX_NESTING: usize = 64;

/// Maximum `[`/`{` nesting outside string literals (a linear pre-scan, no recursion).
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// True when `payload` is a `notifications/cancelled` naming `request_id`: what a transport
/// looks for while that request runs.
pub fn is_cancellation_of(payload: &[u8], request_id: &Value) -> bool {
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

pub fn success_value(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

pub fn error_value(id: Value, error: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": error.to_value() })
}

pub fn notification_value(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// Serialises a message compactly (never contains a raw newline, which the stdio bridge
/// relies on).
pub fn to_bytes(value: &Value) -> Vec<u8> {
    // Serialising a Value cannot fail (all keys are strings); fall back defensively.
    serde_json::to_vec(value).unwrap_or_else(|e| {
        let msg = e.to_string();
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{{\"code\":-32603,\"message\":{:?}}}}}",
            msg
        )
        .into_bytes()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_requests_and_notifications() {
        let req = classify(json!({"jsonrpc":"2.0","id":7,"method":"ping"})).unwrap();
        assert_eq!(
            req,
            Incoming::Request {
                id: json!(7),
                method: "ping".into(),
                params: None
            }
        );
        let req = classify(json!({"jsonrpc":"2.0","id":"a","method":"x","params":{}})).unwrap();
        assert!(matches!(
            req,
            Incoming::Request {
                id: Value::String(_),
                ..
            }
        ));
        let note = classify(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        assert!(matches!(note, Ok(Incoming::Notification { .. })));
        let resp = classify(json!({"jsonrpc":"2.0","id":1,"result":{}}));
        assert_eq!(resp, Ok(Incoming::Response));
    }

    #[test]
    fn rejects_malformed_messages_with_the_right_id() {
        let cases = [
            (json!(42), Value::Null),
            (json!({"jsonrpc":"1.0","id":3,"method":"ping"}), json!(3)),
            (json!({"id":3,"method":"ping"}), json!(3)),
            (
                json!({"jsonrpc":"2.0","id":{},"method":"ping"}),
                Value::Null,
            ),
            (
                json!({"jsonrpc":"2.0","id":null,"method":"ping"}),
                Value::Null,
            ),
            (json!({"jsonrpc":"2.0","id":"s","method":5}), json!("s")),
            (
                json!({"jsonrpc":"2.0","id":1,"method":"m","params":3}),
                json!(1),
            ),
            (json!({"jsonrpc":"2.0","id":1}), json!(1)),
        ];
        for (msg, want_id) in cases {
            let (id, err) = classify(msg.clone()).unwrap_err();
            assert_eq!(err.code, INVALID_REQUEST, "{msg}");
            assert_eq!(id, want_id, "{msg}");
        }
    }

    #[test]
    fn nesting_is_bounded_before_parsing() {
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":"[[[{"}]}"#), 3);
        assert_eq!(nesting_depth(br#"["\\\"[["]"#), 1);
        let deep = alloc::format!("{}{}", "[".repeat(65), "]".repeat(65));
        let err = parse_payload(deep.as_bytes()).unwrap_err();
        assert_eq!(err.code, PARSE_ERROR);
        assert!(err.message.contains("65 levels"));
        let ok = alloc::format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(parse_payload(ok.as_bytes()).is_ok());
    }

    #[test]
    fn parse_errors() {
        assert_eq!(parse_payload(b"{").unwrap_err().code, PARSE_ERROR);
        assert_eq!(parse_payload(&[0xff, 0xfe]).unwrap_err().code, PARSE_ERROR);
        assert!(parse_payload(b"{\"a\": [1, 2]}").is_ok());
    }
}
