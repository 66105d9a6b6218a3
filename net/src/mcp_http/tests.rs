//! Streamable HTTP end to end on the host: a client smoltcp stack sends raw HTTP over the
//! in-memory link to the server stack, whose sessions are connections of the real `mcp`
//! `ServerLoop` with test tools.

use super::*;
use crate::http::Limits;
use crate::http_server::Clock;
use crate::stack::{Ipv4Setup, NetStack, TcpConfig};
use crate::test_link::*;
use mcp::serde_json::{json, Map};
use mcp::ToolRegistry;
use mcp::{CallContext, Server, ServerConfig, ServerLoop, Tool, ToolDef, ToolError, ToolOutput};
use smoltcp::socket::tcp;
use smoltcp::wire::Ipv4Cidr;
use std::cell::RefCell;

type Loop = ServerLoop<SessionConnection<LinkNic>>;

type Hook = Box<dyn FnMut(u64)>;

thread_local! {
    /// Run by the slow tool at every step (the test's "meanwhile").
    static DURING_CALL: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

fn during_call(f: impl FnMut(u64) + 'static) {
    DURING_CALL.with(|d| *d.borrow_mut() = Some(Box::new(f)));
}

struct Echo;
impl Tool for Echo {
    fn def(&self) -> ToolDef {
        ToolDef::new(
            "echo",
            "echoes text",
            json!({"type": "object", "properties": {"text": {"type": "string"}}}),
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
        Ok(ToolOutput::text(
            args.get("text").and_then(Value::as_str).unwrap_or(""),
        ))
    }
}

/// Ten steps of progress, one simulated millisecond each; stops when cancelled.
struct Slow;
impl Tool for Slow {
    fn def(&self) -> ToolDef {
        ToolDef::new("slow", "ten steps", json!({"type": "object"}))
    }
    fn call(
        &mut self,
        _: &Map<String, Value>,
        ctx: &mut CallContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        for i in 1..=10 {
            advance(MS);
            with_clients(Clients::poll);
            DURING_CALL.with(|d| {
                if let Some(f) = d.borrow_mut().as_mut() {
                    f(i)
                }
            });
            if ctx.progress(i, Some(10), Some("piece")) {
                return Err(ToolError::new("cancelled"));
            }
        }
        Ok(ToolOutput::text("done"))
    }
}

fn random() -> u64 {
    thread_local!(static X: std::cell::Cell<u64> = const { std::cell::Cell::new(0x1234_5678) });
    X.with(|x| {
        let v = x
            .get()
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x.set(v);
        v
    })
}

struct World {
    server: Loop,
    acceptor: SessionAcceptor<LinkNic>,
    transport: SharedTransport<LinkNic>,
}

fn world(config: HttpConfig) -> World {
    DURING_CALL.with(|d| *d.borrow_mut() = None);
    let (mut a, b) = link();
    CLIENTS.with(|c| *c.borrow_mut() = Some(Clients::new(b)));
    let stack = NetStack::new(
        &mut a,
        Ipv4Setup::Static {
            address: Ipv4Cidr::new(SERVER_IP, 24),
            gateway: None,
        },
        TcpConfig::default(),
        7,
        now(),
    );
    let clock = Clock {
        now_ns: now,
        idle,
        write_timeout_ns: 2_000 * MS,
    };
    let http = HttpServer::new(a, stack, Limits::default(), clock);
    let transport = McpHttp::new(http, config, random).shared();
    let mut tools = ToolRegistry::new();
    tools.register(Box::new(Echo)).unwrap();
    tools.register(Box::new(Slow)).unwrap();
    World {
        server: ServerLoop::new(Server::new(ServerConfig::default(), tools)),
        acceptor: SessionAcceptor(transport.clone()),
        transport,
    }
}

impl World {
    fn step(&mut self) {
        self.server.poll_accepting(&mut self.acceptor);
    }

    /// Steps until `done` holds (15 simulated seconds at most).
    fn run_until(&mut self, done: impl Fn(&World) -> bool) {
        for _ in 0..15_000 {
            self.step();
            with_clients(Clients::poll);
            if done(self) {
                return;
            }
            advance(MS);
        }
        panic!("no progress within 15 simulated seconds");
    }

    /// A new client connection, established.
    fn connect(&mut self) -> usize {
        let c = with_clients(Clients::connect);
        run_until(
            || self.step(),
            || client_state(c) == tcp::State::Established,
        );
        c
    }

    /// Sends a request and waits for its complete response.
    fn exchange(&mut self, c: usize, request: &[u8]) -> Response {
        let before = received(c).len();
        with_clients(|cl| assert_eq!(cl.socket(c).send_slice(request).unwrap(), request.len()));
        let mut out = None;
        run_until(
            || self.step(),
            || {
                out = Response::parse(&received(c)[before..]);
                out.is_some()
            },
        );
        out.unwrap()
    }

    fn post(&mut self, c: usize, session: Option<&str>, extra: &str, body: &Value) -> Response {
        let body = body.to_string();
        let session = session.map_or(String::new(), |s| format!("Mcp-Session-Id: {s}\r\n"));
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\n{session}{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.exchange(c, req.as_bytes())
    }

    /// initialize + notifications/initialized; returns the session id.
    fn initialize(&mut self, c: usize) -> String {
        let r = self.post(
            c,
            None,
            "",
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}}),
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["result"]["protocolVersion"], "2025-11-25");
        let id = r
            .header("mcp-session-id")
            .expect("a session id")
            .to_string();
        let r = self.post(
            c,
            Some(&id),
            "MCP-Protocol-Version: 2025-11-25\r\n",
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        );
        assert_eq!(r.status, 202);
        assert!(r.body.is_empty());
        id
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A complete response at the start of `bytes` (Content-Length or chunked).
    fn parse(bytes: &[u8]) -> Option<Response> {
        let mut h = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut h);
        let httparse::Status::Complete(n) = r.parse(bytes).ok()? else {
            return None;
        };
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let status = r.code?;
        let rest = &bytes[n..];
        let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let body = if get("transfer-encoding").as_deref() == Some("chunked") {
            let mut body = Vec::new();
            let mut at = 0;
            loop {
                let httparse::Status::Complete((k, size)) =
                    httparse::parse_chunk_size(&rest[at..]).ok()?
                else {
                    return None;
                };
                at += k;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(rest.get(at..at + size as usize)?);
                at += size as usize + 2;
            }
            body
        } else {
            let len: usize = get("content-length").map_or(0, |v| v.parse().unwrap());
            rest.get(..len)?.to_vec()
        };
        Some(Response {
            status,
            headers,
            body,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// The JSON messages of an SSE body.
    fn events(&self) -> Vec<Value> {
        let text = String::from_utf8(self.body.clone()).unwrap();
        text.split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }
}

#[test]
fn lifecycle_tools_and_ping_with_a_session() {
    let mut w = world(HttpConfig::default());
    let c = w.connect();
    let id = w.initialize(c);
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let r = w.post(
        c,
        Some(&id),
        "",
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("mcp-session-id"), Some(id.as_str()));
    let list = r.json();
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "slow"]);
    let r = w.post(
        c,
        Some(&id),
        "",
        &json!({"jsonrpc": "2.0", "id": "p", "method": "ping"}),
    );
    assert_eq!(r.json(), json!({"jsonrpc": "2.0", "id": "p", "result": {}}));
    // A call without a progress token is a plain JSON answer.
    let r = w.post(
        c,
        Some(&id),
        "",
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "hi"}}}),
    );
    assert_eq!(r.json()["result"]["content"][0]["text"], "hi");
    assert_eq!(client_state(c), tcp::State::Established, "keep-alive");
    assert_eq!(w.transport.borrow().session_count(), 1);
}

