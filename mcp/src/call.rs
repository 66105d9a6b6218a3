//! `tools/call`: parameters, argument validation, running the tool with progress and
//! cancellation through the peer, output validation and the `CallToolResult`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde_json::{json, Map, Value};

use crate::jsonrpc::RpcError;
use crate::logging::LogLevel;
use crate::peer::{MessageKind, Peer, RunningCall};
use crate::schema;
use crate::server::{Reply, Server, Style};
use crate::session::Session;
use crate::tools::{CallContext, CallIo, ToolOutput};

/// The parameters of a `tools/call`, checked for shape (not yet against the tool's schema).
struct CallParams {
    name: String,
    arguments: Map<String, Value>,
    progress_token: Option<Value>,
}

impl CallParams {
    fn parse(params: Option<Value>) -> Result<Self, RpcError> {
        let Some(Value::Object(mut p)) = params else {
            return Err(RpcError::invalid_params(
                "tools/call needs params {name, arguments}",
            ));
        };
        let Some(Value::String(name)) = p.remove("name") else {
            return Err(RpcError::invalid_params(
                "tools/call: `name` must be a string naming a tool from tools/list",
            ));
        };
        let arguments = match p.remove("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(args)) => args,
            Some(other) => {
                return Err(RpcError::invalid_params(format!(
                    "tools/call: `arguments` must be an object, got {}",
                    schema::type_name(&other)
                )))
            }
        };
        let progress_token = match p.get("_meta").and_then(|m| m.get("progressToken")) {
            None => None,
            Some(t @ (Value::String(_) | Value::Number(_))) => Some(t.clone()),
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "tools/call: `_meta.progressToken` must be a string or a number",
                ))
            }
        };
        Ok(CallParams {
            name,
            arguments,
            progress_token,
        })
    }
}

impl Server {
    pub(crate) fn call_tool(
        &mut self,
        session: &Session,
        peer: &mut dyn Peer,
        style: Style,
        id: &Value,
        params: Option<Value>,
    ) -> Reply {
        let call = match CallParams::parse(params) {
            Ok(call) => call,
            Err(e) => return Reply::Error(e),
        };
        let name = call.name;
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
        let args_value = Value::Object(call.arguments);
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

        // A cancellation that arrived while this request waited (behind an earlier call)
        // applies before the tool even starts.
        if peer.cancelled_while_queued(id) {
            return Reply::Cancelled;
        }
        let running = RunningCall {
            id,
            exclusive: self.tools.is_exclusive(index),
        };
        let Some(mut tool) = self.tools.take(index) else {
            // Only reachable if a tool re-entered itself; requests for a running tool wait
            // (`must_wait`) instead.
            return Reply::Error(RpcError::internal(format!("tool `{name}` is busy")));
        };
        self.stats.tool_calls += 1;
        let stats = self.stats.clone();
        let mut live = LiveCall {
            server: self,
            session,
            peer,
            call: running,
            cancelled: false,
        };
        let mut ctx = CallContext::new(&mut live, call.progress_token, &stats);
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

/// The server side of a running tool call: notifications go to the peer, and each
/// cancellation check pumps it.
struct LiveCall<'a> {
    server: &'a mut Server,
    session: &'a Session,
    peer: &'a mut dyn Peer,
    call: RunningCall<'a>,
    cancelled: bool,
}

impl CallIo for LiveCall<'_> {
    fn send_notification(&mut self, message: &[u8]) {
        if self.peer.send(MessageKind::Notification, message).is_err() {
            // Nobody is listening any more: stop the work.
            self.cancelled = true;
        }
    }

    fn poll_cancelled(&mut self) -> bool {
        if !self.cancelled && self.peer.pump(self.server, &self.call) {
            self.cancelled = true;
        }
        self.cancelled
    }

    fn log_level(&self) -> Option<LogLevel> {
        self.session.logging_level()
    }
}
