//! MCP Streamable HTTP (revisions 2025-06-18 and 2025-11-25) on top of [`HttpServer`],
//! served by the same `mcp` core as vsock: every MCP session is one
//! [`mcp::Connection`] of the core's `ServerLoop`, so lifecycles, dispatch, validation,
//! progress, cancellation and the exclusive-tool queue are the core's; this module only
//! moves messages between HTTP exchanges and those connections.
//!
//! - `POST /mcp` with a JSON-RPC message (or a batch where the session allows one): the
//!   body is pushed to the session's connection as one frame. Notifications and client
//!   responses get `202 Accepted` at once. Requests keep the HTTP exchange open until the
//!   core has answered every request in the body: as `application/json`, or as a
//!   `text/event-stream` when the call can stream (a `tools/call` with a progress token,
//!   or any `tools/call` once the session asked for log messages), with each progress or
//!   log notification as an SSE event and the response as the last one.
//! - What the core writes is routed by JSON-RPC id to the exchange that carried the
//!   request (id-less error replies, e.g. to a malformed batch, go to the oldest exchange
//!   waiting for one); progress notifications by their token; other notifications to the
//!   session's oldest streaming exchange.
//! - `initialize` without `Mcp-Session-Id` creates a session; its id (128 random bits,
//!   hex) comes back in the `Mcp-Session-Id` header of a successful result and is
//!   required on every later request (missing: 400, unknown or ended: 404). A request
//!   that carries the stateless 2026-07-28 `_meta` protocol version needs no session: it
//!   runs on a throw-away one.
//! - `DELETE /mcp` ends a session. `GET /mcp` is 405: the server sends no requests and no
//!   unsolicited notifications, so it offers no standalone stream (allowed by the spec).
//! - `MCP-Protocol-Version`, when sent, must be a revision we speak (400). `Origin`, when
//!   sent, must be an allowed origin (403, DNS-rebinding protection), and `Host` an
//!   allowed host (403). An optional bearer token (`Authorization: Bearer …`, compared
//!   in constant time) gates every request (401).
//! - A notification `notifications/cancelled` for a request of the session ends that
//!   request's exchange at once (the core sends no response to a cancelled request).
//!   An HTTP client that disconnects does not cancel anything (spec): replies for it are
//!   dropped.
//!
//! Memory: bodies are capped by the HTTP reader (the frame limit), the bytes queued for
//! one session by [`HttpConfig::max_queued_bytes`] (503 beyond), the open exchanges per
//! session by [`HttpConfig::max_exchanges`], and the sessions by
//! [`HttpConfig::max_sessions`] (the least recently used idle one is ended to make room,
//! else 503); idle sessions end after [`HttpConfig::session_idle_ns`].

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use mcp::jsonrpc::{classify, error_value, parse_payload, Incoming, RpcError};
use mcp::serde_json::{self, Value};
use mcp::version::META_PROTOCOL_VERSION;
use mcp::{encode_frame, Acceptor, Connection, ConnectionClosed, ProtocolVersion, ReadStatus};

use crate::http::{self, Method, Request};
use crate::http_server::{ConnRef, HttpServer};
use crate::stack::Nic;

/// Hosts and origins a browser on this machine can use (DNS-rebinding protection).
pub const LOCAL_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// The MCP endpoint.
    pub path: String,
    /// Required as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Accepted `Host` names (without port); `["*"]` accepts any.
    pub allowed_hosts: Vec<String>,
    /// Accepted `Origin` hosts (scheme http or https, any port); `["*"]` accepts any.
    /// Requests without `Origin` (non-browser clients) are accepted.
    pub allowed_origins: Vec<String>,
    pub max_sessions: usize,
    /// A session with no request for this long ends.
    pub session_idle_ns: u64,
    /// Bytes of requests waiting in one session for the core.
    pub max_queued_bytes: usize,
    /// Open exchanges (requests waiting for their answer) per session.
    pub max_exchanges: usize,
    /// Put in front of every session id as `<prefix>.<32 hex digits>`, so a load balancer
    /// can send a session's requests to the VM that created it by the id alone
    /// (docs/DEPLOY.md). Letters, digits, `-` and `_` only ([`valid_node_name`]).
    pub session_prefix: Option<String>,
}