#[test]
fn progress_streams_as_server_sent_events_then_the_result() {
    let mut w = world(HttpConfig::default());
    let c = w.connect();
    let id = w.initialize(c);
    let r = w.post(
        c,
        Some(&id),
        "",
        &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "slow", "arguments": {}, "_meta": {"progressToken": "tok"}}}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = r.events();
    assert_eq!(events.len(), 11, "{events:?}");
    for (i, e) in events[..10].iter().enumerate() {
        assert_eq!(e["method"], "notifications/progress");
        assert_eq!(e["params"]["progressToken"], "tok");
        assert_eq!(e["params"]["progress"], i as u64 + 1);
        assert_eq!(e["params"]["message"], "piece");
    }
    assert_eq!(events[10]["id"], 7);
    assert_eq!(events[10]["result"]["content"][0]["text"], "done");
    // The connection serves the next request.
    let r = w.post(
        c,
        Some(&id),
        "",
        &json!({"jsonrpc": "2.0", "id": 8, "method": "ping"}),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn cancellation_from_another_connection_ends_the_stream_without_a_result() {
    let mut w = world(HttpConfig::default());
    let c = w.connect();
    let id = w.initialize(c);
    let d = w.connect();
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 9, "reason": "test"}})
    .to_string();
    let cancel_req = format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMcp-Session-Id: {id}\r\n\
         Content-Length: {}\r\n\r\n{cancel}",
        cancel.len()
    );
    during_call(move |step| {
        if step == 3 {
            with_clients(|cl| cl.socket(d).send_slice(cancel_req.as_bytes()).unwrap());
        }
    });
    let r = w.post(
        c,
        Some(&id),
        "",
        &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                "params": {"name": "slow", "arguments": {}, "_meta": {"progressToken": 1}}}),
    );
    let events = r.events();
    assert!(events.len() < 10, "stopped early: {events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["method"] == "notifications/progress"),
        "no result: {events:?}"
    );
    let ack = Response::parse(&received(d)).expect("the cancel was answered");
    assert_eq!(ack.status, 202);
    assert_eq!(w.server.server().stats().cancelled, 1);
    let r = w.post(
        c,
        Some(&id),
        "",
        &json!({"jsonrpc": "2.0", "id": 10, "method": "ping"}),
    );
    assert_eq!(r.json()["id"], 10);
}

