//! The lifecycle and listing methods: legacy `initialize` and `logging/setLevel`, stateless
//! `server/discover` and its `_meta` checks, and `tools/list` for both styles.

use alloc::format;
use alloc::vec::Vec;
use serde_json::{json, Map, Value};

use crate::jsonrpc::{RpcError, UNSUPPORTED_PROTOCOL_VERSION};
use crate::logging::{LogLevel, LOG_LEVEL_NAMES};
use crate::server::{Reply, Server, Style};
use crate::session::Session;
use crate::version::{
    ProtocolVersion, META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, MODERN_VERSIONS,
};

impl Server {
    pub(crate) fn initialize(&mut self, session: &mut Session, params: Option<Value>) -> Reply {
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

    pub(crate) fn discover_result(&self) -> Value {
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

    pub(crate) fn tools_list(&self, style: Style, params: Option<&Value>) -> Reply {
        // The list is never paginated, so no cursor we could have issued exists.
        if let Some(cursor) = params.and_then(|p| p.get("cursor")) {
            if !cursor.is_null() {
                return Reply::Error(RpcError::invalid_params(format!(
                    "tools/list: unknown cursor {cursor} (this server does not paginate)"
                )));
            }
        }
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
        Reply::Result(Value::Object(result))
    }
}

/// Validates the stateless-style `_meta` of a request.
pub(crate) fn modern_style(requested: &Value, params: Option<&Value>) -> Result<Style, RpcError> {
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

pub(crate) fn set_level(session: &mut Session, params: Option<Value>) -> Reply {
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
