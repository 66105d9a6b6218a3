//! The tools the official MCP conformance suite (`@modelcontextprotocol/conformance`,
//! server mode) calls by name, registered next to the real ones when the kernel runs with
//! `conformance` on its command line (the suite's scenarios need them; a production server
//! does not offer them). Behaviour as each scenario's requirements state it:
//!
//! - `test_simple_text`: one text item.
//! - `test_tool_with_logging`: three `info` log notifications ~50 ms apart (sent only to a
//!   client that set a log level, which the scenario does).
//! - `test_error_handling`: a tool error (`isError: true`).
//! - `test_tool_with_progress`: progress 0, 50, 100 of 100, ~50 ms apart.
//! - `json_schema_2020_12_tool`: an input schema with `$schema`, `$defs`, `$ref` and
//!   `additionalProperties`, which `tools/list` must pass through unchanged.

use alloc::boxed::Box;
use alloc::string::{String, ToString};

use mcp::serde_json::{json, Map, Value};
use mcp::{CallContext, LogLevel, Tool, ToolDef, ToolError, ToolOutput, ToolRegistry};

/// Waits about `ms` milliseconds (the kernel idles; tests may just advance a clock).
pub type Sleep = fn(u64);

struct Simple;
struct Logging(Sleep);
struct Failing;
struct Progress(Sleep);
struct Schema2020;

fn no_args() -> Value {
    json!({ "type": "object", "properties": {} })
}

impl Tool for Simple {
    fn def(&self) -> ToolDef {
        ToolDef::new(
            "test_simple_text",
            "Returns a simple text response",
            no_args(),
        )
    }
    fn exclusive(&self) -> bool {
        false
    }
    fn call(
        &mut self,
        _: &Map<String, Value>,
        _: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text(
            "This is a simple text response for testing.",
        ))
    }
}

impl Tool for Logging {
    fn def(&self) -> ToolDef {
        ToolDef::new(
            "test_tool_with_logging",
            "Sends three log notifications while it runs",
            no_args(),
        )
    }
    fn call(
        &mut self,
        _: &Map<String, Value>,
        ctx: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        ctx.log(LogLevel::Info, "conformance", "Tool execution started");
        (self.0)(50);
        ctx.log(LogLevel::Info, "conformance", "Tool processing data");
        (self.0)(50);
        ctx.log(LogLevel::Info, "conformance", "Tool execution completed");
        Ok(ToolOutput::text("Tool with logging executed successfully"))
    }
}

impl Tool for Failing {
    fn def(&self) -> ToolDef {
        ToolDef::new("test_error_handling", "Always fails", no_args())
    }
    fn exclusive(&self) -> bool {
        false
    }
    fn call(
        &mut self,
        _: &Map<String, Value>,
        _: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        Err(ToolError::new(
            "This tool intentionally returns an error for testing",
        ))
    }
}

impl Tool for Progress {
    fn def(&self) -> ToolDef {
        ToolDef::new(
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100",
            no_args(),
        )
    }
    fn call(
        &mut self,
        _: &Map<String, Value>,
        ctx: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        for (i, p) in [0u64, 50, 100].into_iter().enumerate() {
            if i > 0 {
                (self.0)(50);
            }
            if ctx.progress(p, Some(100), None) {
                return Err(ToolError::new("cancelled"));
            }
        }
        Ok(ToolOutput::text("Tool with progress executed successfully"))
    }
}

impl Tool for Schema2020 {
    fn def(&self) -> ToolDef {
        ToolDef::new(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "type": "object",
                        "properties": {
                            "street": { "type": "string" },
                            "city": { "type": "string" }
                        }
                    }
                },
                "properties": {
                    "name": { "type": "string" },
                    "address": { "$ref": "#/$defs/address" }
                },
                "additionalProperties": false
            }),
        )
    }
    fn exclusive(&self) -> bool {
        false
    }
    fn call(
        &mut self,
        args: &Map<String, Value>,
        _: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text(Value::Object(args.clone()).to_string()))
    }
}

/// Adds the conformance tools to `registry`.
pub fn register(registry: &mut ToolRegistry, sleep: Sleep) -> Result<(), String> {
    registry.register(Box::new(Simple))?;
    registry.register(Box::new(Logging(sleep)))?;
    registry.register(Box::new(Failing))?;
    registry.register(Box::new(Progress(sleep)))?;
    registry.register(Box::new(Schema2020))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use mcp::{Recorder, Server, ServerConfig, Session};

    fn no_sleep(_: u64) {}

    /// Sends each message through the real server; returns everything it sent back
    /// (notifications, then the response).
    fn run(messages: &[Value]) -> Vec<Value> {
        let mut tools = ToolRegistry::new();
        register(&mut tools, no_sleep).unwrap();
        let mut server = Server::new(ServerConfig::default(), tools);
        let mut session = Session::new();
        let mut peer = Recorder::new();
        let mut out = Vec::new();
        for m in messages {
            let payload = mcp::serde_json::to_vec(m).unwrap();
            server.handle(&mut session, &payload, &mut peer);
            out.extend(peer.take_notifications());
            out.extend(peer.take_response());
        }
        out
    }

    fn call(id: u64, name: &str, token: Option<u64>) -> Value {
        let mut params = json!({ "name": name, "arguments": {} });
        if let Some(t) = token {
            params["_meta"] = json!({ "progressToken": t });
        }
        json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params })
    }

    #[test]
    fn every_scenario_tool_behaves_as_its_scenario_requires() {
        let out = run(&[
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "debug"}}),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
            call(4, "test_simple_text", None),
            call(5, "test_tool_with_logging", None),
            call(6, "test_error_handling", None),
            call(7, "test_tool_with_progress", Some(99)),
        ]);
        let reply = |id: u64| out.iter().find(|m| m["id"] == id).unwrap();
        let tools = reply(3)["result"]["tools"].as_array().unwrap();
        let schema = &tools
            .iter()
            .find(|t| t["name"] == "json_schema_2020_12_tool")
            .unwrap()["inputSchema"];
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["$defs"]["address"]["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(
            reply(4)["result"]["content"][0]["text"],
            "This is a simple text response for testing."
        );
        let logs: Vec<&Value> = out
            .iter()
            .filter(|m| m["method"] == "notifications/message")
            .collect();
        assert_eq!(logs.len(), 3, "{out:?}");
        assert_eq!(logs[0]["params"]["level"], "info");
        assert_eq!(logs[2]["params"]["data"], "Tool execution completed");
        assert_eq!(reply(6)["result"]["isError"], true);
        let progress: Vec<u64> = out
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .map(|m| m["params"]["progress"].as_u64().unwrap())
            .collect();
        assert_eq!(progress, [0, 50, 100]);
        assert!(reply(7)["result"]["content"][0]["text"].is_string());
    }
}