/// Whether `name` can prefix session ids: 1 to 32 of `A-Z a-z 0-9 - _`.
pub fn valid_node_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Default for HttpConfig {
    fn default() -> Self {
        let local: Vec<String> = LOCAL_HOSTS.iter().map(|h| String::from(*h)).collect();
        HttpConfig {
            path: "/mcp".into(),
            token: None,
            allowed_hosts: local.clone(),
            allowed_origins: local,
            max_sessions: 64,
            session_idle_ns: 30 * 60 * http::SECOND_NS,
            max_queued_bytes: 2 * 1024 * 1024,
            max_exchanges: 16,
            session_prefix: None,
        }
    }
}

/// What one exchange waits for.
#[derive(Debug)]
struct Exchange {
    conn: ConnRef,
    keep_alive: bool,
    /// Ids of requests not answered yet.
    ids: Vec<Value>,
    /// Replies expected that cannot be matched by id (a batch, an invalid message).
    anonymous: usize,
    progress_tokens: Vec<Value>,
    sse: bool,
    /// JSON mode: the replies so far.
    collected: Vec<Value>,
    batch: bool,
    initialize: bool,
    /// The HTTP connection failed: replies are dropped.
    gone: bool,
}

impl Exchange {
    fn done(&self) -> bool {
        self.ids.is_empty() && self.anonymous == 0
    }
}

#[derive(Debug)]
struct Session {
    key: u64,
    /// `None` until `initialize` succeeded; throw-away (stateless) sessions never get one.
    id: Option<String>,
    /// Frames for the core.
    inbox: VecDeque<u8>,
    exchanges: VecDeque<Exchange>,
    last_used_ns: u64,
    /// Ended (DELETE, expiry, failed initialize): the core sees the stream close.
    ended: bool,
    /// A throw-away session for stateless requests: ends after its exchanges.
    transient: bool,
    /// The client set a log level: tool calls stream.
    wants_logs: bool,
}

impl Session {
    fn finished_transient(&self) -> bool {
        self.transient && self.exchanges.is_empty() && self.inbox.is_empty()
    }
}

/// The network is looked at no more often than this from the session connections and the
/// acceptor: the core asks every connection in turn (and a running tool asks once per
/// token), and one look covers all of them.
const PUMP_INTERVAL_NS: u64 = 100_000;

/// Counters for the log and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpStats {
    pub requests: u64,
    /// Requests answered with a 4xx/5xx by the transport itself.
    pub rejected: u64,
    pub sessions_created: u64,
    pub sessions_ended: u64,
}

/// The transport: HTTP server, sessions, routing. Shared by the acceptor and every
/// session connection ([`SharedTransport`]).
pub struct McpHttp<N: Nic> {
    http: HttpServer<N>,
    config: HttpConfig,
    sessions: Vec<Session>,
    /// Sessions created and not yet handed to the core.
    fresh: VecDeque<u64>,
    next_key: u64,
    random: fn() -> u64,
    stats: HttpStats,
    /// When `pump` last ran.
    last_pump_ns: Option<u64>,
}

pub type SharedTransport<N> = Rc<RefCell<McpHttp<N>>>;

impl<N: Nic> McpHttp<N> {
    /// `random` must give unpredictable bits (session ids are bearer capabilities).
    pub fn new(http: HttpServer<N>, config: HttpConfig, random: fn() -> u64) -> Self {
        McpHttp {
            http,
            config,
            sessions: Vec::new(),
            fresh: VecDeque::new(),
            next_key: 1,
            random,
            stats: HttpStats::default(),
            last_pump_ns: None,
        }
    }

    pub fn shared(self) -> SharedTransport<N> {
        Rc::new(RefCell::new(self))
    }

