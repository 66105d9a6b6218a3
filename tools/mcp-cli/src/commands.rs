//! The client commands: tools, call, infer, logs, bench.

use std::io::{self, Write};
use std::thread;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::client::{result_text, Client};

/// `key=value` arguments: the value is JSON when it parses as JSON (`n=5`, `stop=["\n"]`,
/// `flag=true`), otherwise a plain string (`prompt=hello world`).
pub fn parse_key_values(pairs: &[String]) -> Result<Map<String, Value>, String> {
    let mut args = Map::new();
    for pair in pairs {
        let Some((key, raw)) = pair.split_once('=') else {
            return Err(format!("argument `{pair}` is not key=value"));
        };
        if key.is_empty() {
            return Err(format!("argument `{pair}` has an empty key"));
        }
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.into()));
        args.insert(key.into(), value);
    }
    Ok(args)
}

pub fn tools(client: &mut Client, as_json: bool) -> Result<(), String> {
    let result = client.request("tools/list", json!({}), |_| {})?;
    if as_json {
        println!("{}", pretty(&result));
        return Ok(());
    }
    for tool in result["tools"].as_array().into_iter().flatten() {
        let name = tool["name"].as_str().unwrap_or("?");
        let title = tool["title"].as_str().unwrap_or("");
        let description = tool["description"].as_str().unwrap_or("");
        println!("{name:<12} {title}");
        println!("{:<12} {}", "", description);
        if let Some(props) = tool["inputSchema"]["properties"].as_object() {
            let names: Vec<&str> = props.keys().map(String::as_str).collect();
            if !names.is_empty() {
                println!("{:<12} arguments: {}", "", names.join(", "));
            }
        }
    }
    Ok(())
}

/// Returns false when the tool reported an error (`isError`).
pub fn call(
    client: &mut Client,
    tool: &str,
    pairs: &[String],
    as_json: bool,
) -> Result<bool, String> {
    let args = parse_key_values(pairs)?;
    let result = client.call_tool(tool, Value::Object(args), None, |_| {})?;
    let is_error = result["isError"].as_bool().unwrap_or(false);
    if as_json {
        println!("{}", pretty(&result));
    } else if is_error {
        eprintln!("tool error: {}", result_text(&result));
    } else if let Some(structured) = result.get("structuredContent") {
        println!("{}", pretty(structured));
    } else {
        println!("{}", result_text(&result));
    }
    Ok(!is_error)
}

pub struct InferOptions {
    pub prompt: String,
    pub extra: Map<String, Value>,
    /// Send notifications/cancelled after this many streamed pieces.
    pub cancel_after: Option<u64>,
    pub as_json: bool,
}

pub fn infer(client: &mut Client, opts: InferOptions) -> Result<bool, String> {
    let mut args = opts.extra;
    args.insert("prompt".into(), Value::String(opts.prompt));
    let id = json!(client.next_id());
    client.send(&json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": "infer", "arguments": args, "_meta": { "progressToken": "infer" } }
    }))?;
    let mut pieces = 0u64;
    let mut streamed = false;
    let stdout = io::stdout();
    loop {
        let msg = client.recv()?;
        if msg.get("method").and_then(Value::as_str) == Some("notifications/progress") {
            if let Some(piece) = msg["params"]["message"].as_str() {
                streamed = true;
                pieces += 1;
                if !opts.as_json {
                    let mut out = stdout.lock();
                    let _ = out.write_all(piece.as_bytes());
                    let _ = out.flush();
                }
            }
            if opts.cancel_after.is_some_and(|n| pieces >= n) {
                return cancel_and_check(client, &id, pieces);
            }
            continue;
        }
        if msg.get("id") != Some(&id) {
            continue;
        }
        if let Some(err) = msg.get("error") {
            return Err(format!("error {}: {}", err["code"], err["message"]));
        }
        let result = &msg["result"];
        if opts.as_json {
            println!("{}", pretty(result));
            return Ok(!result["isError"].as_bool().unwrap_or(false));
        }
        if result["isError"].as_bool().unwrap_or(false) {
            eprintln!("infer failed: {}", result_text(result));
            return Ok(false);
        }
        let stats = &result["structuredContent"];
        if !streamed {
            print!("{}", stats["text"].as_str().unwrap_or(&result_text(result)));
        }
        println!();
        println!("--");
        println!(
            "{} tokens (prompt {}), finish {}, ttft {:.1} ms, prefill {:.1} tok/s, decode {:.1} tok/s",
            stats["completion_tokens"],
            stats["prompt_tokens"],
            stats["finish_reason"].as_str().unwrap_or("?"),
            stats["ttft_ms"].as_f64().unwrap_or(0.0),
            stats["prefill_tokens_per_s"].as_f64().unwrap_or(0.0),
            stats["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
        );
        return Ok(true);
    }
}

