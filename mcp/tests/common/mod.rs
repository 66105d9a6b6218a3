//! Test harness: a server loop over in-memory connections, plus test tools.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use mcp::frame::{encode_frame, FrameDecoder, FrameEvent};
use mcp::serde_json::{self, json, Map, Value};
use mcp::{
    CallContext, Connection, ConnectionClosed, ConnectionId, MemoryConnection, ReadStatus, Server,
    ServerConfig, ServerLoop, Tool, ToolDef, ToolError, ToolOutput, ToolRegistry,
};

/// A connection the test keeps a handle to while the loop owns it.
#[derive(Clone, Default)]
pub struct SharedConn(pub Rc<RefCell<MemoryConnection>>);

impl Connection for SharedConn {
    fn try_read(&mut self, buf: &mut [u8]) -> ReadStatus {
        self.0.borrow_mut().try_read(buf)
    }
    fn write_all(&mut self, data: &[u8]) -> Result<(), ConnectionClosed> {
        self.0.borrow_mut().write_all(data)
    }
}

pub struct Harness {
    pub lp: ServerLoop<SharedConn>,
    pub conns: Vec<(ConnectionId, SharedConn, FrameDecoder)>,
}

impl Harness {
    pub fn new(tools: ToolRegistry) -> Self {
        Self::with_config(ServerConfig::default(), tools)
    }

    pub fn with_config(config: ServerConfig, tools: ToolRegistry) -> Self {
        let mut h = Harness {
            lp: ServerLoop::new(Server::new(config, tools)),
            conns: Vec::new(),
        };
        h.connect();
        h
    }

    pub fn standard() -> Self {
        Self::new(test_tools(Rc::new(RefCell::new(Vec::new()))))
    }

    /// Opens another connection; returns its index.
    pub fn connect(&mut self) -> usize {
        let conn = SharedConn::default();
        let id = self.lp.add(conn.clone());
        self.conns
            .push((id, conn, FrameDecoder::new(usize::MAX >> 1)));
        self.conns.len() - 1
    }

    pub fn push_raw_on(&mut self, c: usize, bytes: &[u8]) {
        self.conns[c].1 .0.borrow_mut().push(bytes);
    }

    pub fn push_on(&mut self, c: usize, msg: &Value) {
        let bytes = serde_json::to_vec(msg).unwrap();
        self.push_raw_on(c, &encode_frame(&bytes));
    }

    pub fn push(&mut self, msg: &Value) {
        self.push_on(0, msg)
    }

    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.push_raw_on(0, bytes)
    }

    /// Polls until idle; returns what connection `c` received since the last call.
    pub fn run_on(&mut self, c: usize) -> Vec<Value> {
        let mut rounds = 0;
        while self.lp.poll() {
            rounds += 1;
            assert!(rounds < 10_000, "server loop does not go idle");
        }
        let out = std::mem::take(&mut self.conns[c].1 .0.borrow_mut().outgoing);
        let mut events = Vec::new();
        self.conns[c].2.feed(&out, &mut events);
        events
            .into_iter()
            .map(|e| match e {
                FrameEvent::Frame(p) => serde_json::from_slice(&p).expect("server sent JSON"),
                other => panic!("server sent a bad frame: {other:?}"),
            })
            .collect()
    }

    pub fn run(&mut self) -> Vec<Value> {
        self.run_on(0)
    }

    /// Sends one message and returns the single reply.
    pub fn request(&mut self, msg: Value) -> Value {
        self.push(&msg);
        let mut replies = self.run();
        assert_eq!(
            replies.len(),
            1,
            "expected one reply to {msg}, got {replies:?}"
        );
        replies.remove(0)
    }

    pub fn initialize(&mut self, version: &str) -> Value {
        let reply = self.request(json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": { "protocolVersion": version, "capabilities": {},
                        "clientInfo": { "name": "test", "version": "1" } }
        }));
        self.push(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert!(self.run().is_empty());
        reply
    }
}

pub fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "test", "version": "1" }
    })
}

pub fn error_code(reply: &Value) -> i64 {
    reply["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {reply}"))
}

/// Echoes `text`.
pub struct Echo;
impl Tool for Echo {
    fn def(&self) -> ToolDef {
        ToolDef::new(
            "echo",
            "Echo the text back.",
            json!({"type": "object", "properties": {"text": {"type": "string"}},
                   "required": ["text"], "additionalProperties": false}),
        )
        .title("Echo")
        .output_schema(
            json!({"type": "object", "properties": {"text": {"type": "string"}},
                              "required": ["text"]}),
        )
    }
    fn call(
        &mut self,
        args: &Map<String, Value>,
        _: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        let text = args["text"].as_str().unwrap().to_string();
        Ok(ToolOutput::with_text_and_structured(
            text.clone(),
            json!({"text": text}),
        ))
    }
}

/// Streams `n` tokens ("t0 ", "t1 ", ...), checking cancellation between tokens; records
/// every token it produced in `log`.
pub struct Stream {
    pub log: Rc<RefCell<Vec<String>>>,
}
impl Tool for Stream {
    fn def(&self) -> ToolDef {
        ToolDef::new(
            "stream",
            "Stream n tokens.",
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1,
                   "maximum": 100000}}, "required": ["n"], "additionalProperties": false}),
        )
    }
    fn call(
        &mut self,
        args: &Map<String, Value>,
        ctx: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        let n = args["n"].as_u64().unwrap();
        let mut text = String::new();
        for i in 0..n {
            let piece = format!("t{i} ");
            self.log.borrow_mut().push(piece.clone());
            text.push_str(&piece);
            ctx.log(mcp::LogLevel::Debug, "stream", &piece);
            if ctx.progress(i + 1, Some(n), Some(&piece)) {
                break;
            }
        }
        Ok(ToolOutput::text(text))
    }
}

/// Always fails.
pub struct Fail;
impl Tool for Fail {
    fn def(&self) -> ToolDef {
        ToolDef::new("fail", "Always fails.", json!({"type": "object"}))
    }
    fn call(
        &mut self,
        _: &Map<String, Value>,
        _: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        Err(ToolError::new("disk on fire"))
    }
}

/// Returns output that violates its own outputSchema (a tool bug -> -32603).
pub struct Liar;
impl Tool for Liar {
    fn def(&self) -> ToolDef {
        ToolDef::new("liar", "Bad output.", json!({"type": "object"})).output_schema(
            json!({"type": "object", "properties": {"n": {"type": "integer"}},
                                  "required": ["n"]}),
        )
    }
    fn call(
        &mut self,
        _: &Map<String, Value>,
        _: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::structured(json!({"n": "three"})))
    }
}

/// Returns a text of `bytes` bytes (to exceed the frame limit).
pub struct Big;
impl Tool for Big {
    fn def(&self) -> ToolDef {
        ToolDef::new(
            "big",
            "Large output.",
            json!({"type": "object", "properties":
            {"bytes": {"type": "integer"}}, "required": ["bytes"]}),
        )
    }
    fn call(
        &mut self,
        args: &Map<String, Value>,
        _: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text(
            "x".repeat(args["bytes"].as_u64().unwrap() as usize),
        ))
    }
}

pub fn test_tools(log: Rc<RefCell<Vec<String>>>) -> ToolRegistry {
    let mut reg = ToolRegistry::new();
    reg.register(Box::new(Echo)).unwrap();
    reg.register(Box::new(Stream { log })).unwrap();
    reg.register(Box::new(Fail)).unwrap();
    reg.register(Box::new(Liar)).unwrap();
    reg.register(Box::new(Big)).unwrap();
    reg
}