#[test]
fn another_session_is_served_while_an_exclusive_call_runs() {
    let mut w = world(HttpConfig::default());
    let c = w.connect();
    let first = w.initialize(c);
    let d = w.connect();
    let second = w.initialize(d);
    assert_ne!(first, second);
    let echo = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": "meanwhile"}}})
    .to_string();
    let echo_req = format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMcp-Session-Id: {second}\r\n\
         Content-Length: {}\r\n\r\n{echo}",
        echo.len()
    );
    let answered_at = std::rc::Rc::new(std::cell::Cell::new(0));
    let seen = answered_at.clone();
    let before = received(d).len();
    during_call(move |step| {
        if step == 2 {
            with_clients(|cl| cl.socket(d).send_slice(echo_req.as_bytes()).unwrap());
        }
        if seen.get() == 0 && Response::parse(&received(d)[before..]).is_some() {
            seen.set(step);
        }
    });
    let r = w.post(
        c,
        Some(&first),
        "",
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "slow", "arguments": {}}}),
    );
    assert_eq!(r.json()["result"]["content"][0]["text"], "done");
    let step = answered_at.get();
    assert!(
        (3..10).contains(&step),
        "answered during the call, at step {step}"
    );
    let echo = Response::parse(&received(d)[before..]).unwrap();
    assert_eq!(echo.json()["result"]["content"][0]["text"], "meanwhile");
}

#[test]
fn transport_rejections_name_their_status() {
    let mut w = world(HttpConfig::default());
    let c = w.connect();
    let id = w.initialize(c);
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    assert_eq!(w.post(c, None, "", &ping).status, 400, "no session id");
    assert_eq!(
        w.post(c, Some("nope"), "", &ping).status,
        404,
        "unknown session"
    );
    assert_eq!(
        w.post(c, Some(&id), "Origin: http://evil.example\r\n", &ping)
            .status,
        403
    );
    assert_eq!(
        w.post(c, Some(&id), "Origin: http://localhost:3000\r\n", &ping)
            .status,
        200
    );
    assert_eq!(
        w.post(c, Some(&id), "MCP-Protocol-Version: 1999-01-01\r\n", &ping)
            .status,
        400
    );
    let raw = |m: &str, extra: &str| {
        format!("{m} /mcp HTTP/1.1\r\nHost: localhost\r\nMcp-Session-Id: {id}\r\n{extra}Content-Length: 0\r\n\r\n")
    };
    assert_eq!(
        w.exchange(c, raw("GET", "Accept: text/event-stream\r\n").as_bytes())
            .status,
        405
    );
    assert_eq!(w.exchange(c, raw("PUT", "").as_bytes()).status, 405);
    let r = w.exchange(
        c,
        b"POST /other HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert_eq!(r.status, 404);
    let r = w.exchange(
        c,
        format!("POST /mcp HTTP/1.1\r\nHost: localhost\r\nMcp-Session-Id: {id}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{{}}").as_bytes(),
    );
    assert_eq!(r.status, 415);
    let r = w.exchange(
        c,
        format!("POST /mcp HTTP/1.1\r\nHost: localhost\r\nMcp-Session-Id: {id}\r\nContent-Type: application/json\r\nAccept: text/html\r\nContent-Length: 2\r\n\r\n{{}}").as_bytes(),
    );
    assert_eq!(r.status, 406);
    let r = w.exchange(
        c,
        format!("POST /mcp HTTP/1.1\r\nHost: localhost\r\nMcp-Session-Id: {id}\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n{{nop").as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32700);
    let r = w.exchange(
        c,
        b"POST /mcp HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert_eq!(r.status, 403, "DNS rebinding: a foreign Host");
    // Every rejection kept the connection and the session.
    assert_eq!(client_state(c), tcp::State::Established);
    assert_eq!(w.post(c, Some(&id), "", &ping).status, 200);
}

#[test]
fn bearer_token_gates_every_request() {
    let mut w = world(HttpConfig {
        token: Some("s3cret-token".into()),
        ..HttpConfig::default()
    });
    let c = w.connect();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let r = w.post(c, None, "", &init);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        w.post(c, None, "Authorization: Bearer s3cret-tokeX\r\n", &init)
            .status,
        401
    );
    assert_eq!(
        w.post(c, None, "Authorization: Bearer s3cret\r\n", &init)
            .status,
        401
    );
    let r = w.post(c, None, "Authorization: Bearer s3cret-token\r\n", &init);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"]["protocolVersion"], "2025-06-18");
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"abcd"));
    assert!(!constant_time_eq(b"", b"a"));
}

