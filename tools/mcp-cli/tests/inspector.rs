//! The official MCP Inspector CLI (pinned 0.15.0, installed into build/node by
//! tools/mcp-cli/inspector/install.sh) drives `mcp-cli bridge` against the host test server:
//! a standard stdio MCP client talking to our server loop through the framed transport.
//!
//! If the Inspector is not installed, the test installs it with the same script. It fails
//! when that does not work, except when the npm registry is unreachable: then it says so
//! and skips (a network outage is not a bug in this code).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

fn inspector_bin() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("MCP_INSPECTOR") {
        return Some(PathBuf::from(path));
    }
    let root = repo_root();
    let bin = root.join("build/node/node_modules/.bin/mcp-inspector");
    if bin.exists() {
        return Some(bin);
    }
    eprintln!("mcp-inspector missing in build/node: running tools/mcp-cli/inspector/install.sh");
    let install = Command::new("bash")
        .arg(root.join("tools/mcp-cli/inspector/install.sh"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run install.sh (bash)");
    let out = wait_output(install, Duration::from_secs(600), "inspector install");
    if out.status.success() && bin.exists() {
        return Some(bin);
    }
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ping = Command::new("npm")
        .args(["ping", "--fetch-timeout=10000", "--fetch-retries=0"])
        .output();
    let reachable = ping.as_ref().is_ok_and(|o| o.status.success());
    if !reachable {
        println!("SKIPPED inspector test: the npm registry is unreachable, so the pinned MCP Inspector cannot be installed.\ninstall log:\n{log}");
        return None;
    }
    panic!("installing the MCP Inspector failed although npm is reachable:\n{log}");
}

fn inspector(server: &TestServer, method_args: &[&str]) -> Value {
    let bin = inspector_bin();
    let Some(bin) = bin else { return Value::Null };
    let child = Command::new(bin)
        .arg("--cli")
        .arg(CLI)
        .args(&server.target)
        .arg("bridge")
        .args(method_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mcp-inspector (is node installed?)");
    let out = wait_output(child, Duration::from_secs(120), "mcp-inspector");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inspector failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("inspector printed non-JSON ({e}): {stdout}"))
}

#[test]
fn inspector_lists_and_calls_tools_through_the_bridge() {
    let server = TestServer::tcp();
    let list = inspector(&server, &["--method", "tools/list"]);
    if list.is_null() {
        return; // skipped, reason printed
    }
    let tools = list["tools"].as_array().expect("tools array");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["echo", "count", "infer", "health", "logs"]);
    let infer = &tools[2];
    assert_eq!(infer["title"], "Generate text");
    assert_eq!(
        infer["inputSchema"]["properties"]["max_tokens"]["maximum"],
        4096
    );
    assert!(infer["outputSchema"]["properties"]["decode_tokens_per_s"].is_object());

    let called = inspector(
        &server,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "text=from inspector",
        ],
    );
    assert_eq!(called["content"][0]["text"], "from inspector");
    assert_eq!(called["structuredContent"]["text"], "from inspector");
    assert_eq!(called["isError"], false);
}