    pub fn http(&self) -> &HttpServer<N> {
        &self.http
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    pub fn stats(&self) -> HttpStats {
        self.stats
    }

    /// Sessions alive (including throw-away ones).
    pub fn session_count(&self) -> usize {
        self.sessions.iter().filter(|s| !s.ended).count()
    }

    /// Polls the network and handles every complete request. Returns whether anything
    /// happened.
    pub fn pump(&mut self) -> bool {
        self.last_pump_ns = Some(self.http.now_ns());
        let (mut activity, requests) = self.http.poll();
        for (conn, request) in requests {
            activity = true;
            self.stats.requests += 1;
            self.handle(conn, request);
        }
        activity | self.expire()
    }

    /// [`McpHttp::pump`], unless it ran less than [`PUMP_INTERVAL_NS`] ago.
    pub fn pump_if_due(&mut self) -> bool {
        let now = self.http.now_ns();
        if self
            .last_pump_ns
            .is_some_and(|t| now.saturating_sub(t) < PUMP_INTERVAL_NS)
        {
            return false;
        }
        self.pump()
    }

    fn session_mut(&mut self, key: u64) -> Option<&mut Session> {
        self.sessions.iter_mut().find(|s| s.key == key)
    }

    fn reject(&mut self, conn: ConnRef, request: &Request, status: u16, why: &str) {
        self.stats.rejected += 1;
        let body = error_value(Value::Null, &RpcError::new(-32000, why));
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut headers: Vec<(&str, &str)> = alloc::vec![("Content-Type", "application/json")];
        match status {
            401 => headers.push(("WWW-Authenticate", "Bearer")),
            405 => headers.push(("Allow", "POST, DELETE")),
            503 => headers.push(("Retry-After", "1")),
            _ => {}
        }
        let _ = self
            .http
            .respond(conn, status, &headers, &body, request.keep_alive);
    }

    fn handle(&mut self, conn: ConnRef, request: Request) {
        if request.path() != self.config.path {
            return self.reject(conn, &request, 404, "not found: the MCP endpoint is /mcp");
        }
        if let Err((status, why)) = self.check_headers(&request) {
            return self.reject(conn, &request, status, &why);
        }
        match request.method {
            Method::Post => self.post(conn, request),
            Method::Delete => self.delete(conn, request),
            Method::Get | Method::Head => self.reject(
                conn,
                &request,
                405,
                "this server offers no standalone SSE stream: POST requests to /mcp",
            ),
            _ => self.reject(conn, &request, 405, "only POST and DELETE are served"),
        }
    }

    /// Host, Origin, token and protocol version: the checks every method shares.
    fn check_headers(&self, r: &Request) -> Result<(), (u16, String)> {
        if let Some(host) = r.header("host") {
            if !allowed(&self.config.allowed_hosts, host_name(host)) {
                return Err((403, alloc::format!("host {host:?} is not allowed")));
            }
        }
        if let Some(origin) = r.header("origin") {
            let ok = origin_host(origin).is_some_and(|h| allowed(&self.config.allowed_origins, h));
            if !ok {
                return Err((403, alloc::format!("origin {origin:?} is not allowed")));
            }
        }
        if let Some(token) = &self.config.token {
            let given = r
                .header("authorization")
                .and_then(|a| {
                    a.strip_prefix("Bearer ")
                        .or_else(|| a.strip_prefix("bearer "))
                })
                .unwrap_or("");
            if !constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
                return Err((401, "missing or wrong bearer token".into()));
            }
        }
        if let Some(v) = r.header("mcp-protocol-version") {
            if ProtocolVersion::parse(v).is_none() {
                return Err((
                    400,
                    alloc::format!("unsupported MCP-Protocol-Version {v:?}"),
                ));
            }
        }
        Ok(())
    }

    fn delete(&mut self, conn: ConnRef, request: Request) {
        let Some(id) = request.header("mcp-session-id") else {
            return self.reject(conn, &request, 400, "DELETE needs an Mcp-Session-Id header");
        };
        let Some(s) = self
            .sessions
            .iter_mut()
            .find(|s| !s.ended && s.id.as_deref() == Some(id))
        else {
            return self.reject(conn, &request, 404, "unknown or ended session");
        };
        s.ended = true;
        s.inbox.clear();
        self.stats.sessions_ended += 1;
        let _ = self.http.respond(conn, 204, &[], b"", request.keep_alive);
    }

