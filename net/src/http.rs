//! HTTP/1.1 server side of one connection, without sockets: bytes in, [`Event`]s out, and
//! the encoders for what goes back (fixed-length responses, chunked streams, SSE events).
//!
//! The request head is parsed by `httparse`, chunk sizes by `httparse::parse_chunk_size`;
//! this module only adds the framing rules of RFC 9112 around them (Content-Length vs
//! Transfer-Encoding, keep-alive, `Expect: 100-continue`) and the limits a server on the
//! open network needs. Everything a client can make us hold is bounded by [`Limits`]:
//! the head (bytes and header count), the body (decoded bytes, the same cap as an MCP
//! frame), chunk-size lines and trailers, and time (a head must arrive within
//! `head_timeout_ns` of its first byte — slowloris —, a whole request within
//! `request_timeout_ns`, and an idle keep-alive connection is closed after
//! `idle_timeout_ns`). The buffer never holds more than one request's head, body and a
//! read's worth of what follows, because the caller reads only while
//! [`RequestReader::wants_input`] says so.
//!
//! A framing error ends the connection: the reader reports it once, the caller answers
//! with [`HttpError::status`] and closes, because after a broken length or chunk the next
//! request's start cannot be found. Requests that are well framed but wrong for the
//! application (a bad header value, a wrong path) are the application's business and keep
//! the connection.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

/// What one connection may make the server hold or wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line + headers, bytes.
    pub max_head: usize,
    /// Number of header fields.
    pub max_headers: usize,
    /// Decoded body bytes (Content-Length or the sum of the chunks).
    pub max_body: usize,
    /// From the first byte of a request to the end of its head.
    pub head_timeout_ns: u64,
    /// From the first byte of a request to the end of its body.
    pub request_timeout_ns: u64,
    /// A keep-alive connection with no request in progress is closed after this.
    pub idle_timeout_ns: u64,
}

pub const SECOND_NS: u64 = 1_000_000_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 8 * 1024,
            max_headers: 32,
            max_body: 1024 * 1024,
            head_timeout_ns: 10 * SECOND_NS,
            request_timeout_ns: 60 * SECOND_NS,
            idle_timeout_ns: 60 * SECOND_NS,
        }
    }
}

/// Longest chunk-size line (size, extensions, CRLF) we wait for.
const MAX_CHUNK_LINE: usize = 1024;

/// Why a request could not be read. Each maps to a status code; the connection then closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed request line, header, length or chunk (400).
    BadRequest(String),
    /// The head exceeds `max_head` bytes or `max_headers` fields (431).
    HeadTooLarge,
    /// The body exceeds `max_body` (413).
    BodyTooLarge { limit: usize },
    /// A method that carries a body came without a length (411).
    LengthRequired,
    /// A transfer coding other than chunked (501).
    UnsupportedTransferCoding(String),
    /// Not HTTP/1.x (505).
    Version,
    /// The head or the request did not arrive in time (408).
    Timeout,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::LengthRequired => 411,
            HttpError::UnsupportedTransferCoding(_) => 501,
            HttpError::Version => 505,
            HttpError::Timeout => 408,
        }
    }
}

impl core::fmt::Display for HttpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::HeadTooLarge => write!(f, "request head too large"),
            HttpError::BodyTooLarge { limit } => {
                write!(f, "request body larger than {limit} bytes")
            }
            HttpError::LengthRequired => write!(f, "a body needs Content-Length or chunked"),
            HttpError::UnsupportedTransferCoding(t) => {
                write!(f, "transfer coding {t:?} is not supported (only chunked)")
            }
            HttpError::Version => write!(f, "only HTTP/1.0 and HTTP/1.1 are served"),
            HttpError::Timeout => write!(f, "request not received in time"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Delete,
    Options,
    Other(String),
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other(s) => s,
        }
    }
}

/// One complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The request target as sent (origin form, e.g. `/mcp?x=1`).
    pub target: String,
    /// HTTP/1.0 = 0, HTTP/1.1 = 1.
    pub minor_version: u8,
    /// Field names lower-cased; values as sent (not necessarily UTF-8).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The client allows the connection to stay open after the response.
    pub keep_alive: bool,
}

impl Request {
    /// The value of the first header `name` (lower case), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| core::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// How many times header `name` occurs.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }

