//! Protocol behaviour of the server loop: error codes, both lifecycles, tools, progress,
//! cancellation, logging, framing errors, several connections.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::*;
use mcp::frame::encode_frame;
use mcp::serde_json::{json, Value};
use mcp::ServerConfig;

// ---------------------------------------------------------------- JSON-RPC error codes

#[test]
fn parse_error_for_bad_json_and_bad_utf8() {
    let mut h = Harness::standard();
    for bad in [&b"{\"jsonrpc\":"[..], b"not json", &[0xff, 0xfe, 0x00][..]] {
        h.push_raw(&encode_frame(bad));
        let r = h.run();
        assert_eq!(r.len(), 1);
        assert_eq!(error_code(&r[0]), -32700);
        assert_eq!(r[0]["id"], Value::Null);
    }
}

#[test]
fn invalid_request_codes() {
    let mut h = Harness::standard();
    let r = h.request(json!(17));
    assert_eq!(error_code(&r), -32600);
    let r = h.request(json!({"jsonrpc": "2.0", "id": 4, "method": 9}));
    assert_eq!((error_code(&r), r["id"].clone()), (-32600, json!(4)));
    // Not initialized and not stateless.
    let r = h.request(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}));
    assert_eq!(error_code(&r), -32600);
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("initialize"));
}

#[test]
fn method_not_found() {
    let mut h = Harness::standard();
    h.initialize("2025-11-25");
    let r = h.request(json!({"jsonrpc": "2.0", "id": "x", "method": "resources/list"}));
    assert_eq!((error_code(&r), r["id"].clone()), (-32601, json!("x")));
}

#[test]
fn invalid_params_codes() {
    let mut h = Harness::standard();
    let r = h.request(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}));
    assert_eq!(error_code(&r), -32602);
    h.initialize("2025-06-18");
    let cases = [
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call"}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": 5}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
               "params": {"name": "nope", "arguments": {}}}),
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
               "params": {"name": "echo", "arguments": [1]}}),
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": 1}}}),
        json!({"jsonrpc": "2.0", "id": 7, "method": "logging/setLevel",
               "params": {"level": "loud"}}),
        json!({"jsonrpc": "2.0", "id": 8, "method": "server/discover"}),
        json!({"jsonrpc": "2.0", "id": 11, "method": "tools/list", "params": {"cursor": "abc"}}),
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": "a"},
                          "_meta": {"progressToken": {}}}}),
    ];
    for case in cases {
        let r = h.request(case.clone());
        assert_eq!(error_code(&r), -32602, "{case} -> {r}");
        assert_eq!(r["id"], case["id"]);
    }
    let r = h.request(json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call",
                             "params": {"name": "nope"}}));
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown tool `nope`"));
    assert!(r["error"]["message"].as_str().unwrap().contains("echo"));
}

#[test]
fn internal_error_for_output_schema_violation_and_oversized_reply() {
    let mut h = Harness::with_config(
        ServerConfig {
            max_frame: 4096,
            ..ServerConfig::default()
        },
        test_tools(Rc::new(RefCell::new(Vec::new()))),
    );
    h.initialize("2025-11-25");
    let r = h.request(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                             "params": {"name": "liar"}}));
    assert_eq!(error_code(&r), -32603);
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("outputSchema"));
    let r = h.request(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                             "params": {"name": "big", "arguments": {"bytes": 10000}}}));
    assert_eq!((error_code(&r), r["id"].clone()), (-32603, json!(2)));
    // The connection is still fine.
    let r = h.request(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}));
    assert_eq!(r["result"], json!({}));
}

#[test]
fn notifications_get_no_reply_and_responses_are_dropped() {
    let mut h = Harness::standard();
    h.initialize("2025-11-25");
    h.push(&json!({"jsonrpc": "2.0", "method": "notifications/whatever", "params": {}}));
    h.push(&json!({"jsonrpc": "2.0", "method": "tools/list"})); // no id: a notification
    h.push(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": 99}}),
    );
    h.push(&json!({"jsonrpc": "2.0", "id": 5, "result": {}}));
    assert!(h.run().is_empty());
}

// ---------------------------------------------------------------- legacy lifecycle

