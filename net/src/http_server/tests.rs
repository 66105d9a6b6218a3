//! The server against real TCP: a second smoltcp stack plays the clients over an in-memory
//! Ethernet link, on a clock the test advances.

use super::*;
use crate::stack::{Ipv4Setup, TcpConfig};
use crate::test_link::*;
use smoltcp::socket::tcp;
use smoltcp::wire::Ipv4Cidr;

fn server(max_connections: usize) -> HttpServer<LinkNic> {
    let (mut a, b) = link();
    CLIENTS.with(|c| *c.borrow_mut() = Some(Clients::new(b)));
    let stack = NetStack::new(
        &mut a,
        Ipv4Setup::Static {
            address: Ipv4Cidr::new(SERVER_IP, 24),
            gateway: None,
        },
        TcpConfig {
            max_connections,
            ..TcpConfig::default()
        },
        42,
        now(),
    );
    let clock = Clock {
        now_ns: now,
        idle,
        write_timeout_ns: 2_000 * MS,
    };
    HttpServer::new(a, stack, Limits::default(), clock)
}

/// Runs both sides until `done` or 15 simulated seconds; collects the server's requests.
fn run(
    srv: &mut HttpServer<LinkNic>,
    mut done: impl FnMut(&mut HttpServer<LinkNic>, &[(ConnRef, Request)]) -> bool,
) -> Vec<(ConnRef, Request)> {
    let mut got = Vec::new();
    for _ in 0..15_000 {
        let (_, reqs) = srv.poll();
        got.extend(reqs);
        with_clients(Clients::poll);
        if done(srv, &got) {
            return got;
        }
        advance(MS);
    }
    panic!("no progress; requests so far: {got:?}");
}

fn send(srv: &mut HttpServer<LinkNic>, i: usize, bytes: &[u8]) {
    run(srv, |_, _| client_state(i) == tcp::State::Established);
    with_clients(|c| {
        let n = c.socket(i).send_slice(bytes).unwrap();
        assert_eq!(n, bytes.len());
    });
}

const REQ: &[u8] = b"POST /mcp HTTP/1.1\r\nHost: 10.0.2.15:8080\r\nContent-Length: 2\r\n\r\n{}";

#[test]
fn request_and_keep_alive_response_over_tcp() {
    let mut srv = server(4);
    let c = with_clients(Clients::connect);
    run(&mut srv, |s, _| s.connections() == 1);
    for round in 0..2 {
        send(&mut srv, c, REQ);
        let reqs = run(&mut srv, |_, r| !r.is_empty());
        let (conn, req) = &reqs[0];
        assert_eq!(req.body, b"{}");
        srv.respond(
            *conn,
            200,
            &[("Content-Type", "application/json")],
            b"[1]",
            true,
        )
        .unwrap();
        let want = (round + 1)
            * b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n[1]"
                .len();
        run(&mut srv, |_, _| received(c).len() >= want);
    }
    assert_eq!(client_state(c), tcp::State::Established, "kept alive");
}

#[test]
fn chunked_stream_then_close() {
    let mut srv = server(4);
    let c = with_clients(Clients::connect);
    send(&mut srv, c, REQ);
    let reqs = run(&mut srv, |_, r| !r.is_empty());
    let conn = reqs[0].0;
    srv.start_stream(conn, 200, &[("Content-Type", "text/event-stream")], false)
        .unwrap();
    for i in 0..3 {
        srv.send_chunk(
            conn,
            &http::sse_event(format!("{{\"n\":{i}}}").as_bytes(), None),
        )
        .unwrap();
    }
    srv.end_stream(conn, false).unwrap();
    run(&mut srv, |_, _| {
        matches!(
            client_state(c),
            tcp::State::CloseWait | tcp::State::Closed | tcp::State::LastAck
        )
    });
    let text = String::from_utf8(received(c)).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"));
    assert!(text.contains("data: {\"n\":2}\n\n"));
    assert!(text.ends_with("\r\n0\r\n\r\n"));
    assert!(!srv.is_open(conn));
}