    /// The path of the target, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// What the reader has for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete request.
    Request(Request),
    /// The client sent `Expect: 100-continue` and waits for [`CONTINUE`] before the body.
    Continue,
    /// Framing error or timeout: answer with its status and close.
    Error(HttpError),
    /// The idle keep-alive connection timed out: close without a response.
    IdleTimeout,
}

/// The interim response that lets a client waiting on `Expect: 100-continue` send its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[derive(Debug)]
enum BodyState {
    Length(usize),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// In a chunk's data: bytes left.
    ChunkData(usize),
    /// After a chunk's data: its CRLF.
    ChunkEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

#[derive(Debug)]
struct Pending {
    request: Request,
    body: BodyState,
    /// Trailer bytes seen so far (bounded by `max_head`).
    trailer_bytes: usize,
}

/// Reads requests from one connection's bytes.
#[derive(Debug)]
pub struct RequestReader {
    limits: Limits,
    buf: Vec<u8>,
    pending: Option<Pending>,
    /// When the first byte of the current request arrived.
    started_ns: Option<u64>,
    /// Last time bytes arrived or a request finished.
    last_activity_ns: u64,
    /// A framing error was reported: the connection is unusable.
    failed: bool,
}

impl RequestReader {
    pub fn new(limits: Limits, now_ns: u64) -> Self {
        RequestReader {
            limits,
            buf: Vec::new(),
            pending: None,
            started_ns: None,
            last_activity_ns: now_ns,
            failed: false,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes buffered and not yet part of a returned request.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the caller should read more bytes now. False once the buffer holds a whole
    /// request plus slack, so a client cannot make us buffer its pipelined requests.
    pub fn wants_input(&self) -> bool {
        !self.failed && self.buf.len() < self.limits.max_head + MAX_CHUNK_LINE + 4096
    }

    /// True while a request is partly received.
    pub fn in_request(&self) -> bool {
        self.started_ns.is_some()
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, data: &[u8], now_ns: u64) {
        if data.is_empty() || self.failed {
            return;
        }
        self.last_activity_ns = now_ns;
        if self.started_ns.is_none() {
            self.started_ns = Some(now_ns);
        }
        self.buf.extend_from_slice(data);
    }

    /// The next event, if any: a complete request, an interim-response request, an error,
    /// or a timeout. Call until it returns `None` after each `push` and now and then.
    pub fn next_event(&mut self, now_ns: u64) -> Option<Event> {
        if self.failed {
            return None;
        }
        // A request that already began is finished before a new one starts, even if its
        // bytes are all buffered.
        match self.advance() {
            Ok(Some(event)) => return Some(event),
            Ok(None) => {}
            Err(e) => return Some(self.fail(e)),
        }
        if let Some(start) = self.started_ns {
            let elapsed = now_ns.saturating_sub(start);
            let head_done = self.pending.is_some();
            if (!head_done && elapsed > self.limits.head_timeout_ns)
                || elapsed > self.limits.request_timeout_ns
            {
                return Some(self.fail(HttpError::Timeout));
            }
        } else if now_ns.saturating_sub(self.last_activity_ns) > self.limits.idle_timeout_ns {
            self.failed = true;
            return Some(Event::IdleTimeout);
        }
        None
    }

    /// Restarts the idle clock (e.g. after a long response was written).
    pub fn touch(&mut self, now_ns: u64) {
        self.last_activity_ns = now_ns;
    }

    fn fail(&mut self, e: HttpError) -> Event {
        self.failed = true;
        self.buf = Vec::new();
        self.pending = None;
        Event::Error(e)
    }

    fn advance(&mut self) -> Result<Option<Event>, HttpError> {
        if self.pending.is_none() {
            if self.buf.is_empty() {
                self.started_ns = None;
                return Ok(None);
            }
            let Some(pending) = self.parse_head()? else {
                return Ok(None);
            };
            let expects_continue = pending
                .request
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
            let has_body = !matches!(pending.body, BodyState::Length(0));
            self.pending = Some(pending);
            if expects_continue && has_body && self.buf.is_empty() {
                return Ok(Some(Event::Continue));
            }
        }
        self.advance_body()
    }

    /// Parses the head at the start of the buffer; `None` while it is incomplete.
    fn parse_head(&mut self) -> Result<Option<Pending>, HttpError> {
        // Leading empty lines before a request line are ignored (RFC 9112 §2.2).
        let skip = self
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if skip > 0 {
            self.buf.drain(..skip);
            if self.buf.is_empty() {
                return Ok(None);
            }
        }
        let mut fields = alloc::vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut req = httparse::Request::new(&mut fields);
        let head_len = match req.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if self.buf.len() > self.limits.max_head {
                    return Err(HttpError::HeadTooLarge);
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
            Err(httparse::Error::Version) => return Err(HttpError::Version),
            Err(e) => return Err(HttpError::BadRequest(alloc::format!("{e}"))),
        };
        if head_len > self.limits.max_head {
            return Err(HttpError::HeadTooLarge);
        }
        let minor_version = req.version.unwrap_or(1);
        let method = Method::parse(req.method.unwrap_or(""));
        let target = String::from(req.path.unwrap_or(""));
        if !target.starts_with('/') && target != "*" {
            return Err(HttpError::BadRequest(alloc::format!(
                "request target {target:?} is not in origin form"
            )));
        }
        let headers: Vec<(String, Vec<u8>)> = req
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        let mut request = Request {
            method,
            target,
            minor_version,
            headers,
            body: Vec::new(),
            keep_alive: false,
        };
        request.keep_alive = keep_alive(&request);
        if minor_version == 1 && request.header_count("host") != 1 {
            return Err(HttpError::BadRequest(
                "HTTP/1.1 needs exactly one Host header".into(),
            ));
        }
        let body = body_framing(&request, self.limits.max_body)?;
        self.buf.drain(..head_len);
        Ok(Some(Pending {
            request,
            body,
            trailer_bytes: 0,
        }))
    }

    fn advance_body(&mut self) -> Result<Option<Event>, HttpError> {
        let max_body = self.limits.max_body;
        let max_head = self.limits.max_head;
        loop {
            let Some(p) = self.pending.as_mut() else {
                return Ok(None);
            };
            match p.body {
                BodyState::Length(left) => {
                    let n = left.min(self.buf.len());
                    p.request.body.extend_from_slice(&self.buf[..n]);
                    self.buf.drain(..n);
                    if n < left {
                        p.body = BodyState::Length(left - n);
                        return Ok(None);
                    }
                    return Ok(Some(self.finish()));
                }
                BodyState::ChunkSize => match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((n, size))) => {
                        self.buf.drain(..n);
                        if size == 0 {
                            p.body = BodyState::Trailers;
                            continue;
                        }
                        let room = max_body - p.request.body.len();
                        if size > room as u64 {
                            return Err(HttpError::BodyTooLarge { limit: max_body });
                        }
                        p.body = BodyState::ChunkData(size as usize);
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.buf.len() > MAX_CHUNK_LINE {
                            return Err(HttpError::BadRequest("chunk-size line too long".into()));
                        }
                        return Ok(None);
                    }
                    Err(_) => return Err(HttpError::BadRequest("invalid chunk size".into())),
                },
                BodyState::ChunkData(left) => {
                    let n = left.min(self.buf.len());
                    p.request.body.extend_from_slice(&self.buf[..n]);
                    self.buf.drain(..n);
                    if n < left {
                        p.body = BodyState::ChunkData(left - n);
                        return Ok(None);
                    }
                    p.body = BodyState::ChunkEnd;
                }
                BodyState::ChunkEnd => {
                    if self.buf.len() < 2 {
                        if self.buf.first().is_some_and(|&b| b != b'\r') {
                            return Err(HttpError::BadRequest("chunk not followed by CRLF".into()));
                        }
                        return Ok(None);
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(HttpError::BadRequest("chunk not followed by CRLF".into()));
                    }
                    self.buf.drain(..2);
                    p.body = BodyState::ChunkSize;
                }
                BodyState::Trailers => {
                    // Trailer fields are read and dropped: nothing we serve uses them.
                    let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                        if p.trailer_bytes + self.buf.len() > max_head {
                            return Err(HttpError::HeadTooLarge);
                        }
                        return Ok(None);
                    };
                    p.trailer_bytes += eol + 2;
                    if p.trailer_bytes > max_head {
                        return Err(HttpError::HeadTooLarge);
                    }
                    self.buf.drain(..eol + 2);
                    if eol == 0 {
                        return Ok(Some(self.finish()));
                    }
                }
            }
        }
    }