    fn post(&mut self, conn: ConnRef, request: Request) {
        let content_type = request.header("content-type").unwrap_or("");
        if !media_type_is(content_type, "application/json") {
            return self.reject(conn, &request, 415, "the body must be application/json");
        }
        let accept = request.header("accept").unwrap_or("*/*");
        if !accepts(accept, "application/json") {
            return self.reject(
                conn,
                &request,
                406,
                "the client must accept application/json and text/event-stream",
            );
        }
        let sse_ok = accepts(accept, "text/event-stream");
        let value = match parse_payload(&request.body) {
            Ok(v) => v,
            Err(e) => {
                self.stats.rejected += 1;
                let body = serde_json::to_vec(&error_value(Value::Null, &e)).unwrap_or_default();
                let _ = self.http.respond(
                    conn,
                    400,
                    &[("Content-Type", "application/json")],
                    &body,
                    request.keep_alive,
                );
                return;
            }
        };
        let shape = Shape::of(&value);
        let now = self.http.now_ns();
        let key = match request.header("mcp-session-id") {
            Some(id) => match self
                .sessions
                .iter()
                .find(|s| !s.ended && s.id.as_deref() == Some(id))
            {
                Some(s) => s.key,
                None => return self.reject(conn, &request, 404, "unknown or ended session"),
            },
            None if shape.initialize || shape.stateless => {
                match self.new_session(!shape.initialize, now) {
                    Some(k) => k,
                    None => return self.reject(conn, &request, 503, "too many sessions"),
                }
            }
            None => {
                return self.reject(
                    conn,
                    &request,
                    400,
                    "missing Mcp-Session-Id header: send initialize first",
                )
            }
        };
        let (max_queued, max_exchanges) = (self.config.max_queued_bytes, self.config.max_exchanges);
        let Some(s) = self.session_mut(key) else {
            return;
        };
        s.last_used_ns = now;
        let expects = !shape.ids.is_empty() || shape.anonymous > 0;
        if s.inbox.len() + request.body.len() + 4 > max_queued
            || (expects && s.exchanges.len() >= max_exchanges)
        {
            return self.reject(
                conn,
                &request,
                503,
                "session busy: too many queued requests",
            );
        }
        s.wants_logs |= shape.set_level;
        s.inbox.extend(encode_frame(&request.body));
        // A cancellation ends the cancelled request's exchange: the core will not answer it.
        let mut finished = Vec::new();
        for id in &shape.cancelled {
            for (i, x) in s.exchanges.iter_mut().enumerate() {
                if let Some(p) = x.ids.iter().position(|v| v == id) {
                    x.ids.remove(p);
                    if x.done() {
                        finished.push(i);
                    }
                }
            }
        }
        finished.sort_unstable();
        finished.dedup();
        if !expects {
            let session_id = s.id.clone();
            for i in finished.into_iter().rev() {
                self.finish_exchange(key, i);
            }
            let headers = session_headers(&session_id);
            let _ = self
                .http
                .respond(conn, 202, &as_refs(&headers), b"", request.keep_alive);
            return;
        }
        let sse = sse_ok && shape.tool_call && (!shape.progress_tokens.is_empty() || s.wants_logs);
        s.exchanges.push_back(Exchange {
            conn,
            keep_alive: request.keep_alive,
            ids: shape.ids,
            anonymous: shape.anonymous,
            progress_tokens: shape.progress_tokens,
            sse,
            collected: Vec::new(),
            batch: shape.batch,
            initialize: shape.initialize,
            gone: false,
        });
        if sse {
            let headers = session_headers(&s.id);
            let mut h = as_refs(&headers);
            h.push(("Content-Type", "text/event-stream"));
            h.push(("Cache-Control", "no-cache"));
            if self
                .http
                .start_stream(conn, 200, &h, request.keep_alive)
                .is_err()
            {
                if let Some(x) = self.session_mut(key).and_then(|s| s.exchanges.back_mut()) {
                    x.gone = true;
                }
            }
        }
        for i in finished.into_iter().rev() {
            self.finish_exchange(key, i);
        }
    }