#[test]
fn malformed_request_gets_400_and_the_connection_closes() {
    let mut srv = server(4);
    let c = with_clients(Clients::connect);
    send(&mut srv, c, b"HELLO\x01 world\r\n\r\n");
    let reqs = run(&mut srv, |_, _| {
        !matches!(
            client_state(c),
            tcp::State::Established | tcp::State::SynSent
        )
    });
    assert!(reqs.is_empty());
    let text = String::from_utf8_lossy(&received(c)).into_owned();
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    // The slot is listening again: a new connection works.
    let d = with_clients(Clients::connect);
    send(&mut srv, d, REQ);
    let reqs = run(&mut srv, |_, r| !r.is_empty());
    assert_eq!(reqs[0].1.body, b"{}");
}

#[test]
fn connections_beyond_the_pool_are_refused() {
    let mut srv = server(2);
    let a = with_clients(Clients::connect);
    let b = with_clients(Clients::connect);
    run(&mut srv, |_, _| {
        client_state(a) == tcp::State::Established && client_state(b) == tcp::State::Established
    });
    let c = with_clients(Clients::connect);
    run(&mut srv, |_, _| client_state(c) == tcp::State::Closed);
    assert_eq!(srv.connections(), 2);
    // Closing one frees its socket for the next client.
    with_clients(|cl| cl.socket(a).close());
    run(&mut srv, |s, _| {
        s.connections() == 1 && s.stack().connections() == 1
    });
    let d = with_clients(Clients::connect);
    run(&mut srv, |_, _| client_state(d) == tcp::State::Established);
}

#[test]
fn a_client_that_stops_reading_loses_its_connection_after_the_write_timeout() {
    let mut srv = server(4);
    let c = with_clients(Clients::connect);
    let other = with_clients(Clients::connect);
    send(&mut srv, c, REQ);
    let reqs = run(&mut srv, |_, r| !r.is_empty());
    with_clients(|cl| cl.reading[c].1 = false);
    let start = now();
    let big = vec![b'x'; 1 << 20];
    assert_eq!(srv.respond(reqs[0].0, 200, &[], &big, true), Err(Gone));
    let waited = now() - start;
    assert!((2_000 * MS..3_000 * MS).contains(&waited), "{waited}");
    // The other client is served normally.
    send(&mut srv, other, REQ);
    let reqs = run(&mut srv, |_, r| !r.is_empty());
    srv.respond(reqs[0].0, 204, &[], b"", true).unwrap();
    run(&mut srv, |_, _| {
        received(other).starts_with(b"HTTP/1.1 204")
    });
}

#[test]
fn slowloris_gets_408_and_a_closed_connection() {
    let mut srv = server(4);
    let c = with_clients(Clients::connect);
    send(&mut srv, c, b"POST /mcp HTTP/1.1\r\nHost: x\r\n");
    let reqs = run(&mut srv, |_, _| received(c).starts_with(b"HTTP/1.1 408"));
    assert!(reqs.is_empty());
}

#[test]
fn static_and_dhcp_setup_from_the_command_line() {
    assert_eq!(Ipv4Setup::parse(None, None), Ok(Ipv4Setup::Dhcp));
    assert_eq!(Ipv4Setup::parse(Some("dhcp"), None), Ok(Ipv4Setup::Dhcp));
    assert_eq!(
        Ipv4Setup::parse(Some("10.0.2.15/24"), Some("10.0.2.2")),
        Ok(Ipv4Setup::Static {
            address: Ipv4Cidr::new(SERVER_IP, 24),
            gateway: Some(CLIENT_IP)
        })
    );
    for (ip, gw) in [
        (Some("10.0.2.15"), None),
        (Some("10.0.2.15/33"), None),
        (Some("10.0.2.300/24"), None),
        (Some("10.0.2.15/24"), Some("192.168.1.1")),
        (None, Some("10.0.2.2")),
    ] {
        let e = Ipv4Setup::parse(ip, gw).unwrap_err();
        assert!(e.contains("ip=") || e.contains("gw="), "{e}");
    }
}
