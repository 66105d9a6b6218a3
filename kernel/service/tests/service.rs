//! The service over a real share directory and the real stories260K model, driven through
//! the MCP server exactly as a client would (JSON-RPC, schema validation included).

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

use inference::exec::Inline;
use inference::kernels::CpuFeatures;
use mcp::frame::{encode_frame, FrameDecoder, FrameEvent};
use mcp::serde_json::{self, json, Value};
use mcp::{MemoryConnection, Server, ServerConfig, ServerLoop, ToolRegistry};
use mk_models::{llama2c, Quant};
use mk_service::host::{shared_log, DirFs, RingLogs, SharedLog};
use mk_service::logs::Level;
use mk_service::{MemoryStats, ModelLimits, Platform, PlatformInfo, Service};

const CKPT: &[u8] = include_bytes!("../../../models/stories260k/stories260K.bin");
const TOK: &[u8] = include_bytes!("../../../models/stories260k/tok512.bin");
const EXPECTED: &str = include_str!("../../../models/stories260k/expected-greedy-200.txt");

// ------------------------------------------------------------- platform ----

/// Heap statistics the test controls.
struct FakeMemory {
    free: Rc<Cell<u64>>,
}

impl MemoryStats for FakeMemory {
    fn heap_used_bytes(&self) -> u64 {
        1 << 20
    }
    fn heap_free_bytes(&self) -> u64 {
        self.free.get()
    }
}

fn clock_ns() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A temporary share with the stories260K model in f32 and q8_0, a sub-directory with a
/// copy, a damaged model and a file that is not a model.
struct Share(PathBuf);

/// stories260K in f32 and q8_0, converted once for all tests (q8_0 conversion calibrates).
fn converted() -> &'static (Vec<u8>, Vec<u8>) {
    static MODELS: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    MODELS.get_or_init(|| {
        (
            llama2c::convert(CKPT, TOK, Quant::F32).unwrap(),
            llama2c::convert(CKPT, TOK, Quant::Q8_0).unwrap(),
        )
    })
}

impl Share {
    fn new(name: &str) -> Share {
        let dir = std::env::temp_dir().join(format!("mk-service-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("more")).unwrap();
        let (f32, q8) = converted();
        std::fs::write(dir.join("stories260K.safetensors"), f32).unwrap();
        std::fs::write(dir.join("more/stories260K-copy.safetensors"), f32).unwrap();
        std::fs::write(dir.join("stories260K-q8_0.safetensors"), q8).unwrap();
        // Truncated in the middle of the tensor data: the container check must catch it.
        std::fs::write(dir.join("broken.safetensors"), &f32[..f32.len() / 2]).unwrap();
        std::fs::write(dir.join("notes.txt"), b"not a model").unwrap();
        Share(dir)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// -------------------------------------------------------------- harness ----

/// One client connection to the server loop (the stream transport the kernel runs).
struct Harness {
    lp: ServerLoop<Rc<RefCell<MemoryConnection>>>,
    conn: Rc<RefCell<MemoryConnection>>,
    decoder: FrameDecoder,
    /// Notifications received and not yet taken by `notifications()`.
    notes: Vec<Value>,
    next_id: u64,
    free: Rc<Cell<u64>>,
    ring: SharedLog,
    service: Service,
    _share: Share,
}

impl Harness {
    fn new(name: &str, model: Option<&str>) -> Harness {
        let share = Share::new(name);
        let free = Rc::new(Cell::new(512 << 20));
        let ring = shared_log();
        {
            let mut r = ring.borrow_mut();
            r.push(Level::Info, 0, "kernel", "microkernelia booting");
            r.push(Level::Debug, 1_000_000, "kernel", "mem 0x0-0x9fc00 usable");
            r.push(
                Level::Warn,
                2_000_000,
                "kernel::devices",
                "devices: ignoring virtio device id 1",
            );
            r.push(
                Level::Info,
                3_000_000,
                "kernel",
                "boot done: 5000 us since first instruction",
            );
        }
        let platform = Platform {
            fs: Box::new(DirFs::new(&share.0)),
            logs: Box::new(RingLogs(ring.clone())),
            memory: Box::new(FakeMemory { free: free.clone() }),
            clock: clock_ns,
            executor: Box::new(Inline),
            info: PlatformInfo {
                kernel_version: "0.1.0".into(),
                arch: "x86_64",
                cpu_feature_names: vec![],
                cpu_features: CpuFeatures::default(),
            },
        };
        let service = Service::new(platform, ModelLimits::default());
        if let Some(m) = model {
            service.load(m).unwrap();
        }
        let mut tools = ToolRegistry::new();
        service.register(&mut tools).unwrap();
        let mut lp = ServerLoop::new(Server::new(ServerConfig::default(), tools));
        let conn = Rc::new(RefCell::new(MemoryConnection::new()));
        lp.add(conn.clone());
        let mut h = Harness {
            lp,
            conn,
            decoder: FrameDecoder::new(usize::MAX >> 1),
            notes: Vec::new(),
            next_id: 0,
            free,
            ring,
            service,
            _share: share,
        };
        let r = h.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "0"}}),
        );
        assert!(r.get("result").is_some(), "{r}");
        h.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        h
    }