    fn new_session(&mut self, transient: bool, now: u64) -> Option<u64> {
        let live = self.sessions.iter().filter(|s| !s.ended).count();
        if live >= self.config.max_sessions {
            // Make room: the least recently used session with nothing in flight.
            let victim = self
                .sessions
                .iter_mut()
                .filter(|s| !s.ended && s.exchanges.is_empty() && s.inbox.is_empty())
                .min_by_key(|s| s.last_used_ns)?;
            victim.ended = true;
            self.stats.sessions_ended += 1;
        }
        let key = self.next_key;
        self.next_key += 1;
        self.sessions.push(Session {
            key,
            id: None,
            inbox: VecDeque::new(),
            exchanges: VecDeque::new(),
            last_used_ns: now,
            ended: false,
            transient,
            wants_logs: false,
        });
        self.fresh.push_back(key);
        self.stats.sessions_created += 1;
        Some(key)
    }

    fn new_session_id(random: fn() -> u64, prefix: Option<&str>) -> String {
        let mut s = String::with_capacity(66);
        if let Some(p) = prefix {
            s.push_str(p);
            s.push('.');
        }
        for _ in 0..2 {
            let v = random();
            for i in (0..16).rev() {
                s.push(char::from(
                    b"0123456789abcdef"[((v >> (i * 4)) & 0xf) as usize],
                ));
            }
        }
        s
    }

    /// Ends idle sessions. Returns whether any ended.
    fn expire(&mut self) -> bool {
        let now = self.http.now_ns();
        let idle = self.config.session_idle_ns;
        let mut any = false;
        for s in &mut self.sessions {
            if !s.ended
                && s.exchanges.is_empty()
                && s.inbox.is_empty()
                && now.saturating_sub(s.last_used_ns) > idle
            {
                s.ended = true;
                self.stats.sessions_ended += 1;
                any = true;
            }
        }
        any
    }

    /// Sends what an exchange collected (JSON mode) or ends its stream, and removes it.
    fn finish_exchange(&mut self, key: u64, index: usize) {
        let Some(s) = self.session_mut(key) else {
            return;
        };
        let Some(x) = s.exchanges.remove(index) else {
            return;
        };
        let session_id = s.id.clone();
        if x.gone {
            return;
        }
        if x.sse {
            let _ = self.http.end_stream(x.conn, x.keep_alive);
            return;
        }
        let headers = session_headers(&session_id);
        let mut h = as_refs(&headers);
        if x.collected.is_empty() {
            // Everything in it was cancelled.
            let _ = self.http.respond(x.conn, 204, &h, b"", x.keep_alive);
            return;
        }
        let body = if x.batch || x.collected.len() > 1 {
            serde_json::to_vec(&Value::Array(x.collected))
        } else {
            serde_json::to_vec(&x.collected[0])
        }
        .unwrap_or_default();
        h.push(("Content-Type", "application/json"));
        let _ = self.http.respond(x.conn, 200, &h, &body, x.keep_alive);
    }

