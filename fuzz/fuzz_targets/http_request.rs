//! The guest's HTTP request path: arbitrary bytes, cut into arbitrary pieces, through
//! `mk_net::http::RequestReader` with small limits (so the limits themselves are reached),
//! and every request that comes out checked the way `mk_net::mcp_http` reads it.
//!
//! The first byte chooses the piece size; the rest is the stream. Invariants: no panic,
//! the reader's buffer stays within what `wants_input` admits, a failed connection yields
//! nothing more, and a request's body never exceeds the body limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mk_net::http::{Event, Limits, RequestReader, SECOND_NS};

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    let limits = Limits {
        max_head: 512,
        max_headers: 8,
        max_body: 1024,
        ..Limits::default()
    };
    let mut reader = RequestReader::new(limits, 0);
    let mut now = 0;
    let mut failed = false;
    for piece in stream.chunks(step) {
        if !reader.wants_input() {
            break;
        }
        now += SECOND_NS / 10;
        reader.push(piece, now);
        assert!(reader.buffered() <= limits.max_head + 1024 + 4096 + step);
        while let Some(event) = reader.next_event(now) {
            assert!(!failed, "an event after the connection failed");
            match event {
                Event::Request(r) => {
                    assert!(r.body.len() <= limits.max_body);
                    assert!(r.headers.len() <= limits.max_headers);
                    let _ = (r.path(), r.header("mcp-session-id"), r.header("origin"));
                }
                Event::Error(e) => {
                    assert!((400..=505).contains(&e.status()));
                    failed = true;
                }
                Event::IdleTimeout => failed = true,
                Event::Continue => {}
            }
        }
    }
});
