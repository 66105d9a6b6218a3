//! The client side of MCP Streamable HTTP (`--url http://HOST:PORT/mcp`): every message is
//! a POST; answers come back as one JSON body or as an SSE stream whose events are the
//! messages. [`HttpClient::send`] posts and reads the response head; [`HttpClient::recv`]
//! yields the answers in order, reading the stream as it arrives. A message sent while a
//! stream is still open (e.g. `notifications/cancelled` during `infer`) goes over a second
//! connection. The session id from `initialize` and the negotiated protocol version are
//! sent on every later request, as the spec requires.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// `http://host:port/path` split up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port` for TCP and the Host header.
    pub authority: String,
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--url {url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("--url {url}: no host"));
        }
        let authority = if authority
            .rsplit(':')
            .next()
            .is_some_and(|p| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Url {
            authority,
            path: path.to_string(),
        })
    }
}

/// A connection with its unread bytes.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(url: &Url, timeout: Option<Duration>) -> Result<Conn, String> {
        let stream = TcpStream::connect(&url.authority)
            .map_err(|e| format!("cannot connect to {}: {e}", url.authority))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(timeout)
            .map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self
            .stream
            .read(&mut chunk)
            .map_err(|e| format!("read from server failed: {e}"))?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads the response head: status and lower-cased headers.
    fn head(&mut self) -> Result<(u16, Vec<(String, String)>), String> {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut fields);
            match r.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = r.code.unwrap_or(0);
                    let headers = r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).trim().to_string(),
                            )
                        })
                        .collect();
                    self.buf.drain(..n);
                    if status == 100 {
                        continue;
                    }
                    return Ok((status, headers));
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill()? == 0 {
                        return Err("server closed the connection".into());
                    }
                }
                Err(e) => return Err(format!("bad HTTP response: {e}")),
            }
        }
    }
}

/// How the body in progress is delimited.
enum Body {
    Length(usize),
    /// In chunked framing: bytes left in the current chunk (0: expect a size line).
    Chunked(usize),
    /// Until the server closes.
    Close,
}

/// A response body being read.
struct Active {
    conn: Conn,
    body: Body,
    sse: bool,
    keep_alive: bool,
    /// Decoded body bytes not yet turned into messages.
    data: Vec<u8>,
    finished: bool,
}

impl Active {
    /// Decodes what is buffered; reads more when `block`. Returns false at the end.
    fn pump(&mut self, block: bool) -> Result<bool, String> {
        loop {
            let progressed = self.decode()?;
            if self.finished {
                return Ok(false);
            }
            if progressed || !block {
                return Ok(true);
            }
            if self.conn.fill()? == 0 {
                if matches!(self.body, Body::Close) {
                    self.finished = true;
                    return Ok(false);
                }
                return Err("server closed the connection in the middle of a response".into());
            }
        }
    }

    /// Moves buffered body bytes to `data`; whether anything moved.
    fn decode(&mut self) -> Result<bool, String> {
        let buf = &mut self.conn.buf;
        let mut moved = false;
        loop {
            match &mut self.body {
                Body::Length(left) => {
                    let n = (*left).min(buf.len());
                    self.data.extend(buf.drain(..n));
                    *left -= n;
                    moved |= n > 0;
                    if *left == 0 {
                        self.finished = true;
                    }
                    return Ok(moved);
                }
                Body::Close => {
                    moved |= !buf.is_empty();
                    self.data.append(buf);
                    return Ok(moved);
                }
                Body::Chunked(0) => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((n, 0))) => {
                        // Last chunk; no trailers are sent by our server.
                        if buf.len() < n + 2 {
                            return Ok(moved);
                        }
                        buf.drain(..n + 2);
                        self.finished = true;
                        return Ok(true);
                    }
                    Ok(httparse::Status::Complete((n, size))) => {
                        buf.drain(..n);
                        self.body = Body::Chunked(size as usize + 2);
                    }
                    Ok(httparse::Status::Partial) => return Ok(moved),
                    Err(_) => return Err("bad chunked encoding from the server".into()),
                },
                Body::Chunked(left) => {
                    let n = (*left).min(buf.len());
                    // The last two bytes of each chunk are its CRLF.
                    let data_n = n.min(left.saturating_sub(2));
                    self.data.extend(buf.drain(..data_n));
                    buf.drain(..n - data_n);
                    *left -= n;
                    moved |= n > 0;
                    if *left > 0 {
                        return Ok(moved);
                    }
                }
            }
        }
    }

    /// The next complete SSE event's data, if buffered.
    fn next_event(&mut self) -> Option<String> {
        loop {
            let end = self.data.windows(2).position(|w| w == b"\n\n")?;
            let event: Vec<u8> = self.data.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() && data.iter().any(|d| !d.is_empty()) {
                return Some(data.join("\n"));
            }
        }
    }
}

pub struct HttpClient {
    url: Url,
    token: Option<String>,
    session: Option<String>,
    protocol: Option<String>,
    timeout: Option<Duration>,
    /// An idle keep-alive connection.
    idle: Option<Conn>,
    /// The response being read.
    active: Option<Active>,
    queued: VecDeque<Value>,
}

impl HttpClient {
    pub fn new(url: &str, token: Option<String>) -> Result<HttpClient, String> {
        Ok(HttpClient {
            url: Url::parse(url)?,
            token,
            session: None,
            protocol: None,
            timeout: None,
            idle: None,
            active: None,
            queued: VecDeque::new(),
        })
    }

    pub fn set_timeout(&mut self, t: Option<Duration>) {
        self.timeout = t;
    }