#[test]
fn initialize_negotiates_versions() {
    for v in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let mut h = Harness::standard();
        let r = h.initialize(v);
        assert_eq!(r["result"]["protocolVersion"], v);
        assert_eq!(r["result"]["serverInfo"]["name"], "microkernelia");
        assert!(r["result"]["capabilities"]["tools"].is_object());
        assert!(r["result"]["capabilities"]["logging"].is_object());
    }
    for v in ["1999-01-01", "2026-07-28", "latest"] {
        let mut h = Harness::standard();
        let r = h.initialize(v);
        assert_eq!(r["result"]["protocolVersion"], "2025-11-25", "{v}");
    }
}

#[test]
fn ping_before_initialize_and_double_initialize() {
    let mut h = Harness::standard();
    let r = h.request(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    assert_eq!(r["result"], json!({}));
    h.initialize("2025-06-18");
    let r = h.request(json!({"jsonrpc": "2.0", "id": 2, "method": "initialize",
                             "params": {"protocolVersion": "2025-06-18", "capabilities": {}}}));
    assert_eq!(error_code(&r), -32600);
}

#[test]
fn tools_list_fields_follow_the_negotiated_version() {
    let mut h = Harness::standard();
    h.initialize("2025-06-18");
    let r = h.request(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
    let tools = r["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["echo", "stream", "fail", "liar", "big"]);
    let echo = &tools[0];
    assert_eq!(echo["title"], "Echo");
    assert_eq!(echo["inputSchema"]["required"], json!(["text"]));
    assert!(echo["outputSchema"].is_object());
    assert!(r["result"].get("resultType").is_none());

    let mut old = Harness::standard();
    old.initialize("2025-03-26");
    let r = old.request(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
    let echo = &r["result"]["tools"][0];
    assert!(echo.get("title").is_none() && echo.get("outputSchema").is_none());
    assert!(echo["inputSchema"].is_object());
}

#[test]
fn tool_call_results_and_errors() {
    let mut h = Harness::standard();
    h.initialize("2025-11-25");
    let r = h.request(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                             "params": {"name": "echo", "arguments": {"text": "héllo"}}}));
    assert_eq!(
        r["result"]["content"],
        json!([{"type": "text", "text": "héllo"}])
    );
    assert_eq!(r["result"]["structuredContent"], json!({"text": "héllo"}));
    assert_eq!(r["result"]["isError"], false);

    let r = h.request(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                             "params": {"name": "fail", "arguments": {}}}));
    assert_eq!(r["result"]["isError"], true);
    assert_eq!(r["result"]["content"][0]["text"], "disk on fire");

    // 2025-11-25: argument validation failures are tool execution errors.
    let r = h.request(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                             "params": {"name": "echo", "arguments": {"text": "a", "x": 1}}}));
    assert_eq!(r["result"]["isError"], true);
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("unknown field `x`"), "{text}");

    // Older versions: -32602 with the path in `data`.
    let mut old = Harness::standard();
    old.initialize("2024-11-05");
    let r = old.request(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                               "params": {"name": "echo", "arguments": {}}}));
    assert_eq!(error_code(&r), -32602);
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("missing the required field `text`"));
    assert_eq!(r["error"]["data"]["path"], "arguments");
    // ...and no structuredContent before 2025-06-18.
    let r = old.request(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                               "params": {"name": "echo", "arguments": {"text": "a"}}}));
    assert!(r["result"].get("structuredContent").is_none());

    let stats = h.lp.server().stats().clone();
    assert_eq!(stats.tool_calls, 2); // the invalid call never reached the tool
    assert!(stats.errors >= 2);
}

// ---------------------------------------------------------------- batches