    fn finish(&mut self) -> Event {
        let p = self.pending.take().expect("finish with a pending request");
        self.started_ns = None;
        if !self.buf.is_empty() {
            // Pipelined: the next request's clock starts now.
            self.started_ns = Some(self.last_activity_ns);
        }
        Event::Request(p.request)
    }
}

fn keep_alive(r: &Request) -> bool {
    let tokens = r
        .headers
        .iter()
        .filter(|(n, _)| n == "connection")
        .filter_map(|(_, v)| core::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    let mut close = false;
    let mut keep = false;
    for t in tokens {
        close |= t.eq_ignore_ascii_case("close");
        keep |= t.eq_ignore_ascii_case("keep-alive");
    }
    if r.minor_version == 0 {
        keep && !close
    } else {
        !close
    }
}

/// How the body is delimited (RFC 9112 §6.3).
fn body_framing(r: &Request, max_body: usize) -> Result<BodyState, HttpError> {
    let te: Vec<&[u8]> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .map(|(_, v)| v.as_slice())
        .collect();
    let cl: Vec<&[u8]> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_slice())
        .collect();
    if !te.is_empty() {
        if !cl.is_empty() {
            // Request smuggling territory: refuse rather than pick one.
            return Err(HttpError::BadRequest(
                "both Transfer-Encoding and Content-Length".into(),
            ));
        }
        if r.minor_version == 0 {
            return Err(HttpError::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request".into(),
            ));
        }
        let mut codings = te
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim_ascii)
            .filter(|c| !c.is_empty());
        let first = codings.next();
        let rest = codings.next();
        return match (first, rest) {
            (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(BodyState::ChunkSize),
            _ => Err(HttpError::UnsupportedTransferCoding(
                String::from_utf8_lossy(te[0]).into_owned(),
            )),
        };
    }
    let mut length: Option<u64> = None;
    for v in &cl {
        for part in v.split(|&b| b == b',') {
            let n = parse_decimal(trim_ascii(part)).ok_or_else(|| {
                HttpError::BadRequest(alloc::format!(
                    "invalid Content-Length {:?}",
                    String::from_utf8_lossy(v)
                ))
            })?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::BadRequest(
                    "conflicting Content-Length values".into(),
                ));
            }
            length = Some(n);
        }
    }
    match length {
        Some(n) if n > max_body as u64 => Err(HttpError::BodyTooLarge { limit: max_body }),
        Some(n) => Ok(BodyState::Length(n as usize)),
        // POST without a length has no body we could find the end of.
        None if r.method == Method::Post => Err(HttpError::LengthRequired),
        None => Ok(BodyState::Length(0)),
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

fn parse_decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add((d - b'0') as u64)
    })
}