    /// A message the core wrote to session `key`.
    fn route(&mut self, key: u64, payload: &[u8]) {
        let Ok(value) = serde_json::from_slice::<Value>(payload) else {
            log::error!("mcp-http: the core wrote a message that is not JSON");
            return;
        };
        let random = self.random;
        let prefix = self.config.session_prefix.clone();
        let Some(s) = self.session_mut(key) else {
            return;
        };
        let is_reply =
            value.is_array() || value.get("result").is_some() || value.get("error").is_some();
        if is_reply {
            let id = value.get("id").cloned().unwrap_or(Value::Null);
            let by_id = !value.is_array() && !id.is_null();
            let index = if by_id {
                s.exchanges.iter().position(|x| x.ids.contains(&id))
            } else {
                s.exchanges.iter().position(|x| x.anonymous > 0)
            };
            let Some(index) = index else {
                // A reply to a cancelled request that finished anyway.
                return;
            };
            let x = &mut s.exchanges[index];
            if by_id {
                x.ids.retain(|v| v != &id);
            } else {
                x.anonymous -= 1;
            }
            if x.initialize && s.id.is_none() {
                if value.get("result").is_some() {
                    s.id = Some(Self::new_session_id(random, prefix.as_deref()));
                } else {
                    // A failed initialize leaves no session behind.
                    s.ended = true;
                }
            }
            let x = &mut s.exchanges[index];
            let (conn, sse, gone) = (x.conn, x.sse, x.gone);
            if !sse {
                x.collected.push(value);
            }
            let done = x.done();
            if sse
                && !gone
                && self
                    .http
                    .send_chunk(conn, &http::sse_event(payload, None))
                    .is_err()
            {
                if let Some(x) = self
                    .session_mut(key)
                    .and_then(|s| s.exchanges.get_mut(index))
                {
                    x.gone = true;
                }
            }
            if done {
                self.finish_exchange(key, index);
            }
            return;
        }
        // A notification: progress to the exchange with its token, anything else to the
        // oldest streaming exchange.
        let token = value
            .get("params")
            .and_then(|p| p.get("progressToken"))
            .filter(|_| {
                value.get("method").and_then(Value::as_str) == Some("notifications/progress")
            });
        let target = match token {
            Some(t) => s
                .exchanges
                .iter()
                .position(|x| x.progress_tokens.contains(t)),
            None => s.exchanges.iter().position(|x| x.sse),
        };
        let Some(x) = target.and_then(|i| s.exchanges.get_mut(i)) else {
            return;
        };
        if !x.sse || x.gone {
            return;
        }
        let conn = x.conn;
        if self
            .http
            .send_chunk(conn, &http::sse_event(payload, None))
            .is_err()
        {
            if let Some(x) = target.and_then(|i| self.session_mut(key)?.exchanges.get_mut(i)) {
                x.gone = true;
            }
        }
    }

    /// The core dropped a session's connection.
    fn remove(&mut self, key: u64) {
        let Some(pos) = self.sessions.iter().position(|s| s.key == key) else {
            return;
        };
        // Exchanges still open get their streams ended (or an empty answer).
        while self.sessions[pos].exchanges.front().is_some() {
            self.finish_exchange(key, 0);
        }
        let s = self.sessions.remove(pos);
        if !s.ended {
            self.stats.sessions_ended += 1;
        }
    }
}

/// What a POST body holds, as far as routing needs to know (classification is the core's
/// own `classify`).
#[derive(Debug, Default)]
struct Shape {
    ids: Vec<Value>,
    anonymous: usize,
    progress_tokens: Vec<Value>,
    cancelled: Vec<Value>,
    batch: bool,
    initialize: bool,
    stateless: bool,
    tool_call: bool,
    set_level: bool,
}

impl Shape {
    fn of(value: &Value) -> Shape {
        let mut shape = Shape::default();
        let items: &[Value] = match value {
            Value::Array(items) => {
                shape.batch = true;
                items
            }
            single => core::slice::from_ref(single),
        };
        for item in items {
            let meta = item.get("params").and_then(|p| p.get("_meta"));
            match classify(item.clone()) {
                Ok(Incoming::Request { id, method, .. }) => {
                    shape.stateless |= meta.and_then(|m| m.get(META_PROTOCOL_VERSION)).is_some();
                    if let Some(t) = meta.and_then(|m| m.get("progressToken")) {
                        shape.progress_tokens.push(t.clone());
                    }
                    shape.initialize |= method == "initialize" && !shape.batch;
                    shape.tool_call |= method == "tools/call";
                    shape.set_level |= method == "logging/setLevel";
                    shape.ids.push(id);
                }
                Ok(Incoming::Notification { method, params }) => {
                    if method == "notifications/cancelled" {
                        if let Some(id) = params.as_ref().and_then(|p| p.get("requestId")) {
                            shape.cancelled.push(id.clone());
                        }
                    }
                }
                Ok(Incoming::Response) => {}
                Err((id, _)) if !id.is_null() => shape.ids.push(id),
                Err(_) => shape.anonymous += 1,
            }
        }
        if shape.batch {
            // One array (or one error) comes back for the whole batch.
            shape.anonymous = usize::from(!shape.ids.is_empty() || shape.anonymous > 0);
            shape.ids.clear();
        }
        shape
    }
}

