//! mcp-cli: talk to microkernelia's MCP server (or the host test server), and bridge it to
//! standard stdio MCP clients.

mod bridge;
mod client;
mod commands;
mod serve;
mod target;
mod test_tools;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Map, Value};

use client::Client;
use target::Target;

const USAGE: &str = "\
usage: mcp-cli [TARGET] COMMAND [ARGS...]

targets (one of):
  --vsock-uds PATH --port N   vhost-device-vsock Unix socket and guest vsock port
  --tcp HOST:PORT             plain TCP (host test server)
  --unix PATH                 plain Unix socket (host test server)

commands:
  tools [--json]                         list the server's tools
  call TOOL [key=value...] [--json]      call a tool; values are JSON or plain strings
  infer PROMPT [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S]
        [--cancel-after N] [--json]      stream a generation, then its statistics
  logs [--follow] [--level L] [--cursor C] [--interval-ms MS]
  bench [-n RUNS] [--prompt P] [--max-tokens N] [--json]
                                         N infer calls; tokens/s median and spread
  bridge                                 stdio MCP server (newline-delimited JSON-RPC)
                                         relayed to the target over framed JSON-RPC
  serve (--tcp ADDR | --unix PATH) [--token-delay-ms MS]
                                         host test server: the mcp crate's server loop
                                         with test tools (echo, count, infer, health, logs)

options: --max-frame BYTES (default 1048576)
         --timeout-ms MS  give up when the server is silent this long (client commands)
         --stateless      client commands use protocol 2026-07-28 (server/discover and
                          per-request _meta) instead of initialize
";

/// Flags that take a value.
const VALUE_FLAGS: &[&str] = &[
    "--vsock-uds",
    "--port",
    "--tcp",
    "--unix",
    "--max-frame",
    "--max-tokens",
    "--temperature",
    "--top-p",
    "--top-k",
    "--seed",
    "--cancel-after",
    "--level",
    "--cursor",
    "--interval-ms",
    "-n",
    "--prompt",
    "--token-delay-ms",
    "--timeout-ms",
];
const BOOL_FLAGS: &[&str] = &["--json", "--follow", "--stateless", "--help", "-h"];

struct Args {
    flags: HashMap<String, String>,
    switches: Vec<String>,
    positional: Vec<String>,
}

impl Args {
    fn parse(raw: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut args = Args {
            flags: HashMap::new(),
            switches: Vec::new(),
            positional: Vec::new(),
        };
        let mut raw = raw.peekable();
        let mut only_positional = false;
        while let Some(arg) = raw.next() {
            if only_positional {
                args.positional.push(arg);
            } else if arg == "--" {
                only_positional = true;
            } else if VALUE_FLAGS.contains(&arg.as_str()) {
                let value = raw
                    .next()
                    .ok_or_else(|| format!("option {arg} needs a value"))?;
                args.flags.insert(arg, value);
            } else if BOOL_FLAGS.contains(&arg.as_str()) {
                args.switches.push(arg);
            } else if arg.starts_with("--") {
                return Err(format!("unknown option {arg}"));
            } else {
                args.positional.push(arg);
            }
        }
        Ok(args)
    }

    fn get(&self, flag: &str) -> Option<&str> {
        self.flags.get(flag).map(String::as_str)
    }

    fn has(&self, switch: &str) -> bool {
        self.switches.iter().any(|s| s == switch)
    }