#[test]
fn batches_only_in_2025_03_26() {
    let mut h = Harness::standard();
    h.initialize("2025-03-26");
    let r = h.request(json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/x"},
        {"jsonrpc": "2.0", "id": "b", "method": "nope"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "echo", "arguments": {"text": "z"}}}
    ]));
    let replies = r.as_array().expect("batch reply is an array");
    assert_eq!(replies.len(), 3);
    assert_eq!(replies[0]["id"], 1);
    assert_eq!(error_code(&replies[1]), -32601);
    assert_eq!(replies[2]["result"]["content"][0]["text"], "z");
    // Only notifications: no reply at all.
    h.push(&json!([{"jsonrpc": "2.0", "method": "notifications/x"}]));
    assert!(h.run().is_empty());
    let r = h.request(json!([]));
    assert_eq!(error_code(&r), -32600);

    for v in ["2024-11-05", "2025-06-18", "2025-11-25"] {
        let mut h = Harness::standard();
        h.initialize(v);
        let r = h.request(json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]));
        assert_eq!(error_code(&r), -32600, "{v}");
        assert_eq!(r["id"], Value::Null);
    }
    let mut fresh = Harness::standard();
    let r = fresh.request(json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]));
    assert_eq!(error_code(&r), -32600);
}

// ---------------------------------------------------------------- stateless 2026-07-28

#[test]
fn modern_discover_and_list() {
    let mut h = Harness::standard();
    let r = h.request(
        json!({"jsonrpc": "2.0", "id": "d", "method": "server/discover",
                             "params": {"_meta": modern_meta()}}),
    );
    let res = &r["result"];
    assert_eq!(res["resultType"], "complete");
    assert_eq!(res["supportedVersions"], json!(["2026-07-28"]));
    assert!(res["capabilities"]["tools"].is_object());
    assert_eq!(res["serverInfo"]["name"], "microkernelia");
    assert_eq!(res["cacheScope"], "public");
    assert!(res["ttlMs"].as_u64().unwrap() > 0);

    let r = h.request(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list",
                             "params": {"_meta": modern_meta()}}));
    assert_eq!(r["result"]["resultType"], "complete");
    assert!(r["result"]["ttlMs"].is_u64());
    assert_eq!(r["result"]["cacheScope"], "public");
    assert_eq!(r["result"]["tools"][0]["title"], "Echo");

    let r = h.request(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                             "params": {"_meta": modern_meta(), "name": "echo",
                                        "arguments": {"text": "m"}}}));
    assert_eq!(r["result"]["resultType"], "complete");
    assert_eq!(r["result"]["structuredContent"]["text"], "m");
    let r = h.request(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                             "params": {"_meta": modern_meta(), "name": "echo",
                                        "arguments": {}}}));
    assert_eq!(r["result"]["isError"], true);
    assert_eq!(r["result"]["resultType"], "complete");
}

#[test]
fn modern_errors() {
    let mut h = Harness::standard();
    let mut meta = modern_meta();
    meta["io.modelcontextprotocol/protocolVersion"] = json!("2027-01-01");
    let r = h.request(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                             "params": {"_meta": meta}}));
    assert_eq!(error_code(&r), -32022);
    assert_eq!(r["error"]["data"]["supported"], json!(["2026-07-28"]));
    assert_eq!(r["error"]["data"]["requested"], "2027-01-01");
    // A legacy revision in _meta is not the stateless style either.
    let mut meta = modern_meta();
    meta["io.modelcontextprotocol/protocolVersion"] = json!("2025-11-25");
    let r = h.request(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list",
                             "params": {"_meta": meta}}));
    assert_eq!(error_code(&r), -32022);

    let r = h.request(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params":
        {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}),
    );
    assert_eq!(error_code(&r), -32602);
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("clientCapabilities"));

    // ping and logging/setLevel do not exist in 2026-07-28.
    for m in ["ping", "logging/setLevel"] {
        let r = h.request(json!({"jsonrpc": "2.0", "id": 4, "method": m,
                                 "params": {"_meta": modern_meta(), "level": "info"}}));
        assert_eq!(error_code(&r), -32601, "{m}");
    }
}

// ---------------------------------------------------------------- progress and cancellation