    fn request_bytes(&self, method: &str, body: &[u8]) -> Vec<u8> {
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json, text/event-stream\r\n",
            self.url.path, self.url.authority
        );
        if !body.is_empty() {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        } else {
            head.push_str("Content-Length: 0\r\n");
        }
        if let Some(s) = &self.session {
            head.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
        }
        if let Some(p) = &self.protocol {
            head.push_str(&format!("MCP-Protocol-Version: {p}\r\n"));
        }
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// Writes a request on a kept-alive connection (a fresh one if it was closed).
    fn post_on(&mut self, mut conn: Option<Conn>, bytes: &[u8]) -> Result<Conn, String> {
        if let Some(c) = conn.as_mut() {
            if c.stream.write_all(bytes).is_ok() {
                return Ok(conn.take().unwrap());
            }
        }
        let mut c = Conn::open(&self.url, self.timeout)?;
        c.stream
            .write_all(bytes)
            .map_err(|e| format!("write to server failed: {e}"))?;
        Ok(c)
    }

    /// POSTs one message (or batch) and reads the response head; the answers are
    /// returned by `recv`.
    pub fn send(&mut self, message: &Value) -> Result<(), String> {
        let body = serde_json::to_vec(message).map_err(|e| e.to_string())?;
        let bytes = self.request_bytes("POST", &body);
        // A stream still open keeps its connection; this message gets another one.
        let reuse = if self.active.is_none() {
            self.idle.take()
        } else {
            None
        };
        let mut conn = self.post_on(reuse, &bytes)?;
        let (mut status, mut headers) = match conn.head() {
            Ok(h) => h,
            Err(_) if self.active.is_none() => {
                // A kept-alive connection the server had closed: once more, fresh.
                conn = self.post_on(None, &bytes)?;
                conn.head()?
            }
            Err(e) => return Err(e),
        };
        let get = |h: &[(String, String)], k: &str| {
            h.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        if let Some(s) = get(&headers, "mcp-session-id") {
            self.session = Some(s);
        }
        if status == 100 {
            (status, headers) = conn.head()?;
        }
        let content_type = get(&headers, "content-type").unwrap_or_default();
        let keep_alive =
            !get(&headers, "connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let body = if get(&headers, "transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            Body::Chunked(0)
        } else if let Some(n) = get(&headers, "content-length") {
            Body::Length(
                n.parse()
                    .map_err(|_| "bad Content-Length from the server")?,
            )
        } else {
            Body::Close
        };
        let mut active = Active {
            conn,
            finished: matches!(body, Body::Length(0)),
            body,
            sse: content_type.starts_with("text/event-stream"),
            keep_alive,
            data: Vec::new(),
        };
        if active.sse && (200..300).contains(&status) {
            if self.active.is_some() {
                // Read this second stream to its end (it is short: we do not stream two
                // calls at once).
                while active.pump(true)? {}
                self.take_events(&mut active)?;
                return Ok(());
            }
            self.active = Some(active);
            return Ok(());
        }
        while active.pump(true)? {}
        if (200..300).contains(&status) && !active.data.is_empty() {
            let v: Value = serde_json::from_slice(&active.data)
                .map_err(|e| format!("server sent invalid JSON: {e}"))?;
            self.accept(v);
        } else if !(200..300).contains(&status) {
            // The transport refused it: a JSON-RPC error body if there is one.
            match serde_json::from_slice::<Value>(&active.data) {
                Ok(v) if v.get("error").is_some() && v.get("id").is_some_and(|i| !i.is_null()) => {
                    self.accept(v)
                }
                _ => {
                    return Err(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&active.data).trim()
                    ))
                }
            }
        }
        if active.keep_alive && self.active.is_none() {
            self.idle = Some(active.conn);
        }
        Ok(())
    }

    fn take_events(&mut self, active: &mut Active) -> Result<(), String> {
        while let Some(data) = active.next_event() {
            let v: Value = serde_json::from_str(&data)
                .map_err(|e| format!("server sent an SSE event that is not JSON: {e}"))?;
            self.accept(v);
        }
        Ok(())
    }

    fn accept(&mut self, v: Value) {
        let version = v
            .get("result")
            .and_then(|r| r.get("protocolVersion"))
            .and_then(Value::as_str);
        if let (Some(p), Some(_)) = (version, v.get("result").and_then(|r| r.get("serverInfo"))) {
            self.protocol = Some(p.to_string());
        }
        match v {
            Value::Array(items) => self.queued.extend(items),
            v => self.queued.push_back(v),
        }
    }

    /// The next message from the server (blocking while a stream is open).
    pub fn recv(&mut self) -> Result<Value, String> {
        loop {
            if let Some(v) = self.queued.pop_front() {
                return Ok(v);
            }
            let Some(mut active) = self.active.take() else {
                return Err("no answer pending from the server".into());
            };
            let more = active.pump(true)?;
            self.take_events(&mut active)?;
            if more {
                self.active = Some(active);
            } else if active.keep_alive {
                self.idle = Some(active.conn);
            }
        }
    }

    /// Ends the session (`DELETE`), best effort.
    pub fn close(&mut self) {
        if self.session.is_none() {
            return;
        }
        let bytes = self.request_bytes("DELETE", b"");
        let idle = self.idle.take();
        if let Ok(mut c) = self.post_on(idle, &bytes) {
            let _ = c.head();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Url::parse("http://127.0.0.1:8080/mcp").unwrap(),
            Url {
                authority: "127.0.0.1:8080".into(),
                path: "/mcp".into()
            }
        );
        assert_eq!(
            Url::parse("http://localhost").unwrap().authority,
            "localhost:80"
        );
        assert_eq!(Url::parse("http://[::1]:9/x").unwrap().authority, "[::1]:9");
        assert!(Url::parse("https://x/mcp").is_err());
        assert!(Url::parse("http:///mcp").is_err());
    }
}