/// The reason phrase for the status codes we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn head(status: u16, headers: &[(&str, &str)], keep_alive: bool) -> String {
    let mut s = String::with_capacity(128);
    let _ = write!(s, "HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        let _ = write!(s, "{name}: {value}\r\n");
    }
    if !keep_alive {
        s.push_str("Connection: close\r\n");
    }
    s
}

/// A complete response with a body of known length (also for HEAD-less empty bodies).
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut s = head(status, headers, keep_alive);
    let _ = write!(s, "Content-Length: {}\r\n\r\n", body.len());
    let mut out = s.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The head of a chunked response; the body follows as [`chunk`]s and [`last_chunk`].
pub fn chunked_head(status: u16, headers: &[(&str, &str)], keep_alive: bool) -> Vec<u8> {
    let mut s = head(status, headers, keep_alive);
    s.push_str("Transfer-Encoding: chunked\r\n\r\n");
    s.into_bytes()
}

/// One chunk of a chunked body (empty data gives nothing: an empty chunk would end it).
pub fn chunk(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(data.len() + 12);
    let mut s = String::new();
    let _ = write!(s, "{:x}\r\n", data.len());
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// One server-sent event carrying a JSON-RPC message (`data` must hold no newline; JSON
/// encoded by serde_json never does). `id` lets a client resume after it.
pub fn sse_event(data: &[u8], id: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 40);
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out
}

#[cfg(test)]
mod tests;
