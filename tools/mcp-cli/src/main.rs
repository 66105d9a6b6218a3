//! mcp-cli: talk to microkernelia's MCP server (or the host test server), and bridge it to
//! standard stdio MCP clients.

mod boot;
mod bridge;
mod client;
mod commands;
mod http_client;
mod load;
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
  --url http://HOST:PORT/mcp [--token T]
                              MCP Streamable HTTP (the guest's virtio-net endpoint, e.g.
                              make run-x86's http://127.0.0.1:8080/mcp); --token sends
                              Authorization: Bearer T (also MCP_TOKEN in the environment)
  --boot x86_64|aarch64 [--machine q35|microvm|virt] [--model PATH] [--kernel IMAGE]
        [--accel tcg|kvm] [--ready-timeout-s S] [--http-port N]
                              a VM booted for this command (stopped when it ends);
                              --http-port also serves MCP over HTTP on 127.0.0.1:N
                              (0: any free port; the URL is printed) and the command
                              then talks HTTP instead of vsock (bridge stays on vsock);
                              default model build/share/smollm2-135m-instruct.q8_0.safetensors
  --host-engine MODEL [--threads N]
                              the same tools and engine in this process, on this CPU

commands:
  tools [--json]                         list the server's tools
  call TOOL [key=value...] [--json]      call a tool; values are JSON or plain strings
  infer PROMPT [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S]
        [--cancel-after N] [--json]      stream a generation, then its statistics
  logs [--follow] [--level L] [--cursor C] [--interval-ms MS]
  bench [-n RUNS] [--prompt P] [--max-tokens N] [--json]
                                         N infer calls; tokens/s median and spread
  latency [-n N] [--json]                ping and health round trips on one session:
                                         median and p99
  load [--clients N] [--infer-clients N] [--requests N] [--infer-requests N]
       [--max-tokens N] [--seconds S] [--json]
                                         N concurrent sessions calling health, M calling a
                                         short streamed infer, within a deadline; exit 1
                                         unless every call was answered (--url or a framed
                                         target)
  bridge                                 stdio MCP server (newline-delimited JSON-RPC)
                                         relayed to the target over framed JSON-RPC
                                         (with --boot: the VM stops when stdin closes)
  serve (--tcp ADDR | --unix PATH) [--token-delay-ms MS]
                                         host test server: the mcp crate's server loop
                                         with test tools (echo, count, infer, health, logs)
  serve (--tcp ADDR | --unix PATH) --model PATH [--threads N]
                                         the kernel's real tools (mk-service) and engine
                                         on the host, the model's directory as the share

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
    "--boot",
    "--machine",
    "--model",
    "--kernel",
    "--accel",
    "--ready-timeout-s",
    "--threads",
    "--host-engine",
    "--url",
    "--token",
    "--http-port",
    "--clients",
    "--infer-clients",
    "--requests",
    "--infer-requests",
    "--seconds",
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
            self.get("--url").is_some(),
        ];
        match chosen.iter().filter(|c| **c).count() {
            0 => {
                return Err(
                    "no target: give --vsock-uds PATH --port N, --tcp, --unix or --url".into(),
                )
            }
            1 => {}
            _ => return Err("give only one of --vsock-uds, --tcp, --unix, --url".into()),
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

/// `--host-engine MODEL`: the real service (`serve --model`) in a thread of this process on
/// a private Unix socket; returns a connection to it.
fn host_engine(model: &str, threads: usize, max_frame: usize) -> Result<target::Stream, String> {
    let sock = std::env::temp_dir().join(format!("mcp-cli-host-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let opts = serve::ServeOptions {
        tcp: None,
        unix: Some(sock.display().to_string()),
        token_delay: Duration::ZERO,
        max_frame,
        model: Some(model.into()),
        threads,
    };
    // Serves until the process exits.
    std::thread::spawn(move || {
        if let Err(e) = serve::run_quiet(opts) {
            eprintln!("mcp-cli: host engine: {e}");
        }
    });
    let start = std::time::Instant::now();
    loop {
        if let Ok(s) = std::os::unix::net::UnixStream::connect(&sock) {
            return Ok(target::Stream::Unix(s));
        }
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!("host engine for {model} did not start"));
        }
        std::thread::sleep(Duration::from_millis(20));
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
            model: args.get("--model").map(Into::into),
            threads: args.number::<usize>("--threads")?.unwrap_or(1),
        })?;
        return Ok(true);
    }

    // The server: a VM booted for this command, the engine on this host, or a target.
    let mut vm = None;
    let mut url = args.get("--url").map(String::from);
    let stream = if let Some(arch) = args.get("--boot") {
        let (booted, stream, http_url) = boot::boot(&boot::BootOptions {
            arch: arch.to_string(),
            machine: args.get("--machine").map(Into::into),
            model: args.get("--model").map(Into::into),
            kernel: args.get("--kernel").map(Into::into),
            accel: args.get("--accel").map(Into::into),
            ready_timeout: Duration::from_secs(
                args.number::<u64>("--ready-timeout-s")?.unwrap_or(300),
            ),
            http_port: args.number::<u16>("--http-port")?,
        })?;
        vm = Some(booted);
        if command != "bridge" {
            url = http_url;
        }
        Some(stream)
    } else if let Some(u) = &url {
        if command == "bridge" {
            return Err(format!(
                "bridge relays a framed stream; an MCP client that speaks Streamable HTTP \
                 can use {u} directly"
            ));
        }
        None
    } else if let Some(model) = args.get("--host-engine") {
        Some(host_engine(
            model,
            args.number::<usize>("--threads")?.unwrap_or(1),
            max_frame,
        )?)
    } else {
        Some(args.target()?.connect()?)
    };
    if command == "bridge" {
        let stream = stream.ok_or("bridge needs a framed target")?;
        let result = bridge::run(stream, max_frame);
        drop(vm);
        result?;
        return Ok(true);
    }

    let timeout = args
        .number::<u64>("--timeout-ms")?
        .map(|ms| Duration::from_millis(ms.max(1)));
    let token = args
        .get("--token")
        .map(String::from)
        .or_else(|| std::env::var("MCP_TOKEN").ok());
    if command == "load" {
        let target = match &url {
            Some(_) => None,
            None if vm.is_none() && args.get("--host-engine").is_none() => Some(args.target()?),
            None => return Err("load needs --url or a framed target".into()),
        };
        let stateless = args.has("--stateless");
        let url = url.clone();
        let connect = move || -> Result<Client, String> {
            let mut client = match (&url, &target) {
                (Some(u), _) => {
                    let mut h = http_client::HttpClient::new(u, token.clone())?;
                    h.set_timeout(timeout.or(Some(Duration::from_secs(120))));
                    Client::http(h)
                }
                (None, Some(t)) => Client::new(t.connect()?, max_frame),
                (None, None) => unreachable!(),
            };
            client.set_stateless(stateless);
            client.initialize()?;
            Ok(client)
        };
        let ok = load::run(
            std::sync::Arc::new(connect),
            load::LoadOptions {
                clients: args.number("--clients")?.unwrap_or(32),
                infer_clients: args.number("--infer-clients")?.unwrap_or(4),
                requests: args.number("--requests")?.unwrap_or(20),
                infer_requests: args.number("--infer-requests")?.unwrap_or(3),
                max_tokens: args.number("--max-tokens")?.unwrap_or(4),
                deadline: Duration::from_secs(args.number("--seconds")?.unwrap_or(60)),
                as_json,
            },
        )?;
        drop(vm);
        return Ok(ok);
    }
    let mut client = match (url, stream) {
        (Some(u), _) => {
            let mut h = http_client::HttpClient::new(&u, token)?;
            h.set_timeout(timeout);
            Client::http(h)
        }
        (None, Some(stream)) => {
            if let Some(t) = timeout {
                stream
                    .set_read_timeout(Some(t))
                    .map_err(|e| format!("cannot set the read timeout: {e}"))?;
            }
            Client::new(stream, max_frame)
        }
        (None, None) => return Err("no target".into()),
    };
    client.set_stateless(args.has("--stateless"));
    client.initialize()?;
    let result = match command {
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
        "latency" => {
            commands::latency(&mut client, args.number("-n")?.unwrap_or(100), as_json).map(|_| true)
        }
        other => Err(format!("unknown command `{other}` (see --help)")),
    };
    client.close();
    result
}
