//! mcp-cli against the host test server (the mcp crate's server loop over real sockets):
//! every client command, the stdio bridge in both lifecycles, and all three target kinds.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

#[test]
fn tools_and_call() {
    let server = TestServer::tcp();
    let (code, out, err) = cli(&server.target, &["tools"]);
    assert_eq!(code, 0, "{err}");
    for name in ["echo", "count", "infer", "health", "logs"] {
        assert!(out.contains(name), "tools output lacks {name}: {out}");
    }

    let (code, out, _) = cli(&server.target, &["call", "echo", "text=hello world"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, json!({"text": "hello world"}));

    let (code, out, _) = cli(&server.target, &["call", "count", "to=3", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["structuredContent"]["counted"], 3);
    assert_eq!(v["isError"], false);

    // Schema violations come back as tool errors with a clear message, exit code 1.
    let (code, _, err) = cli(
        &server.target,
        &["call", "infer", "max_tokens=0", "prompt=x"],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("`arguments.max_tokens` must be at least 1"),
        "{err}"
    );
    let (code, _, err) = cli(&server.target, &["call", "nope"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("-32602") && err.contains("unknown tool `nope`"),
        "{err}"
    );
}

#[test]
fn infer_streams_then_prints_statistics() {
    let server = TestServer::tcp();
    let (code, out, err) = cli(&server.target, &["infer", "one two", "--max-tokens", "5"]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap().trim_end(), "one two one two one");
    assert_eq!(lines.next().unwrap(), "--");
    let stats = lines.next().unwrap();
    assert!(
        stats.starts_with("5 tokens (prompt 2), finish length, ttft "),
        "{stats}"
    );
    assert!(
        stats.contains("decode ") && stats.contains(" tok/s"),
        "{stats}"
    );
}

#[test]
fn infer_cancel_stops_generation() {
    let server = TestServer::tcp();
    let (code, out, err) = cli(
        &server.target,
        &[
            "infer",
            "a b c",
            "--max-tokens",
            "4000",
            "--cancel-after",
            "3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("-- cancelled after 3 pieces"), "{out}");
    assert!(out.contains("server answered ping"), "{out}");
    // The server logged how far generation went.
    let (_, logs, _) = cli(&server.target, &["logs", "--level", "info"]);
    let line = logs
        .lines()
        .find(|l| l.contains("finish=cancelled"))
        .unwrap_or_else(|| panic!("no cancelled generation in logs: {logs}"));
    let tokens: u64 = line
        .split("infer: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read token count from {line}"));
    // Not a timing assertion: how many tokens fly before the cancel lands depends on load;
    // what matters is that generation ended early, by cancellation.
    assert!(
        (3..4000).contains(&tokens),
        "generated {tokens} tokens despite the cancel"
    );
}

#[test]
fn bench_reports_median_and_spread() {
    let server = TestServer::tcp();
    let (code, out, err) = cli(
        &server.target,
        &["bench", "-n", "3", "--max-tokens", "5", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["runs"], 3);
    assert_eq!(v["completion_tokens"], 15);
    let d = &v["decode_tokens_per_s"];
    assert!(d["median"].as_f64().unwrap() > 0.0);
    assert!(d["min"].as_f64().unwrap() <= d["median"].as_f64().unwrap());
    assert!(d["max"].as_f64().unwrap() >= d["median"].as_f64().unwrap());
    assert!(d["stddev"].as_f64().unwrap() >= 0.0);

    let (code, out, _) = cli(&server.target, &["bench", "-n", "2", "--max-tokens", "3"]);
    assert_eq!(code, 0);
    assert!(out.contains("decode  tok/s: median"), "{out}");
    assert!(out.contains("2 runs, 6 tokens generated"), "{out}");
}

#[test]
fn logs_follow_keeps_printing_new_lines() {
    let server = TestServer::tcp();
    let mut follower = Command::new(CLI)
        .args(&server.target)
        .args(["logs", "--follow", "--interval-ms", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("test server started"), "{first}");
    // A generation after the follower started shows up in its output.
    let (code, _, _) = cli(
        &server.target,
        &["infer", "late words", "--max-tokens", "2"],
    );
    assert_eq!(code, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("infer: 2 tokens") {
            seen = true;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "follow never showed the new line"
        );
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(seen);
}

fn line(v: Value) -> String {
    v.to_string()
}

#[test]
fn bridge_relays_legacy_session_with_batch_and_progress() {
    let server = TestServer::tcp();
    let out = bridge(
        &server.target,
        &[
            line(
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params":
                {"protocolVersion": "2025-03-26", "capabilities": {},
                 "clientInfo": {"name": "t", "version": "1"}}}),
            ),
            line(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
            String::new(), // blank lines are skipped
            line(json!([{"jsonrpc": "2.0", "id": 2, "method": "ping"},
                        {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}])),
            line(
                json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params":
                {"name": "count", "arguments": {"to": 2}, "_meta": {"progressToken": "c"}}}),
            ),
            "{not json".into(),
        ],
    );
    assert_eq!(out.len(), 6, "{out:?}");
    assert_eq!(out[0]["result"]["protocolVersion"], "2025-03-26");
    let batch = out[1].as_array().expect("batch reply");
    assert_eq!(batch[0]["id"], 2);
    assert!(batch[1]["result"]["tools"].as_array().unwrap().len() >= 5);
    assert_eq!(out[2]["method"], "notifications/progress");
    assert_eq!(out[3]["params"]["progress"], 2);
    assert_eq!(out[4]["id"], 4);
    assert_eq!(out[5]["error"]["code"], -32700);
}

#[test]
fn bridge_relays_stateless_style() {
    let server = TestServer::tcp();
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}});
    let out = bridge(
        &server.target,
        &[
            line(
                json!({"jsonrpc": "2.0", "id": "d", "method": "server/discover",
                        "params": {"_meta": meta}}),
            ),
            line(json!({"jsonrpc": "2.0", "id": "c", "method": "tools/call",
                        "params": {"_meta": meta, "name": "echo", "arguments": {"text": "s"}}})),
        ],
    );
    assert_eq!(out[0]["result"]["supportedVersions"], json!(["2026-07-28"]));
    assert_eq!(out[0]["result"]["resultType"], "complete");
    assert_eq!(out[1]["result"]["structuredContent"]["text"], "s");
}

#[test]
fn unix_socket_target() {
    let dir = std::env::temp_dir().join(format!("mcp-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mcp.sock");
    let _ = std::fs::remove_file(&path);
    let server = TestServer::unix(path.to_str().unwrap());
    let (code, out, err) = cli(&server.target, &["call", "echo", "text=over unix"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("over unix"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stand-in for vhost-device-vsock's host socket: answers `CONNECT <port>\n` with
/// `OK <n>\n` (or `refuse`s) and then relays bytes to the test server over TCP.
fn fake_vsock_socket(
    path: &std::path::Path,
    tcp_addr: String,
    refuse: bool,
) -> thread::JoinHandle<String> {
    let listener = UnixListener::bind(path).unwrap();
    thread::spawn(move || {
        let (mut uds, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while uds.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            request.push(byte[0]);
        }
        let request = String::from_utf8(request).unwrap();
        if refuse {
            return request; // closing without OK, like a port nobody listens on
        }
        uds.write_all(b"OK 1073741824\n").unwrap();
        let tcp = std::net::TcpStream::connect(tcp_addr).unwrap();
        let (mut tcp_r, mut uds_w) = (tcp.try_clone().unwrap(), uds.try_clone().unwrap());
        let back = thread::spawn(move || {
            let _ = std::io::copy(&mut tcp_r, &mut uds_w);
        });
        let mut tcp_w = tcp;
        let _ = std::io::copy(&mut uds, &mut tcp_w);
        let _ = tcp_w.shutdown(std::net::Shutdown::Write);
        let _ = back.join();
        request
    })
}

#[test]
fn vsock_uds_target_does_the_connect_handshake() {
    let server = TestServer::tcp();
    let dir = std::env::temp_dir().join(format!("mcp-cli-vsock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vsock.sock");
    let _ = std::fs::remove_file(&path);
    let fake = fake_vsock_socket(&path, server.addr().to_string(), false);
    let target = vec![
        "--vsock-uds".to_string(),
        path.to_str().unwrap().to_string(),
        "--port".to_string(),
        "5005".to_string(),
    ];
    let (code, out, err) = cli(&target, &["call", "echo", "text=via vsock"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("via vsock"));
    assert_eq!(fake.join().unwrap(), "CONNECT 5005");

    let _ = std::fs::remove_file(&path);
    let fake = fake_vsock_socket(&path, server.addr().to_string(), true);
    let (code, _, err) = cli(&target, &["tools"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("vsock handshake") && err.contains("port 5005"),
        "{err}"
    );
    fake.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn usage_errors_are_clear() {
    let (code, _, err) = cli(&[], &["tools"]);
    assert_eq!(code, 2);
    assert!(err.contains("no target"), "{err}");
    let (code, _, err) = cli(&["--vsock-uds".into(), "/nonexistent".into()], &["tools"]);
    assert_eq!(code, 2);
    assert!(err.contains("--port"), "{err}");
    let (code, _, err) = cli(&["--tcp".into(), "127.0.0.1:1".into()], &["tools"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn bridge_exits_when_the_guest_goes_away() {
    let server = TestServer::tcp();
    let mut child = Command::new(CLI)
        .args(&server.target)
        .arg("bridge")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), r#"{"id":1,"jsonrpc":"2.0","result":{}}"#);
    drop(server); // the "guest" dies while the client still holds stdin open
    let out = wait_output(child, Duration::from_secs(20), "bridge after guest exit");
    assert!(out.status.success());
    drop(stdin);
}

#[test]
fn stateless_client_style() {
    let server = TestServer::tcp();
    let mut target = server.target.clone();
    target.push("--stateless".into());
    let (code, out, err) = cli(&target, &["call", "echo", "text=modern", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["resultType"], "complete");
    assert_eq!(v["structuredContent"]["text"], "modern");
    let (code, out, err) = cli(&target, &["infer", "x y", "--max-tokens", "3"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("x y x"), "{out}");
}

#[test]
fn health_is_answered_while_a_long_generation_runs() {
    let server = TestServer::tcp();
    // A generation that would take minutes, driven through the bridge.
    let mut gen = Command::new(CLI)
        .args(&server.target)
        .arg("bridge")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = gen.stdin.take().unwrap();
    let mut stdout = BufReader::new(gen.stdout.take().unwrap());
    for msg in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params":
            {"protocolVersion": "2025-11-25", "capabilities": {},
             "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params":
            {"name": "count", "arguments": {"to": 100000}, "_meta": {"progressToken": 1}}}),
    ] {
        writeln!(stdin, "{msg}").unwrap();
    }
    let mut reply = String::new();
    stdout.read_line(&mut reply).unwrap(); // initialize
    reply.clear();
    stdout.read_line(&mut reply).unwrap();
    assert!(
        reply.contains("notifications/progress"),
        "count is running: {reply}"
    );

    // Another connection gets health and the tool list meanwhile.
    let (code, out, err) = cli(&server.target, &["call", "health"]);
    assert_eq!(code, 0, "{err}");
    let health: Value = serde_json::from_str(&out).unwrap();
    assert!(health["requests_served"].as_u64().unwrap() >= 2);
    let (code, _, err) = cli(&server.target, &["tools"]);
    assert_eq!(code, 0, "{err}");

    // The generation is still running: cancel it and let the bridge finish.
    writeln!(
        stdin,
        "{}",
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                 "params": {"requestId": 2}})
    )
    .unwrap();
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(!rest.contains("\"id\":2"), "a cancelled call got a reply");
    let status = gen.wait().unwrap();
    assert!(status.success());
}