/// Cancels request `id` and proves the server is free again with a ping. Per the spec the
/// cancelled request gets no response; one that raced the cancel is reported.
fn cancel_and_check(client: &mut Client, id: &Value, pieces: u64) -> Result<bool, String> {
    client.notify(
        "notifications/cancelled",
        json!({ "requestId": id, "reason": "mcp-cli --cancel-after" }),
    )?;
    let ping_id = json!(client.next_id());
    client.send(&json!({ "jsonrpc": "2.0", "id": ping_id, "method": "ping" }))?;
    let mut late = 0u64;
    loop {
        let msg = client.recv()?;
        if msg.get("id") == Some(id) {
            println!();
            println!("-- the request finished before the cancel arrived");
            continue;
        }
        if msg.get("id") == Some(&ping_id) {
            println!();
            println!("-- cancelled after {pieces} pieces ({late} more were in flight); server answered ping");
            return Ok(true);
        }
        if msg.get("method").is_some() {
            late += 1;
        }
    }
}

pub fn logs(
    client: &mut Client,
    level: &str,
    mut cursor: u64,
    follow: bool,
    interval: Duration,
) -> Result<(), String> {
    loop {
        let result = client.call_tool(
            "logs",
            json!({ "cursor": cursor, "level": level, "limit": 500 }),
            None,
            |_| {},
        )?;
        if result["isError"].as_bool().unwrap_or(false) {
            return Err(format!("logs failed: {}", result_text(&result)));
        }
        let page = &result["structuredContent"];
        let dropped = page["dropped"].as_u64().unwrap_or(0);
        if dropped > 0 {
            println!("[{dropped} older lines were overwritten]");
        }
        let lines = page["lines"].as_array().cloned().unwrap_or_default();
        for line in &lines {
            println!(
                "{:>6} {:>9.3} {:<9} {}",
                line["seq"],
                line["ms"].as_f64().unwrap_or(0.0) / 1e3,
                line["level"].as_str().unwrap_or("?"),
                line["text"].as_str().unwrap_or("")
            );
        }
        let _ = io::stdout().flush();
        cursor = page["next_cursor"].as_u64().unwrap_or(cursor);
        if !follow {
            return Ok(());
        }
        if lines.len() < 500 {
            thread::sleep(interval);
        }
    }
}

pub struct BenchOptions {
    pub runs: usize,
    pub prompt: String,
    pub max_tokens: u64,
    pub as_json: bool,
}

/// Summary of a sample: median, min, max, relative spread.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub stddev: f64,
}

pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let var = sorted.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
    Some(Summary {
        median,
        min: sorted[0],
        max: sorted[n - 1],
        stddev: var.sqrt(),
    })
}

