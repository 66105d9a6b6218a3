use super::*;

const S: u64 = SECOND_NS;

fn reader() -> RequestReader {
    RequestReader::new(Limits::default(), 0)
}

/// Feeds `bytes` in pieces of `step` and collects every event.
fn feed(r: &mut RequestReader, bytes: &[u8], step: usize) -> Vec<Event> {
    let mut out = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
        r.push(piece, 1);
        while let Some(e) = r.next_event(1) {
            out.push(e);
        }
    }
    out
}

fn requests(events: Vec<Event>) -> Vec<Request> {
    events
        .into_iter()
        .map(|e| match e {
            Event::Request(r) => r,
            other => panic!("expected a request, got {other:?}"),
        })
        .collect()
}

fn error(events: &[Event]) -> &HttpError {
    match events.last() {
        Some(Event::Error(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

const POST: &[u8] = b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn content_length_body_in_any_chunking() {
    for step in [1, 2, 7, POST.len()] {
        let mut r = reader();
        let reqs = requests(feed(&mut r, POST, step));
        assert_eq!(reqs.len(), 1, "step {step}");
        let q = &reqs[0];
        assert_eq!(q.method, Method::Post);
        assert_eq!(q.path(), "/mcp");
        assert_eq!(q.header("content-type"), Some("application/json"));
        assert_eq!(q.body, b"hello");
        assert!(q.keep_alive);
        assert_eq!(r.buffered(), 0);
        assert!(!r.in_request());
    }
}

#[test]
fn pipelined_requests_come_out_in_order() {
    let mut bytes = POST.to_vec();
    bytes.extend_from_slice(b"GET /mcp?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    bytes.extend_from_slice(POST);
    let mut r = reader();
    let reqs = requests(feed(&mut r, &bytes, bytes.len()));
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[1].method, Method::Get);
    assert_eq!(reqs[1].target, "/mcp?x=1");
    assert_eq!(reqs[1].path(), "/mcp");
    assert!(!reqs[1].keep_alive);
    assert_eq!(reqs[2].body, b"hello");
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let bytes = b"POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        3\r\nhel\r\n2;ext=1\r\nlo\r\nA\r\n, world!!!\r\n0\r\nX-Trailer: 1\r\n\r\n";
    for step in [1, 3, bytes.len()] {
        let mut r = reader();
        let reqs = requests(feed(&mut r, bytes, step));
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].body, b"hello, world!!!");
        assert_eq!(r.buffered(), 0);
    }
}

#[test]
fn broken_chunking_is_a_bad_request() {
    let cases: [&[u8]; 4] = [
        b"zz\r\nabc\r\n0\r\n\r\n",              // not hex
        b"3\r\nabcXX0\r\n\r\n",                 // no CRLF after the data
        b"ffffffffffffffffffff\r\n",            // overflows
        b"3\r\nabc\r\n0\r\nno-end-of-trailers", // incomplete: waits, no error yet
    ];
    for (i, body) in cases.iter().enumerate() {
        let mut bytes =
            b"POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        bytes.extend_from_slice(body);
        let mut r = reader();
        let events = feed(&mut r, &bytes, bytes.len());
        if i == 3 {
            assert!(events.is_empty(), "{events:?}");
            assert!(r.in_request());
        } else {
            assert_eq!(error(&events).status(), 400, "case {i}: {events:?}");
            assert!(!r.wants_input(), "a failed connection reads nothing more");
        }
    }
}

#[test]
fn chunk_line_without_end_is_bounded() {
    let mut bytes =
        b"POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1".to_vec();
    bytes.extend(std::iter::repeat_n(b'0', 2000));
    let mut r = reader();
    let events = feed(&mut r, &bytes, 512);
    assert_eq!(error(&events).status(), 400);
}

#[test]
fn bodies_are_capped_before_they_are_read() {
    let limits = Limits {
        max_body: 10,
        ..Limits::default()
    };
    let mut r = RequestReader::new(limits, 0);
    let events = feed(
        &mut r,
        b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
        100,
    );
    assert_eq!(error(&events), &HttpError::BodyTooLarge { limit: 10 });
    assert_eq!(error(&events).status(), 413);

    let mut r = RequestReader::new(limits, 0);
    let bytes = b"POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n5\r\nabcde\r\n0\r\n\r\n";
    let events = feed(&mut r, bytes, bytes.len());
    assert_eq!(error(&events).status(), 413, "the sum of the chunks counts");

    let mut r = RequestReader::new(limits, 0);
    let events = feed(
        &mut r,
        b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        1000,
    );
    assert_eq!(error(&events).status(), 400, "{events:?}");
}

#[test]
fn content_length_rules() {
    let cases: [(&[u8], u16); 6] = [
        (b"POST /mcp HTTP/1.1\r\nHost: x\r\n\r\n", 411),
        (b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n", 400),
        (b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
        (b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ];
    for (bytes, status) in cases {
        let mut r = reader();
        let events = feed(&mut r, bytes, bytes.len());
        assert_eq!(
            error(&events).status(),
            status,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    // Equal duplicates are one length.
    let mut r = reader();
    let reqs = requests(feed(
        &mut r,
        b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\nhi",
        200,
    ));
    assert_eq!(reqs[0].body, b"hi");
}

#[test]
fn malformed_request_lines_and_headers() {
    let cases: [(&[u8], u16); 7] = [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET\r\n\r\n", 400),
        (b"GET /mcp HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (
            b"GET /mcp HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
            400,
        ),
        (b"GET /mcp HTTP/1.1\r\n\r\n", 400), // no Host
        (b"GET /mcp HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400), // two Hosts
        (b"GET http://evil/mcp HTTP/1.1\r\nHost: x\r\n\r\n", 400), // absolute form
    ];
    for (bytes, status) in cases {
        let mut r = reader();
        let events = feed(&mut r, bytes, bytes.len());
        assert_eq!(
            error(&events).status(),
            status,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    // HTTP/1.0 without Host is fine, and closes by default.
    let mut r = reader();
    let reqs = requests(feed(&mut r, b"GET /mcp HTTP/1.0\r\n\r\n", 100));
    assert!(!reqs[0].keep_alive);
    let mut r = reader();
    let reqs = requests(feed(
        &mut r,
        b"GET /mcp HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        100,
    ));
    assert!(reqs[0].keep_alive);
}

#[test]
fn huge_heads_are_refused_without_being_buffered() {
    let mut r = reader();
    let mut bytes = b"GET /mcp HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    bytes.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let mut events = Vec::new();
    for piece in bytes.chunks(1024) {
        if !r.wants_input() {
            break;
        }
        r.push(piece, 1);
        events.extend(std::iter::from_fn(|| r.next_event(1)));
    }
    assert_eq!(error(&events), &HttpError::HeadTooLarge);
    assert_eq!(error(&events).status(), 431);

    let mut r = reader();
    let mut bytes = b"GET /mcp HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..40 {
        bytes.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    let events = feed(&mut r, &bytes, bytes.len());
    assert_eq!(error(&events), &HttpError::HeadTooLarge, "too many fields");
}

#[test]
fn slowloris_head_times_out_but_an_idle_connection_just_closes() {
    let mut r = reader();
    r.push(b"GET /mcp HTTP/1.1\r\nHo", S);
    assert_eq!(r.next_event(S), None);
    r.push(b"st", 5 * S);
    assert_eq!(r.next_event(10 * S), None);
    assert_eq!(
        r.next_event(11 * S + 1),
        Some(Event::Error(HttpError::Timeout))
    );
    assert_eq!(HttpError::Timeout.status(), 408);

    let mut r = reader();
    let reqs = requests(feed(&mut r, POST, POST.len()));
    assert_eq!(reqs.len(), 1);
    assert_eq!(r.next_event(30 * S), None);
    assert_eq!(r.next_event(61 * S + 1), Some(Event::IdleTimeout));
    assert_eq!(r.next_event(62 * S), None, "reported once");
}

#[test]
fn slow_body_hits_the_request_timeout() {
    let mut r = reader();
    r.push(
        b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe",
        0,
    );
    assert_eq!(r.next_event(0), None);
    assert_eq!(r.next_event(59 * S), None, "the head came in time");
    assert_eq!(r.next_event(61 * S), Some(Event::Error(HttpError::Timeout)));
}

#[test]
fn expect_continue_is_answered_before_the_body() {
    let mut r = reader();
    r.push(
        b"POST /mcp HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        0,
    );
    assert_eq!(r.next_event(0), Some(Event::Continue));
    assert_eq!(r.next_event(0), None);
    r.push(b"hello", 0);
    let Some(Event::Request(q)) = r.next_event(0) else {
        panic!("no request")
    };
    assert_eq!(q.body, b"hello");
    // A body that came with the head needs no interim response.
    let mut r = reader();
    r.push(
        b"POST /mcp HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
        0,
    );
    assert!(matches!(r.next_event(0), Some(Event::Request(_))));
}

#[test]
fn leading_blank_lines_are_skipped() {
    let mut r = reader();
    let mut bytes = b"\r\n\r\n".to_vec();
    bytes.extend_from_slice(POST);
    assert_eq!(requests(feed(&mut r, &bytes, 1)).len(), 1);
}

#[test]
fn response_encoders() {
    let r = response(200, &[("Content-Type", "application/json")], b"{}", true);
    assert_eq!(
        r,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    );
    let r = response(400, &[], b"", false);
    assert_eq!(
        r,
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    let h = chunked_head(200, &[("Content-Type", "text/event-stream")], true);
    assert!(h.ends_with(b"Transfer-Encoding: chunked\r\n\r\n"));
    assert_eq!(chunk(b"0123456789abcdefX"), b"11\r\n0123456789abcdefX\r\n");
    assert!(chunk(b"").is_empty());
    assert_eq!(
        sse_event(b"{\"a\":1}", None),
        b"event: message\ndata: {\"a\":1}\n\n"
    );
    assert_eq!(
        sse_event(b"{}", Some("7")),
        b"id: 7\nevent: message\ndata: {}\n\n"
    );
}

/// Our own encoders' output read back by the reader: a chunked POST built with `chunk`.
#[test]
fn encoded_chunks_round_trip() {
    let mut bytes = b"POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    for piece in body.chunks(777) {
        bytes.extend(chunk(piece));
    }
    bytes.extend_from_slice(LAST_CHUNK);
    let mut r = reader();
    let reqs = requests(feed(&mut r, &bytes, 300));
    assert_eq!(reqs[0].body, body);
}

/// Random bytes and mutations of valid requests never panic, and the buffer stays bounded.
#[test]
fn garbage_never_panics_and_stays_bounded() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base: &[u8] = b"POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    for round in 0..3000 {
        let mut bytes = if round % 3 == 0 {
            (0..(rand() % 3000))
                .map(|_| rand() as u8)
                .collect::<Vec<u8>>()
        } else {
            let mut b = if round % 2 == 0 {
                base.to_vec()
            } else {
                POST.to_vec()
            };
            for _ in 0..(rand() % 4 + 1) {
                let i = (rand() as usize) % b.len();
                match rand() % 3 {
                    0 => b[i] = rand() as u8,
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, rand() as u8),
                }
            }
            b
        };
        bytes.extend_from_slice(POST);
        let mut r = reader();
        let step = (rand() % 64 + 1) as usize;
        for piece in bytes.chunks(step) {
            if !r.wants_input() {
                break;
            }
            r.push(piece, 1);
            while r.next_event(1).is_some() {}
            assert!(r.buffered() <= Limits::default().max_head + 8192);
        }
    }
}
