//! `load`: many concurrent MCP clients against one server, each its own session on its own
//! connection: `--clients` of them call `health`, `--infer-clients` call a short `infer`
//! (streamed, with a progress token), each `--requests` times, all within a `--seconds`
//! deadline. Reports how many calls were answered, failed or never sent (deadline), and
//! the round-trip latency of each kind. Used by the HTTP load test and to try a
//! deployment; it works over every target (`--url` or a framed one).
//!
//! The sessions are opened one after another before the load starts: QEMU's user
//! networking accepts forwarded connections with a listen backlog of one, so a burst of
//! simultaneous connects would mostly measure the host's SYN retransmission (1 s, 3 s, …).

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::Client;
use crate::commands::summarize;

pub struct LoadOptions {
    pub clients: usize,
    pub infer_clients: usize,
    pub requests: usize,
    pub infer_requests: usize,
    pub max_tokens: u64,
    pub deadline: Duration,
    pub as_json: bool,
}

#[derive(Default)]
struct Tally {
    ok: usize,
    failed: usize,
    unsent: usize,
    latencies_ms: Vec<f64>,
    errors: Vec<String>,
}

/// Runs the load; `connect` makes one client (already initialized). Returns whether every
/// call was answered without error.
pub fn run(
    connect: Arc<dyn Fn() -> Result<Client, String> + Send + Sync>,
    opts: LoadOptions,
) -> Result<bool, String> {
    let start = Instant::now();
    let end = start + opts.deadline;
    let health = Arc::new(Mutex::new(Tally::default()));
    let infer = Arc::new(Mutex::new(Tally::default()));
    let mut threads = Vec::new();
    let kinds = (0..opts.clients)
        .map(|_| false)
        .chain((0..opts.infer_clients).map(|_| true));
    let mut clients = Vec::new();
    for (i, is_infer) in kinds.enumerate() {
        clients.push((i, is_infer, connect()));
    }
    let connected_s = start.elapsed().as_secs_f64();
    for (i, is_infer, client) in clients {
        let tally = if is_infer {
            infer.clone()
        } else {
            health.clone()
        };
        let n = if is_infer {
            opts.infer_requests
        } else {
            opts.requests
        };
        let max_tokens = opts.max_tokens;
        threads.push(thread::spawn(move || {
            let record = |f: &dyn Fn(&mut Tally)| f(&mut tally.lock().unwrap());
            let mut client = match client {
                Ok(c) => c,
                Err(e) => {
                    record(&|t| {
                        t.failed += n;
                        t.errors.push(format!("client {i}: {e}"));
                    });
                    return;
                }
            };
            for k in 0..n {
                if Instant::now() >= end {
                    record(&|t| t.unsent += n - k);
                    break;
                }
                let t0 = Instant::now();
                let result = if is_infer {
                    client.call_tool(
                        "infer",
                        json!({ "prompt": "Once upon a time", "max_tokens": max_tokens }),
                        Some(json!(format!("load-{i}-{k}"))),
                        |_| {},
                    )
                } else {
                    client.call_tool("health", json!({}), None, |_| {})
                };
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                match result {
                    Ok(r) if r["isError"] != Value::Bool(true) => record(&|t| {
                        t.ok += 1;
                        t.latencies_ms.push(ms);
                    }),
                    Ok(r) => record(&|t| {
                        t.failed += 1;
                        t.errors.push(format!("client {i}: tool error {r}"));
                    }),
                    Err(e) => record(&|t| {
                        t.failed += 1;
                        t.errors.push(format!("client {i}: {e}"));
                    }),
                }
            }
            client.close();
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    let elapsed = start.elapsed().as_secs_f64() - connected_s;
    let report = |t: &Tally| {
        let mut sorted = t.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = sorted
            .get(((sorted.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0);
        json!({
            "ok": t.ok, "failed": t.failed, "unsent": t.unsent,
            "median_ms": summarize(&t.latencies_ms).map_or(0.0, |s| s.median),
            "p99_ms": p99,
            "errors": t.errors.iter().take(5).collect::<Vec<_>>(),
        })
    };
    let (h, f) = (health.lock().unwrap(), infer.lock().unwrap());
    let all_ok = h.failed + h.unsent + f.failed + f.unsent == 0;
    let out = json!({
        "clients": opts.clients, "infer_clients": opts.infer_clients,
        "connect_s": connected_s, "elapsed_s": elapsed, "all_answered": all_ok,
        "health": report(&h), "infer": report(&f),
    });
    if opts.as_json {
        println!("{out}");
    } else {
        println!(
            "{} health calls answered ({} failed, {} unsent), median {:.1} ms, p99 {:.1} ms",
            h.ok, h.failed, h.unsent, out["health"]["median_ms"], out["health"]["p99_ms"]
        );
        println!(
            "{} infer calls answered ({} failed, {} unsent), median {:.1} ms",
            f.ok, f.failed, f.unsent, out["infer"]["median_ms"]
        );
        for e in h.errors.iter().chain(f.errors.iter()).take(10) {
            eprintln!("  {e}");
        }
        println!("{elapsed:.1} s under load ({connected_s:.1} s to open the sessions)");
    }
    Ok(all_ok)
}
