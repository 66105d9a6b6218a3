//! Helpers for mcp-cli's integration tests: a host test server child process and CLI runs
//! with time limits (a hang fails the test instead of blocking the suite).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const CLI: &str = env!("CARGO_BIN_EXE_mcp-cli");

/// `mcp-cli serve` on an ephemeral address; killed when dropped.
pub struct TestServer {
    child: Child,
    /// `--tcp ADDR` or `--unix PATH`, ready to splice into a command line.
    pub target: Vec<String>,
}

impl TestServer {
    pub fn tcp() -> Self {
        Self::start(&["--tcp", "127.0.0.1:0"])
    }

    pub fn unix(path: &str) -> Self {
        Self::start(&["--unix", path])
    }

    fn start(listen: &[&str]) -> Self {
        let mut child = Command::new(CLI)
            .arg("serve")
            .args(listen)
            .args(["--token-delay-ms", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mcp-cli serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the listening line");
        // "listening tcp 127.0.0.1:PORT" / "listening unix PATH"
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "unexpected serve banner {line:?}");
        let target = vec![format!("--{}", parts[1]), parts[2].to_string()];
        TestServer { child, target }
    }

    pub fn addr(&self) -> &str {
        &self.target[1]
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` at most `limit`; kills it and panics on timeout.
pub fn wait_output(mut child: Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("collect output"),
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect output");
                panic!(
                    "{what} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs `mcp-cli TARGET ARGS...` and returns (exit code, stdout, stderr).
pub fn cli(target: &[String], args: &[&str]) -> (i32, String, String) {
    let child = Command::new(CLI)
        .args(target)
        .args(["--timeout-ms", "20000"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mcp-cli");
    let out = wait_output(child, Duration::from_secs(60), &format!("mcp-cli {args:?}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Feeds `lines` to `mcp-cli TARGET bridge` on stdin, closes stdin, and returns the JSON
/// lines it printed.
pub fn bridge(target: &[String], lines: &[String]) -> Vec<serde_json::Value> {
    let mut child = Command::new(CLI)
        .args(target)
        .arg("bridge")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bridge");
    {
        let mut stdin = child.stdin.take().unwrap();
        for line in lines {
            stdin.write_all(line.as_bytes()).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
    }
    let out = wait_output(child, Duration::from_secs(60), "bridge");
    assert!(
        out.status.success(),
        "bridge failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("bridge output is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}
