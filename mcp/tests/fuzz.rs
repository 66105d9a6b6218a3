//! Fuzz-style robustness: random and mutated frames in random chunkings, a bounded number of
//! rounds with a fixed seed (reproducible). The server must never panic, must answer only
//! with well-formed JSON-RPC frames, and must keep serving well-framed connections.

mod common;

use common::*;
use mcp::frame::encode_frame;
use mcp::serde_json::{self, json, Value};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn seeds() -> Vec<Value> {
    let meta = modern_meta();
    vec![
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-03-26", "capabilities": {}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": "s", "method": "tools/call",
               "params": {"name": "stream", "arguments": {"n": 3},
                          "_meta": {"progressToken": 1}}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": "ü"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "s"}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "logging/setLevel", "params": {"level": "info"}}),
        json!({"jsonrpc": "2.0", "id": 5, "method": "server/discover", "params": {"_meta": meta}}),
        json!([{"jsonrpc": "2.0", "id": 6, "method": "ping"},
               {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "fail"}}]),
        json!({"jsonrpc": "2.0", "id": 8, "method": "ping"}),
    ]
}

fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] = rng.next() as u8;
            }
            1 if !bytes.is_empty() => {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes.truncate(i);
            }
            2 => {
                let i = rng.below(bytes.len() as u64 + 1) as usize;
                let tok = *rng.pick(&[
                    &b"{"[..],
                    b"}",
                    b"[",
                    b"]",
                    b"\"",
                    b",",
                    b":",
                    b"null",
                    b"-1e999",
                    b"\\u0000",
                    b"\xff",
                    b"\"id\":",
                    b"{\"a\":",
                    b"9999999999999999999999",
                ]);
                bytes.splice(i..i, tok.iter().copied());
            }
            3 if bytes.len() > 2 => {
                let a = rng.below(bytes.len() as u64) as usize;
                let b = rng.below(bytes.len() as u64) as usize;
                bytes.swap(a, b);
            }
            4 => {
                // Deep nesting (serde_json's recursion limit must hold).
                let depth = rng.below(300) as usize;
                let mut deep = vec![b'['; depth];
                deep.extend(vec![b']'; depth]);
                bytes = deep;
            }
            _ => {}
        }
    }
    bytes
}

#[test]
fn random_and_mutated_frames_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seeds = seeds();
    for round in 0..300 {
        let mut h = Harness::standard();
        let mut stream = Vec::new();
        for _ in 0..rng.below(12) + 1 {
            let payload = match rng.below(4) {
                0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
                1 => serde_json::to_vec(rng.pick(&seeds)).unwrap(),
                _ => {
                    let seed = serde_json::to_vec(rng.pick(&seeds)).unwrap();
                    mutate(&mut rng, seed)
                }
            };
            stream.extend(encode_frame(&payload));
        }
        // Sometimes corrupt the framing itself (length prefix or a cut-off tail).
        if rng.below(5) == 0 && !stream.is_empty() {
            let i = rng.below(stream.len() as u64) as usize;
            stream[i] = rng.next() as u8;
        }
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = (rng.below(40) as usize + 1).min(rest.len());
            h.push_raw(&rest[..n]);
            rest = &rest[n..];
        }
        let out = h.run();
        let flat = out.iter().flat_map(|m| match m {
            Value::Array(items) => {
                assert!(!items.is_empty(), "round {round}: empty batch reply");
                items.clone()
            }
            single => vec![single.clone()],
        });
        for msg in flat {
            assert_eq!(msg["jsonrpc"], "2.0", "round {round}: {msg}");
            let is_reply = msg.get("result").is_some() ^ msg.get("error").is_some();
            let is_note = msg.get("method").is_some() && msg.get("id").is_none();
            assert!(is_reply || is_note, "round {round}: {msg}");
        }
        // Close the stream: a cut frame must be reported, not hang.
        h.conns[0].1 .0.borrow_mut().peer_closed = true;
        let _ = h.run();
        assert_eq!(
            h.lp.connection_count(),
            0,
            "round {round}: connection not released"
        );
    }
}

#[test]
fn well_framed_garbage_never_breaks_the_connection() {
    let mut rng = Rng(42);
    let mut h = Harness::standard();
    for i in 0..2000u64 {
        let len = rng.below(200) as usize;
        let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        h.push_raw(&encode_frame(&payload));
        if i % 100 == 0 {
            h.push(&json!({"jsonrpc": "2.0", "id": i, "method": "ping"}));
            let out = h.run();
            let last = out.last().expect("ping answered");
            assert_eq!(last["id"], i, "connection still serves after garbage");
        }
    }
    let out = h.run();
    assert!(out.iter().all(|m| m.get("error").is_some()));
}

#[test]
fn decoder_matches_a_model_for_random_streams_and_chunkings() {
    use mcp::frame::{FrameDecoder, FrameEvent};
    let mut rng = Rng(7);
    let limit = 64usize;
    for _ in 0..500 {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..rng.below(10) {
            let len = match rng.below(4) {
                0 => 0,
                1 => limit + 1 + rng.below(100) as usize,
                _ => rng.below(limit as u64 + 1) as usize,
            };
            let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            stream.extend(encode_frame(&payload));
            expected.push(match len {
                0 => FrameEvent::Empty,
                n if n > limit => FrameEvent::Oversized {
                    len: n as u32,
                    limit,
                },
                _ => FrameEvent::Frame(payload),
            });
        }
        let mut decoder = FrameDecoder::new(limit);
        let mut events = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = (rng.below(20) as usize + 1).min(rest.len());
            decoder.feed(&rest[..n], &mut events);
            rest = &rest[n..];
        }
        assert_eq!(events, expected);
        assert!(decoder.truncated().is_none());
    }
}

#[test]
fn garbage_on_other_connections_during_a_call_never_panics() {
    let mut rng = Rng(0xDEAD_BEEF);
    let seeds = seeds();
    for round in 0..150 {
        let mut h = Harness::standard();
        let b = h.connect();
        h.initialize("2025-03-26");
        h.push(
            &json!({"jsonrpc": "2.0", "id": "long", "method": "tools/call",
                       "params": {"name": "stream", "arguments": {"n": 20},
                                  "_meta": {"progressToken": 1}}}),
        );
        for _ in 0..rng.below(8) + 1 {
            let seed = serde_json::to_vec(rng.pick(&seeds)).unwrap();
            let payload = if rng.below(2) == 0 {
                mutate(&mut rng, seed)
            } else {
                seed
            };
            let frame = encode_frame(&payload);
            // Split across pushes so it arrives while the call runs.
            let cut = rng.below(frame.len() as u64) as usize;
            h.push_raw_on(b, &frame[..cut]);
            h.push_raw_on(b, &frame[cut..]);
        }
        let out_a = h.run_on(0);
        let out_b = h.run_on(b);
        assert_eq!(
            out_a.last().unwrap()["id"],
            "long",
            "round {round}: the call on A completes"
        );
        for msg in out_b.iter().flat_map(|m| match m {
            Value::Array(items) => items.clone(),
            single => vec![single.clone()],
        }) {
            assert_eq!(msg["jsonrpc"], "2.0", "round {round}: {msg}");
        }
        for c in [0, b] {
            h.conns[c].1 .0.borrow_mut().peer_closed = true;
        }
        let _ = h.run();
        assert_eq!(h.lp.connection_count(), 0, "round {round}");
    }
}