fn stream_call(id: Value, n: u64, token: Option<Value>) -> Value {
    let mut params = json!({"name": "stream", "arguments": {"n": n}});
    if let Some(t) = token {
        params["_meta"] = json!({"progressToken": t});
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

#[test]
fn progress_notifications_carry_each_piece() {
    let mut h = Harness::standard();
    h.initialize("2025-11-25");
    h.push(&stream_call(json!(1), 4, Some(json!("tok"))));
    let out = h.run();
    assert_eq!(out.len(), 5);
    for (i, note) in out[..4].iter().enumerate() {
        assert_eq!(note["method"], "notifications/progress");
        assert!(note.get("id").is_none());
        assert_eq!(note["params"]["progressToken"], "tok");
        assert_eq!(note["params"]["progress"], i as u64 + 1);
        assert_eq!(note["params"]["total"], 4);
        assert_eq!(note["params"]["message"], format!("t{i} "));
    }
    assert_eq!(out[4]["id"], 1);
    assert_eq!(out[4]["result"]["content"][0]["text"], "t0 t1 t2 t3 ");

    // No token, no notifications.
    h.push(&stream_call(json!(2), 3, None));
    let out = h.run();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["id"], 2);
}

#[test]
fn cancellation_stops_generation_promptly_and_sends_no_reply() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut h = Harness::new(test_tools(log.clone()));
    h.initialize("2025-11-25");
    h.push(&stream_call(json!("gen"), 100_000, Some(json!(7))));
    h.push(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": "gen", "reason": "user abort"}}),
    );
    h.push(&json!({"jsonrpc": "2.0", "id": "after", "method": "ping"}));
    let out = h.run();
    // The cancel was read at the first check between tokens.
    assert_eq!(log.borrow().len(), 1, "tokens generated after cancel");
    assert!(
        out.iter().all(|m| m["id"] != "gen"),
        "a cancelled request got a reply"
    );
    assert_eq!(out.last().unwrap()["id"], "after");
    assert_eq!(h.lp.server().stats().cancelled, 1);
}

#[test]
fn cancellation_of_another_request_is_ignored_and_queued_frames_wait() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut h = Harness::new(test_tools(log.clone()));
    h.initialize("2025-11-25");
    h.push(&stream_call(json!(1), 50, Some(json!("p"))));
    h.push(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": 2}}),
    );
    h.push(&json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}));
    let out = h.run();
    assert_eq!(log.borrow().len(), 50);
    let ids: Vec<Value> = out.iter().filter_map(|m| m.get("id").cloned()).collect();
    // The ping read during the call is answered after the call, in order.
    assert_eq!(ids, [json!(1), json!(3)]);
}

#[test]
fn cancelling_a_queued_request_skips_it() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut h = Harness::new(test_tools(log.clone()));
    h.initialize("2025-11-25");
    // Request 1 runs; request 2 waits behind it and is cancelled before it starts.
    h.push(&stream_call(json!(1), 5, None));
    h.push(&stream_call(json!(2), 1000, None));
    h.push(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": 2}}),
    );
    let out = h.run();
    let ids: Vec<Value> = out.iter().filter_map(|m| m.get("id").cloned()).collect();
    assert_eq!(ids, [json!(1)]);
    assert_eq!(log.borrow().len(), 5, "request 2 must not run");
}

#[test]
fn dead_client_stops_the_tool() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut h = Harness::new(test_tools(log.clone()));
    h.initialize("2025-11-25");
    h.push(&stream_call(json!(1), 100_000, Some(json!("p"))));
    h.conns[0].1 .0.borrow_mut().write_closed = true;
    while h.lp.poll() {}
    assert_eq!(log.borrow().len(), 1);
    assert_eq!(h.lp.connection_count(), 0);
}

// ---------------------------------------------------------------- logging

#[test]
fn set_level_enables_log_notifications() {
    let mut h = Harness::standard();
    h.initialize("2025-06-18");
    h.push(&stream_call(json!(1), 2, None));
    assert_eq!(h.run().len(), 1, "no log notifications before setLevel");
    let r = h.request(
        json!({"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel",
                             "params": {"level": "debug"}}),
    );
    assert_eq!(r["result"], json!({}));
    h.push(&stream_call(json!(3), 2, None));
    let out = h.run();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["method"], "notifications/message");
    assert_eq!(out[0]["params"]["level"], "debug");
    assert_eq!(out[0]["params"]["data"], "t0 ");
    h.request(
        json!({"jsonrpc": "2.0", "id": 4, "method": "logging/setLevel",
                     "params": {"level": "error"}}),
    );
    h.push(&stream_call(json!(5), 2, None));
    assert_eq!(h.run().len(), 1);
    h.lp.notify_log(mcp::LogLevel::Critical, "kernel", "oom");
    let out = h.run();
    assert_eq!(out[0]["params"]["data"], "oom");
}