#[test]
fn delete_ends_the_session() {
    let mut w = world(HttpConfig::default());
    let c = w.connect();
    let id = w.initialize(c);
    let del = format!("DELETE /mcp HTTP/1.1\r\nHost: localhost\r\nMcp-Session-Id: {id}\r\n\r\n");
    assert_eq!(w.exchange(c, del.as_bytes()).status, 204);
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    assert_eq!(w.post(c, Some(&id), "", &ping).status, 404);
    assert_eq!(w.exchange(c, del.as_bytes()).status, 404);
    w.run_until(|w| w.server.connection_count() == 0);
}

#[test]
fn stateless_requests_need_no_session_and_leave_none() {
    let mut w = world(HttpConfig::default());
    let c = w.connect();
    let r = w.post(
        c,
        None,
        "",
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("mcp-session-id"), None);
    assert_eq!(r.json()["result"]["resultType"], "complete");
    w.run_until(|w| w.server.connection_count() == 0);
    assert_eq!(w.transport.borrow().session_count(), 0);
}

#[test]
fn failed_initialize_leaves_no_session() {
    let mut w = world(HttpConfig::default());
    let c = w.connect();
    let r = w.post(
        c,
        None,
        "",
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["error"]["code"], -32602);
    assert_eq!(r.header("mcp-session-id"), None);
    w.run_until(|w| w.server.connection_count() == 0);
}

#[test]
fn session_ids_carry_the_node_prefix_for_load_balancers() {
    let mut w = world(HttpConfig {
        session_prefix: Some("vm-2".into()),
        ..HttpConfig::default()
    });
    let c = w.connect();
    let id = w.initialize(c);
    let (node, rest) = id.split_once('.').unwrap();
    assert_eq!(node, "vm-2");
    assert_eq!(rest.len(), 32);
    let r = w.post(
        c,
        Some(&id),
        "",
        &json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}),
    );
    assert_eq!(r.status, 200);
    assert!(valid_node_name("vm-2") && valid_node_name("A_b-9"));
    assert!(!valid_node_name("") && !valid_node_name("a.b") && !valid_node_name("a b"));
    assert!(!valid_node_name(&"x".repeat(33)));
}

#[test]
fn sessions_and_queues_are_capped() {
    let mut w = world(HttpConfig {
        max_sessions: 2,
        max_queued_bytes: 300,
        ..HttpConfig::default()
    });
    let c = w.connect();
    let a = w.initialize(c);
    let b = w.initialize(c);
    let third = w.initialize(c);
    // The least recently used idle session made room.
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    assert_eq!(w.post(c, Some(&a), "", &ping).status, 404);
    assert_eq!(w.post(c, Some(&b), "", &ping).status, 200);
    assert_eq!(w.post(c, Some(&third), "", &ping).status, 200);
    let big = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                     "params": {"name": "echo", "arguments": {"text": "x".repeat(400)}}});
    assert_eq!(w.post(c, Some(&b), "", &big).status, 503);
    assert!(w.transport.borrow().session_count() <= 2);
}

#[test]
fn a_client_that_disconnects_does_not_cancel_and_its_reply_is_dropped() {
    let mut w = world(HttpConfig::default());
    let c = w.connect();
    let id = w.initialize(c);
    let d = w.connect();
    let body = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                      "params": {"name": "slow", "arguments": {}}})
    .to_string();
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nMcp-Session-Id: {id}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    during_call(move |step| {
        if step == 2 {
            with_clients(|cl| cl.socket(d).abort());
        }
    });
    with_clients(|cl| cl.socket(d).send_slice(req.as_bytes()).unwrap());
    w.run_until(|w| w.server.server().stats().tool_calls == 1);
    assert_eq!(w.server.server().stats().cancelled, 0);
    let r = w.post(
        c,
        Some(&id),
        "",
        &json!({"jsonrpc": "2.0", "id": 5, "method": "ping"}),
    );
    assert_eq!(r.json()["id"], 5);
}
