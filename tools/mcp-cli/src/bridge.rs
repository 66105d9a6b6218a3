//! `mcp-cli bridge`: a stdio MCP server (newline-delimited JSON-RPC, as the MCP stdio
//! transport specifies) that relays every message to the guest over a framed connection and
//! every guest frame back as one line. Any stdio MCP client can thus use the unikernel.
//!
//! The bridge is transparent: it does not interpret messages, so both lifecycles, progress,
//! cancellation and logging pass through unchanged. Only framing is translated.

use std::io::{self, BufRead, Read, Write};
use std::thread;

use mcp::frame::{encode_frame, FrameDecoder, FrameEvent};
use serde_json::{json, Value};

use crate::target::Stream;

/// Runs until the guest closes the connection: after stdin ends (the client is done) the
/// guest answers what it was sent and closes; if the guest goes away first, the bridge
/// exits too, so the stdio client sees its server end.
pub fn run(stream: Stream, max_frame: usize) -> Result<(), String> {
    let mut writer = stream
        .try_clone()
        .map_err(|e| format!("cannot clone the guest stream: {e}"))?;
    // The stdin side blocks in read(); it is left behind (and ends with the process) when
    // the guest closes first.
    thread::spawn(move || {
        if let Err(e) = stdin_to_guest(&mut writer) {
            eprintln!("mcp-cli bridge: {e}");
        }
        // Tell the guest we are done sending; it answers what it has and closes.
        let _ = writer.shutdown_write();
    });
    guest_to_stdout(stream, max_frame)
}

fn stdin_to_guest(guest: &mut Stream) -> Result<(), String> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading stdin failed: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        let trimmed = trim_line(&line);
        if trimmed.is_empty() {
            continue;
        }
        if let Err(e) = guest.write_all(&encode_frame(trimmed)) {
            return Err(format!("writing to the guest failed: {e}"));
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    let mut start = 0;
    while start < end && matches!(line[start], b' ' | b'\t') {
        start += 1;
    }
    &line[start..end]
}

fn guest_to_stdout(mut guest: Stream, max_frame: usize) -> Result<(), String> {
    let stdout = io::stdout();
    let mut decoder = FrameDecoder::new(max_frame);
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = Vec::new();
    loop {
        let n = match guest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading from the guest failed: {e}")),
        };
        decoder.feed(&buf[..n], &mut events);
        let mut out = stdout.lock();
        for event in events.drain(..) {
            let line = match event {
                FrameEvent::Frame(payload) => one_line(payload),
                FrameEvent::Oversized { len, limit } => local_error(&format!(
                    "bridge: the guest sent a {len}-byte frame, over the {limit}-byte limit"
                )),
                FrameEvent::Empty => local_error("bridge: the guest sent an empty frame"),
            };
            out.write_all(&line)
                .and_then(|_| out.write_all(b"\n"))
                .and_then(|_| out.flush())
                .map_err(|e| format!("writing stdout failed: {e}"))?;
        }
    }
    if let Some(t) = decoder.truncated() {
        return Err(format!(
            "the guest closed the connection inside a frame ({} bytes received)",
            t.received
        ));
    }
    Ok(())
}

/// The stdio transport forbids embedded newlines; re-encode compactly if needed.
fn one_line(payload: Vec<u8>) -> Vec<u8> {
    if !payload.contains(&b'\n') && !payload.contains(&b'\r') {
        return payload;
    }
    match serde_json::from_slice::<Value>(&payload) {
        Ok(v) => serde_json::to_vec(&v).unwrap_or_default(),
        Err(_) => local_error("bridge: the guest sent a frame that is not JSON"),
    }
}

fn local_error(message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "jsonrpc": "2.0", "id": null,
        "error": { "code": -32603, "message": message }
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_line_endings() {
        assert_eq!(trim_line(b"  {}\r\n"), b"{}");
        assert_eq!(trim_line(b"\n"), b"");
    }

    #[test]
    fn multi_line_payloads_become_one_line() {
        let out = one_line(b"{\n \"a\": 1\n}".to_vec());
        assert_eq!(out, b"{\"a\":1}");
        assert_eq!(one_line(b"{}".to_vec()), b"{}");
    }
}