// ---------------------------------------------------------------- framing

#[test]
fn oversized_frame_is_refused_and_connection_survives() {
    let mut h = Harness::with_config(
        ServerConfig {
            max_frame: 64,
            ..ServerConfig::default()
        },
        test_tools(Rc::new(RefCell::new(Vec::new()))),
    );
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"{}\"}}",
        "x".repeat(100)
    );
    h.push_raw(&encode_frame(big.as_bytes()));
    h.push(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
    let out = h.run();
    assert_eq!(out.len(), 2);
    assert_eq!(error_code(&out[0]), -32600);
    assert_eq!(out[0]["error"]["data"]["limit"], 64);
    assert_eq!(out[1]["id"], 2);
}

#[test]
fn default_limit_is_one_mebibyte() {
    let mut h = Harness::standard();
    h.push_raw(&((1u32 << 20) + 1).to_be_bytes());
    let out = h.run();
    assert_eq!(error_code(&out[0]), -32600);
    assert_eq!(out[0]["error"]["data"]["limit"], 1 << 20);
}

#[test]
fn zero_frame_and_truncated_frame_are_errors() {
    let mut h = Harness::standard();
    h.push_raw(&[0, 0, 0, 0]);
    h.push(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    let out = h.run();
    assert_eq!(error_code(&out[0]), -32700);
    assert_eq!(out[1]["id"], 1);

    h.push_raw(&[0, 0, 0, 50, b'{']);
    assert!(h.run().is_empty(), "a partial frame waits for more bytes");
    h.conns[0].1 .0.borrow_mut().peer_closed = true;
    let out = h.run();
    assert_eq!(error_code(&out[0]), -32700);
    let msg = out[0]["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("truncated frame") && msg.contains("1 of 50"),
        "{msg}"
    );
    assert_eq!(h.lp.connection_count(), 0);
}

#[test]
fn byte_at_a_time_delivery() {
    let mut h = Harness::standard();
    let msg = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params":
        {"protocolVersion": "2025-11-25", "capabilities": {}}});
    let frame = encode_frame(&mcp::serde_json::to_vec(&msg).unwrap());
    for b in &frame {
        h.push_raw(std::slice::from_ref(b));
    }
    let out = h.run();
    assert_eq!(out[0]["result"]["protocolVersion"], "2025-11-25");
}

// ---------------------------------------------------------------- several connections

#[test]
fn connections_have_separate_sessions() {
    let mut h = Harness::standard();
    let second = h.connect();
    h.initialize("2025-03-26");
    h.push_on(
        second,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    );
    let out = h.run_on(second);
    assert_eq!(
        error_code(&out[0]),
        -32600,
        "second connection is not initialized"
    );
    // Interleaved requests from both are each answered on their own connection.
    h.push(&stream_call(json!("a"), 3, None));
    h.push_on(
        second,
        &json!({"jsonrpc": "2.0", "id": "b", "method": "ping"}),
    );
    let first_out = h.run_on(0);
    let second_out = h.run_on(second);
    assert_eq!(first_out.len(), 1);
    assert_eq!(first_out[0]["id"], "a");
    assert_eq!(second_out.len(), 1);
    assert_eq!(second_out[0]["id"], "b");
    assert_eq!(h.lp.connection_count(), 2);
}

#[test]
fn truncation_seen_during_a_tool_call_is_still_reported() {
    let mut h = Harness::standard();
    h.initialize("2025-11-25");
    h.push(&stream_call(json!(1), 3, None));
    h.push_raw(&[0, 0, 0, 9, b'{']); // a frame cut short…
    h.conns[0].1 .0.borrow_mut().peer_closed = true; // …by the end of the stream
    let out = h.run();
    assert_eq!(out[0]["id"], 1, "the call still completes: {out:?}");
    assert_eq!(error_code(&out[1]), -32700);
    assert!(out[1]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("1 of 9"));
    assert_eq!(h.lp.connection_count(), 0);
}