    /// Sends one message and serves it; returns its response (notifications sent
    /// meanwhile are kept for `notifications()`).
    fn send(&mut self, msg: &Value) -> Option<Value> {
        self.push(msg);
        self.serve()
    }

    /// Queues a message on the connection without serving it.
    fn push(&mut self, msg: &Value) {
        let bytes = serde_json::to_vec(msg).unwrap();
        self.conn.borrow_mut().push(&encode_frame(&bytes));
    }

    /// Serves what was sent; returns the one response, if any.
    fn serve(&mut self) -> Option<Value> {
        while self.lp.poll() {}
        let out = std::mem::take(&mut self.conn.borrow_mut().outgoing);
        let mut events = Vec::new();
        self.decoder.feed(&out, &mut events);
        let mut response = None;
        for event in events {
            let FrameEvent::Frame(payload) = event else {
                panic!("the server sent a bad frame: {event:?}");
            };
            let v: Value = serde_json::from_slice(&payload).unwrap();
            if v.get("method").is_some() {
                self.notes.push(v);
            } else {
                assert!(response.is_none(), "two responses: {response:?}, {v}");
                response = Some(v);
            }
        }
        response
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        self.send(&msg).expect("a response")
    }

    /// `tools/call`; returns the `result` (tool errors are results with isError).
    fn call(&mut self, tool: &str, args: Value) -> Value {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args}));
        r.get("result")
            .cloned()
            .unwrap_or_else(|| panic!("{tool}: {r}"))
    }

    fn ok(&mut self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args.clone());
        assert_ne!(r["isError"], true, "{tool} {args}: {r}");
        r["structuredContent"].clone()
    }

    fn tool_error(&mut self, tool: &str, args: Value) -> String {
        let r = self.call(tool, args.clone());
        assert_eq!(r["isError"], true, "{tool} {args} should fail: {r}");
        r["content"][0]["text"].as_str().unwrap().to_string()
    }

    /// Notifications the server sent since the last call.
    fn notifications(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.notes)
    }
}

fn greedy(max_tokens: u32) -> Value {
    json!({"prompt": "", "temperature": 0, "max_tokens": max_tokens})
}

// ---------------------------------------------------------------- tests ----

#[test]
fn tools_list_offers_the_six_tools() {
    let mut h = Harness::new("list", None);
    let r = h.request("tools/list", json!({}));
    let names: Vec<&str> = r["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "infer",
            "health",
            "metadata",
            "load_model",
            "logs",
            "list_models"
        ]
    );
}