fn session_headers(id: &Option<String>) -> Vec<(&'static str, String)> {
    match id {
        Some(id) => alloc::vec![("Mcp-Session-Id", id.clone())],
        None => Vec::new(),
    }
}

fn as_refs<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `text/event-stream; charset=…` is `text/event-stream`.
fn media_type_is(value: &str, wanted: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(wanted))
}

/// Whether an Accept header admits `wanted` (exactly, as `type/*`, or `*/*`).
fn accepts(accept: &str, wanted: &str) -> bool {
    let main = wanted.split('/').next().unwrap_or("");
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let m = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        !refused
            && (m.eq_ignore_ascii_case(wanted)
                || m == "*/*"
                || m.strip_suffix("/*")
                    .is_some_and(|t| t.eq_ignore_ascii_case(main)))
    })
}

/// `localhost:8080` → `localhost`, `[::1]:8080` → `[::1]`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |e| &host[..=e]);
    }
    host.split(':').next().unwrap_or(host)
}

/// `http://localhost:3000` → `localhost`; other schemes (and `null`) → None.
fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    Some(host_name(authority))
}

fn allowed(list: &[String], host: &str) -> bool {
    list.iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(host))
}

/// Compares without an early exit, so the time does not tell how much of a guess was
/// right (the length of the token is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    // Keep the compiler from turning the loop into an early-exit comparison.
    core::hint::black_box(diff) == 0
}

/// One MCP session as a connection of the core's `ServerLoop`.
pub struct SessionConnection<N: Nic> {
    shared: SharedTransport<N>,
    key: u64,
}

impl<N: Nic> Connection for SessionConnection<N> {
    fn try_read(&mut self, buf: &mut [u8]) -> ReadStatus {
        let mut t = self.shared.borrow_mut();
        let waiting = t.session_mut(self.key).is_some_and(|s| !s.inbox.is_empty());
        if !waiting {
            // Nothing queued: look at the network (this is how a running tool's
            // cancellation check and the core's service of other sessions see new
            // requests).
            t.pump_if_due();
        }
        let Some(s) = t.session_mut(self.key) else {
            return ReadStatus::Closed;
        };
        if s.inbox.is_empty() {
            return if s.ended || s.finished_transient() {
                ReadStatus::Closed
            } else {
                ReadStatus::WouldBlock
            };
        }
        let n = buf.len().min(s.inbox.len());
        for (dst, src) in buf.iter_mut().zip(s.inbox.drain(..n)) {
            *dst = src;
        }
        ReadStatus::Data(n)
    }

    fn write_all(&mut self, data: &[u8]) -> Result<(), ConnectionClosed> {
        let mut t = self.shared.borrow_mut();
        let ended = t
            .session_mut(self.key)
            .is_none_or(|s| s.ended && s.exchanges.is_empty());
        if ended {
            return Err(ConnectionClosed);
        }
        // The core writes one frame per call: a u32 length, then the message.
        let mut rest = data;
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let Some(payload) = rest.get(4..4 + len) else {
                log::error!("mcp-http: a partial frame from the core");
                break;
            };
            t.route(self.key, payload);
            rest = &rest[4 + len..];
        }
        Ok(())
    }
}

impl<N: Nic> Drop for SessionConnection<N> {
    fn drop(&mut self) {
        if let Ok(mut t) = self.shared.try_borrow_mut() {
            t.remove(self.key);
        }
    }
}

/// Hands new sessions to the core's `ServerLoop`; polling it polls the network.
pub struct SessionAcceptor<N: Nic>(pub SharedTransport<N>);

impl<N: Nic> Acceptor<SessionConnection<N>> for SessionAcceptor<N> {
    fn accept(&mut self) -> Option<SessionConnection<N>> {
        let mut t = self.0.borrow_mut();
        if t.fresh.is_empty() {
            t.pump_if_due();
        }
        let key = t.fresh.pop_front()?;
        Some(SessionConnection {
            shared: self.0.clone(),
            key,
        })
    }
}

#[cfg(test)]
mod tests;