    fn number<T: std::str::FromStr>(&self, flag: &str) -> Result<Option<T>, String> {
        self.get(flag)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("option {flag}: `{v}` is not a valid number"))
            })
            .transpose()
    }

    fn target(&self) -> Result<Target, String> {
        let chosen = [
            self.get("--vsock-uds").is_some(),
            self.get("--tcp").is_some(),
            self.get("--unix").is_some(),
        ];
        match chosen.iter().filter(|c| **c).count() {
            0 => return Err("no target: give --vsock-uds PATH --port N, --tcp or --unix".into()),
            1 => {}
            _ => return Err("give only one of --vsock-uds, --tcp, --unix".into()),
        }
        if let Some(path) = self.get("--vsock-uds") {
            let port = self
                .number::<u32>("--port")?
                .ok_or("--vsock-uds needs --port N (the guest's vsock port)")?;
            return Ok(Target::VsockUds {
                path: path.into(),
                port,
            });
        }
        if let Some(addr) = self.get("--tcp") {
            return Ok(Target::Tcp(addr.into()));
        }
        Ok(Target::Unix(self.get("--unix").unwrap_or_default().into()))
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("mcp-cli: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let args = Args::parse(std::env::args().skip(1))?;
    if args.has("--help") || args.has("-h") || args.positional.is_empty() {
        print!("{USAGE}");
        return Ok(!args.positional.is_empty() || args.has("--help") || args.has("-h"));
    }
    let max_frame = args
        .number::<usize>("--max-frame")?
        .unwrap_or(mcp::DEFAULT_MAX_FRAME);
    let command = args.positional[0].as_str();
    let rest = &args.positional[1..];
    let as_json = args.has("--json");

    if command == "serve" {
        let delay = args.number::<u64>("--token-delay-ms")?.unwrap_or(5);
        serve::run(serve::ServeOptions {
            tcp: args.get("--tcp").map(Into::into),
            unix: args.get("--unix").map(Into::into),
            token_delay: Duration::from_millis(delay),
            max_frame,
        })?;
        return Ok(true);
    }

    let target = args.target()?;
    let stream = target.connect()?;
    if command == "bridge" {
        bridge::run(stream, max_frame)?;
        return Ok(true);
    }

    if let Some(ms) = args.number::<u64>("--timeout-ms")? {
        stream
            .set_read_timeout(Some(Duration::from_millis(ms.max(1))))
            .map_err(|e| format!("cannot set the read timeout: {e}"))?;
    }
    let mut client = Client::new(stream, max_frame);
    client.set_stateless(args.has("--stateless"));
    client.initialize()?;
    match command {
        "tools" => commands::tools(&mut client, as_json).map(|_| true),
        "call" => {
            let tool = rest.first().ok_or("call needs a tool name")?;
            commands::call(&mut client, tool, &rest[1..], as_json)
        }
        "infer" => {
            if rest.is_empty() {
                return Err("infer needs a prompt".into());
            }
            let mut extra = Map::new();
            for (flag, key) in [
                ("--max-tokens", "max_tokens"),
                ("--top-k", "top_k"),
                ("--seed", "seed"),
            ] {
                if let Some(v) = args.number::<u64>(flag)? {
                    extra.insert(key.into(), Value::from(v));
                }
            }
            for (flag, key) in [("--temperature", "temperature"), ("--top-p", "top_p")] {
                if let Some(v) = args.number::<f64>(flag)? {
                    extra.insert(key.into(), Value::from(v));
                }
            }
            commands::infer(
                &mut client,
                commands::InferOptions {
                    prompt: rest.join(" "),
                    extra,
                    cancel_after: args.number("--cancel-after")?,
                    as_json,
                },
            )
        }
        "logs" => commands::logs(
            &mut client,
            args.get("--level").unwrap_or("debug"),
            args.number("--cursor")?.unwrap_or(0),
            args.has("--follow"),
            Duration::from_millis(args.number("--interval-ms")?.unwrap_or(1000)),
        )
        .map(|_| true),
        "bench" => commands::bench(
            &mut client,
            commands::BenchOptions {
                runs: args.number("-n")?.unwrap_or(5),
                prompt: args
                    .get("--prompt")
                    .unwrap_or("The quick brown fox jumps over the lazy dog")
                    .into(),
                max_tokens: args.number("--max-tokens")?.unwrap_or(64),
                as_json,
            },
        )
        .map(|_| true),
        other => Err(format!("unknown command `{other}` (see --help)")),
    }
}