/// Records its name in a shared log when called.
struct Marker {
    name: &'static str,
    exclusive: bool,
    log: Rc<RefCell<Vec<String>>>,
}

impl mcp::Tool for Marker {
    fn def(&self) -> mcp::ToolDef {
        mcp::ToolDef::new(self.name, "Marks the log.", json!({"type": "object"}))
    }
    fn exclusive(&self) -> bool {
        self.exclusive
    }
    fn call(
        &mut self,
        _: &mcp::serde_json::Map<String, Value>,
        _: &mut mcp::CallContext<'_>,
    ) -> Result<mcp::ToolOutput, mcp::ToolError> {
        self.log.borrow_mut().push(self.name.into());
        Ok(mcp::ToolOutput::text(self.name))
    }
}

#[test]
fn light_requests_of_other_connections_are_served_during_an_exclusive_call() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut tools = test_tools(log.clone());
    for (name, exclusive) in [("peek", false), ("heavy", true)] {
        let log = log.clone();
        tools
            .register(Box::new(Marker {
                name,
                exclusive,
                log,
            }))
            .unwrap();
    }
    let mut h = Harness::new(tools);
    let b = h.connect();
    h.initialize("2025-11-25");
    h.push_on(
        b,
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params":
        {"protocolVersion": "2025-06-18", "capabilities": {}}}),
    );
    assert_eq!(h.run_on(b).len(), 1);

    let call = |id: u64, name: &str| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name}});
    h.push(&stream_call(json!(1), 5, None));
    h.push_on(b, &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    h.push_on(
        b,
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                         "params": {"requestId": 1}}),
    ); // B's id 1, not A's request
    h.push_on(b, &call(2, "peek"));
    h.push_on(b, &call(3, "heavy"));
    h.push_on(b, &call(4, "peek")); // behind `heavy`: keeps B's order
    let a_out = h.run_on(0);
    let b_out = h.run_on(b);
    assert_eq!(
        *log.borrow(),
        ["t0 ", "peek", "t1 ", "t2 ", "t3 ", "t4 ", "heavy", "peek"],
        "peek ran during A's exclusive call; heavy waited for it"
    );
    assert_eq!(
        a_out.last().unwrap()["result"]["content"][0]["text"],
        "t0 t1 t2 t3 t4 "
    );
    let b_ids: Vec<Value> = b_out.iter().map(|m| m["id"].clone()).collect();
    assert_eq!(b_ids, [json!(1), json!(2), json!(3), json!(4)]);
}

/// Hands out one connection, but only from its `delay`-th accept() call on.
struct LateAcceptor {
    conn: Option<SharedConn>,
    calls: u32,
    delay: u32,
}

impl mcp::Acceptor<SharedConn> for LateAcceptor {
    fn accept(&mut self) -> Option<SharedConn> {
        self.calls += 1;
        if self.calls >= self.delay {
            self.conn.take()
        } else {
            None
        }
    }
}

#[test]
fn connections_accepted_during_an_exclusive_call_are_served_meanwhile() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut tools = test_tools(log.clone());
    let marker = Marker {
        name: "peek",
        exclusive: false,
        log: log.clone(),
    };
    tools.register(Box::new(marker)).unwrap();
    let mut h = Harness::new(tools);
    h.initialize("2025-11-25");
    let late = SharedConn::default();
    for msg in [
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params":
            {"protocolVersion": "2025-11-25", "capabilities": {}}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "peek"}}),
    ] {
        let bytes = mcp::serde_json::to_vec(&msg).unwrap();
        late.0.borrow_mut().push(&encode_frame(&bytes));
    }
    // accept() #1 is before the call starts; #2 happens at the first token.
    let mut acceptor = LateAcceptor {
        conn: Some(late.clone()),
        calls: 0,
        delay: 2,
    };
    h.push(&stream_call(json!(9), 3, None));
    while h.lp.poll_accepting(&mut acceptor) {}
    assert_eq!(*log.borrow(), ["t0 ", "peek", "t1 ", "t2 "]);
    assert_eq!(h.lp.connection_count(), 2);
    let answered = late.0.borrow().outgoing.len();
    assert!(answered > 0, "the late connection got its replies");
}