#[test]
fn greedy_infer_from_no_prompt_reproduces_the_reference() {
    let mut h = Harness::new("greedy", Some("stories260K.safetensors"));
    let out = h.ok("infer", greedy(200));
    assert_eq!(out["text"], EXPECTED);
    assert_eq!(out["finish_reason"], "length");
    assert_eq!(out["prompt_tokens"], 1);
    assert_eq!(out["completion_tokens"], 200);
    assert!(out["ttft_ms"].as_f64().unwrap() > 0.0);
    assert!(out["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(out["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    // Same again: the reused KV cache does not leak into the next call.
    let again = h.ok("infer", greedy(40));
    assert!(EXPECTED.starts_with(again["text"].as_str().unwrap()));
    assert_eq!(again["completion_tokens"], 40);
}

#[test]
fn infer_streams_progress_and_honours_stop_and_prompt() {
    let mut h = Harness::new("stream", Some("stories260K.safetensors"));
    h.notifications();
    let r = h.request(
        "tools/call",
        json!({"name": "infer", "arguments": greedy(30), "_meta": {"progressToken": "p1"}}),
    );
    let text = r["result"]["structuredContent"]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let notes = h.notifications();
    let streamed: String = notes
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .map(|n| {
            assert_eq!(n["params"]["progressToken"], "p1");
            assert_eq!(n["params"]["total"], 30);
            n["params"]["message"].as_str().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(streamed, text);
    assert!(notes.len() >= 30, "one progress notification per token");

    // A stop string cuts the text before it.
    let out = h.ok(
        "infer",
        json!({"prompt": "", "temperature": 0, "max_tokens": 200, "stop": ["Lily"]}),
    );
    let full_before = &EXPECTED[..EXPECTED.find("Lily").unwrap()];
    assert_eq!(out["text"], full_before);
    assert_eq!(out["finish_reason"], "stop");

    // A real prompt continues from its text; sampling with a seed is reproducible.
    let args = json!({"prompt": "Once upon a time", "temperature": 0.9, "top_k": 40,
                      "top_p": 0.9, "seed": 7, "max_tokens": 20});
    let a = h.ok("infer", args.clone());
    let b = h.ok("infer", args);
    assert_eq!(a["text"], b["text"]);
    assert!(a["prompt_tokens"].as_u64().unwrap() > 1);
}

#[test]
fn infer_is_cancelled_by_the_client() {
    let mut h = Harness::new("cancel", Some("stories260K.safetensors"));
    // The cancel arrives while the call runs (the tool pumps the caller's connection).
    let id = h.next_id + 1;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": id, "reason": "test"}});
    let before = h.lp.server().stats().cancelled;
    h.push(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                   "params": {"name": "infer", "arguments": greedy(200)}}));
    h.push(&cancel);
    let r = h.serve();
    h.next_id = id;
    assert!(r.is_none(), "a cancelled request gets no response: {r:?}");
    assert_eq!(h.lp.server().stats().cancelled, before + 1);
    // The service is still usable.
    let out = h.ok("infer", greedy(10));
    assert_eq!(out["completion_tokens"], 10);
}

#[test]
fn prompts_too_long_for_the_context_are_refused() {
    let mut h = Harness::new("longprompt", Some("stories260K.safetensors"));
    // The schema's longest prompt cannot fit stories260K's 512 positions: refused by the
    // bound counted before encoding (the quadratic merge loop spent 228 s on it).
    let e = h.tool_error(
        "infer",
        json!({"prompt": "a".repeat(65_536), "max_tokens": 1}),
    );
    assert!(
        e.contains("prompt is at least") && e.contains("the context holds 512"),
        "{e}"
    );
    // Over the context only once encoded: the exact count.
    let story = "Once upon a time, there was a little girl named Lily. ".repeat(40);
    let e = h.tool_error("infer", json!({"prompt": story, "max_tokens": 1}));
    assert!(
        e.starts_with("prompt is ") && !e.starts_with("prompt is at least"),
        "{e}"
    );
    assert_eq!(h.ok("infer", greedy(10))["completion_tokens"], 10);
}

#[test]
fn degenerate_sampling_values_decode_greedily() {
    let mut h = Harness::new("degenerate", Some("stories260K.safetensors"));
    // 1e-45 would make every logit infinite, 1e-50 is 0 as an f32: both are greedy now.
    for args in [
        json!({"prompt": "", "temperature": 1e-45, "max_tokens": 60}),
        json!({"prompt": "", "temperature": 1e-45, "top_p": 1e-50, "max_tokens": 60}),
        json!({"prompt": "", "temperature": 0.8, "top_p": 1e-50, "max_tokens": 60}),
        json!({"prompt": "", "temperature": 2, "top_p": 0, "max_tokens": 60}),
    ] {
        let out = h.ok("infer", args.clone());
        assert_eq!(out["completion_tokens"], 60, "{args}");
        let text = out["text"].as_str().unwrap();
        assert!(EXPECTED.starts_with(text), "{args}: {text:?}");
    }
}

#[test]
fn bad_arguments_are_clear_errors() {
    let mut h = Harness::new("badargs", Some("stories260K.safetensors"));
    for (args, want) in [
        (json!({}), "prompt"),
        (json!({"prompt": "a", "max_tokens": 0}), "at least 1"),
        (json!({"prompt": "a", "temperature": -1}), "at least 0"),
        (json!({"prompt": "a", "top_p": 2}), "at most 1"),
        (json!({"prompt": "a", "wat": 1}), "wat"),
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "no chat template",
        ),
    ] {
        let r = h.request("tools/call", json!({"name": "infer", "arguments": args}));
        let msg = r.to_string();
        assert!(
            r.get("error").is_some() || r["result"]["isError"] == true,
            "{args}: {r}"
        );
        assert!(msg.contains(want), "{args}: want {want:?} in {msg}");
    }
    let e = h.tool_error("load_model", json!({"path": "../etc/passwd"}));
    assert!(e.contains("bad model path"), "{e}");
    let e = h.tool_error("load_model", json!({"path": "missing.safetensors"}));
    assert!(e.contains("cannot open missing.safetensors"), "{e}");
}

#[test]
fn infer_without_a_model_is_an_error() {
    let mut h = Harness::new("nomodel", None);
    let e = h.tool_error("infer", greedy(5));
    assert!(e.contains("no model is loaded"), "{e}");
    assert_eq!(h.ok("health", json!({}))["model"], Value::Null);
    assert_eq!(h.ok("metadata", json!({}))["model"], Value::Null);
}

#[test]
fn bad_model_file_keeps_the_old_model() {
    let mut h = Harness::new("badmodel", Some("stories260K.safetensors"));
    let before = h.ok("infer", greedy(20))["text"].clone();
    for (path, want) in [
        ("broken.safetensors", "is not a usable model"),
        ("notes.txt", "is not a usable model"),
    ] {
        let e = h.tool_error("load_model", json!({ "path": path }));
        assert!(e.contains(want), "{path}: {e}");
        assert_eq!(h.ok("infer", greedy(20))["text"], before, "after {path}");
    }
    // Too large for the free heap: refused before reading, old model kept.
    h.free.set(1 << 20);
    let e = h.tool_error(
        "load_model",
        json!({"path": "stories260K-q8_0.safetensors"}),
    );
    assert!(e.contains("only 0 MiB of heap are free"), "{e}");
    h.free.set(512 << 20);
    assert_eq!(h.ok("infer", greedy(20))["text"], before);
    assert_eq!(
        h.ok("metadata", json!({}))["model"]["path"],
        "stories260K.safetensors"
    );
}

#[test]
fn load_model_replaces_the_model() {
    let mut h = Harness::new("replace", Some("stories260K.safetensors"));
    let out = h.ok(
        "load_model",
        json!({"path": "stories260K-q8_0.safetensors"}),
    );
    assert_eq!(out["quant"], "q8_0");
    assert_eq!(out["path"], "stories260K-q8_0.safetensors");
    assert!(out["parameters"].as_u64().unwrap() > 200_000);
    let meta = h.ok("metadata", json!({}));
    assert_eq!(meta["model"]["quant"], "q8_0");
    // Q8_0 follows the f32 greedy text for a while (the reference is f32).
    let text = h.ok("infer", greedy(12))["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(EXPECTED.starts_with(&text), "{text:?}");
    let out = h.ok(
        "load_model",
        json!({"path": "more/stories260K-copy.safetensors"}),
    );
    assert_eq!(out["quant"], "f32");
    assert_eq!(h.ok("infer", greedy(200))["text"], EXPECTED);
}

#[test]
fn metadata_reports_platform_and_model() {
    let mut h = Harness::new("meta", Some("stories260K.safetensors"));
    let m = h.ok("metadata", json!({}));
    assert_eq!(m["kernel_version"], "0.1.0");
    assert_eq!(m["arch"], "x86_64");
    assert_eq!(m["kernel_variant"], "scalar");
    assert_eq!(m["kernel_variant"], h.service.kernel_variant());
    let model = &m["model"];
    assert_eq!(model["quant"], "f32");
    assert_eq!(model["architecture"], "llama");
    assert_eq!(model["dim"], 64);
    assert_eq!(model["n_layers"], 5);
    assert_eq!(model["n_heads"], 8);
    assert_eq!(model["n_kv_heads"], 4);
    assert_eq!(model["vocab_size"], 512);
    assert_eq!(model["context_length"], 512);
    assert_eq!(model["tokenizer"], "sentencepiece");
}

#[test]
fn health_counts_requests() {
    let mut h = Harness::new("health", Some("stories260K.safetensors"));
    let a = h.ok("health", json!({}));
    h.ok("infer", greedy(3));
    h.tool_error("load_model", json!({"path": "notes.txt"}));
    let b = h.ok("health", json!({}));
    let served = |v: &Value| v["requests_served"].as_u64().unwrap();
    assert_eq!(served(&b), served(&a) + 3);
    assert_eq!(
        b["errors"].as_u64().unwrap(),
        a["errors"].as_u64().unwrap() + 1
    );
    assert_eq!(b["heap_free_bytes"], 512u64 << 20);
    assert_eq!(b["heap_used_bytes"], 1u64 << 20);
    assert!(b["model"].as_str().unwrap().contains("stories260K"));
}

#[test]
fn logs_pages_with_cursor_and_level() {
    let mut h = Harness::new("logs", None);
    let all = h.ok("logs", json!({}));
    let texts: Vec<&str> = all["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 4);
    assert!(texts[3].starts_with("boot done"));
    let next = all["next_cursor"].as_u64().unwrap();
    assert_eq!(next, 4);
    let warn = h.ok("logs", json!({"level": "warning"}));
    assert_eq!(warn["lines"].as_array().unwrap().len(), 1);
    assert_eq!(warn["lines"][0]["level"], "warning");
    // Following: only new lines after the cursor.
    h.ring
        .borrow_mut()
        .push(Level::Error, 9_000_000, "kernel", "vsock: connection reset");
    let more = h.ok("logs", json!({ "cursor": next }));
    assert_eq!(more["lines"].as_array().unwrap().len(), 1);
    assert_eq!(more["lines"][0]["text"], "vsock: connection reset");
    let r = h.request(
        "tools/call",
        json!({"name": "logs", "arguments": {"level": "loud"}}),
    );
    assert!(
        r.get("error").is_some() || r["result"]["isError"] == true,
        "{r}"
    );
}

#[test]
fn list_models_shows_model_files() {
    let mut h = Harness::new("listmodels", Some("stories260K.safetensors"));
    let out = h.ok("list_models", json!({}));
    let models = out["models"].as_array().unwrap();
    let paths: Vec<&str> = models.iter().map(|m| m["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "broken.safetensors",
            "more/stories260K-copy.safetensors",
            "stories260K-q8_0.safetensors",
            "stories260K.safetensors"
        ]
    );
    let loaded: Vec<bool> = models
        .iter()
        .map(|m| m["loaded"].as_bool().unwrap())
        .collect();
    assert_eq!(loaded, [false, false, false, true]);
    assert!(models[3]["size_bytes"].as_u64().unwrap() > 900_000);
}