pub fn bench(client: &mut Client, opts: BenchOptions) -> Result<(), String> {
    let mut decode = Vec::new();
    let mut prefill = Vec::new();
    let mut ttft = Vec::new();
    let mut tokens = 0u64;
    for run in 0..opts.runs {
        let result = client.call_tool(
            "infer",
            json!({ "prompt": opts.prompt, "max_tokens": opts.max_tokens, "temperature": 0 }),
            None,
            |_| {},
        )?;
        if result["isError"].as_bool().unwrap_or(false) {
            return Err(format!("run {run}: infer failed: {}", result_text(&result)));
        }
        let s = &result["structuredContent"];
        decode.push(s["decode_tokens_per_s"].as_f64().unwrap_or(0.0));
        prefill.push(s["prefill_tokens_per_s"].as_f64().unwrap_or(0.0));
        ttft.push(s["ttft_ms"].as_f64().unwrap_or(0.0));
        tokens += s["completion_tokens"].as_u64().unwrap_or(0);
        if !opts.as_json {
            eprintln!(
                "run {:>3}: decode {:.1} tok/s, prefill {:.1} tok/s, ttft {:.1} ms",
                run + 1,
                decode[run],
                prefill[run],
                ttft[run]
            );
        }
    }
    let (Some(d), Some(p), Some(t)) = (summarize(&decode), summarize(&prefill), summarize(&ttft))
    else {
        return Err("bench needs at least one run (-n)".into());
    };
    if opts.as_json {
        let s = |x: &Summary| json!({ "median": x.median, "min": x.min, "max": x.max, "stddev": x.stddev });
        println!(
            "{}",
            pretty(&json!({ "runs": opts.runs, "completion_tokens": tokens,
                            "decode_tokens_per_s": s(&d), "prefill_tokens_per_s": s(&p),
                            "ttft_ms": s(&t) }))
        );
    } else {
        let spread = |x: &Summary| {
            if x.median > 0.0 {
                100.0 * x.stddev / x.median
            } else {
                0.0
            }
        };
        println!(
            "decode  tok/s: median {:.2}  min {:.2}  max {:.2}  spread ±{:.1}%",
            d.median,
            d.min,
            d.max,
            spread(&d)
        );
        println!(
            "prefill tok/s: median {:.2}  min {:.2}  max {:.2}  spread ±{:.1}%",
            p.median,
            p.min,
            p.max,
            spread(&p)
        );
        println!(
            "ttft ms:       median {:.2}  min {:.2}  max {:.2}",
            t.median, t.min, t.max
        );
        println!("{} runs, {} tokens generated", opts.runs, tokens);
    }
    Ok(())
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// `latency`: round trips of `ping` and of `health` on one session, one after the other.
pub fn latency(client: &mut Client, n: usize, as_json: bool) -> Result<(), String> {
    let mut results = Vec::new();
    for (name, method, params) in [
        ("ping", "ping", json!({})),
        (
            "health",
            "tools/call",
            json!({ "name": "health", "arguments": {} }),
        ),
    ] {
        let mut ms = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            let t0 = std::time::Instant::now();
            client.request(method, params.clone(), |_| {})?;
            ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        let median = summarize(&ms).map_or(0.0, |s| s.median);
        ms.sort_by(f64::total_cmp);
        let p99 = ms[((ms.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)];
        results.push((name, median, p99, ms.len()));
    }
    if as_json {
        let v: Map<String, Value> = results
            .iter()
            .map(|(name, median, p99, n)| {
                (
                    name.to_string(),
                    json!({ "median_ms": median, "p99_ms": p99, "n": n }),
                )
            })
            .collect();
        println!("{}", Value::Object(v));
    } else {
        for (name, median, p99, n) in results {
            println!("{name:<7} round trip: median {median:.3} ms  p99 {p99:.3} ms  ({n} calls)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_parse_json_or_string() {
        let args = parse_key_values(&[
            "n=5".into(),
            "prompt=hello world".into(),
            "stop=[\"x\"]".into(),
            "s=\"5\"".into(),
            "eq=a=b".into(),
        ])
        .unwrap();
        assert_eq!(args["n"], 5);
        assert_eq!(args["prompt"], "hello world");
        assert_eq!(args["stop"], json!(["x"]));
        assert_eq!(args["s"], "5");
        assert_eq!(args["eq"], "a=b");
        assert!(parse_key_values(&["novalue".into()]).is_err());
        assert!(parse_key_values(&["=1".into()]).is_err());
    }

    #[test]
    fn summary_statistics() {
        let s = summarize(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert!((s.stddev - 3.5355).abs() < 1e-3);
        assert_eq!(summarize(&[4.0]).unwrap().median, 4.0);
        assert!(summarize(&[]).is_none());
    }
}
