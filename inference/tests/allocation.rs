//! What loading allocates, counted: the safetensors header reader against the reference
//! implementation (the `safetensors` crate) on real and damaged headers and what it
//! allocates for a huge one; a `State` allocates exactly what its `StateLayout` says, and
//! one too large for memory is an error.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use inference::header::{self, Header};
use inference::{Config, State, StateLayout};

/// Counts this thread's live heap bytes and their peak (tests run on several threads).
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|c| {
            c.set(c.get() + l.size());
            let _ = PEAK.try_with(|p| p.set(p.get().max(c.get())));
        });
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let _ = LIVE.try_with(|c| c.set(c.get().saturating_sub(l.size())));
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Peak bytes `f` allocates on this thread beyond what was live when it started.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, PEAK.with(Cell::get) - base)
}

/// A safetensors file: `meta` as `__metadata__`, tensors `(name, dtype, shape, bytes)`.
fn file(meta: &[(&str, &str)], tensors: &[(&str, &str, &[usize], usize)]) -> Vec<u8> {
    let q = |s: &str| json_string(s);
    let mut h = String::from("{");
    if !meta.is_empty() {
        let m: Vec<String> = meta
            .iter()
            .map(|(k, v)| format!("{}:{}", q(k), q(v)))
            .collect();
        h.push_str(&format!("\"__metadata__\":{{{}}}", m.join(",")));
    }
    let mut off = 0;
    for (name, dtype, shape, bytes) in tensors {
        if h.len() > 1 {
            h.push(',');
        }
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        h.push_str(&format!(
            "{}:{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{off},{}]}}",
            q(name),
            dims.join(","),
            off + bytes
        ));
        off += bytes;
    }
    h.push('}');
    with_json(&h, off)
}

fn with_json(h: &str, data: usize) -> Vec<u8> {
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.resize(out.len() + data, 7);
    out
}

/// JSON string literal with every escape form the grammar has.
fn json_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '/' => o.push_str("\\/"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) > 0xffff => {
                let v = c as u32 - 0x10000;
                o.push_str(&format!(
                    "\\u{:04x}\\u{:04X}",
                    0xd800 + (v >> 10),
                    0xdc00 + (v & 0x3ff)
                ));
            }
            'é' => o.push_str("\\u00e9"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Both readers agree on `bytes`: same metadata, same tensors; or both refuse it.
fn same_as_reference(bytes: &[u8]) -> bool {
    let ours = header::read(bytes);
    let theirs = safetensors::SafeTensors::read_metadata(bytes);
    match (&ours, &theirs) {
        (Ok((h, data)), Ok((n, st))) => {
            assert_eq!(data.len(), bytes.len() - 8 - n);
            let meta = st.metadata().clone().unwrap_or_default();
            for (k, v) in &meta {
                assert_eq!(h.meta(k), Some(v.as_str()), "{k}");
            }
            let infos = st.tensors();
            assert_eq!(h.tensor_count(), infos.len());
            for (name, info) in infos {
                let (_, t) = h.tensor(&name).unwrap_or_else(|| panic!("{name}"));
                assert_eq!(
                    t.dtype.name(),
                    format!("{:?}", info.dtype)
                        .replace("E5M2", "_E5M2")
                        .replace("E4M3", "_E4M3")
                );
                assert_eq!(t.shape(), info.shape.as_slice());
                assert_eq!(t.data_offsets, info.data_offsets);
            }
            true
        }
        (Err(_), Err(_)) => false,
        _ => panic!(
            "ours {:?} vs reference {:?}",
            ours.map(|_| ()),
            theirs.map(|_| ())
        ),
    }
}

#[test]
fn reads_what_the_reference_reads() {
    let bytes = file(
        &[
            ("format", "microkernelia-llm"),
            ("dim", "64"),
            ("esc\"aped\\key", "tab\there\nnewline é 😀 /slash"),
            ("\u{1}ctl", ""),
        ],
        &[
            ("b.weight", "F32", &[2, 3], 24),
            ("a", "U8", &[5], 5),
            ("scalar", "U32", &[], 4),
            ("empty", "F16", &[0, 7], 0),
            ("half", "BF16", &[1, 1, 2, 2], 8),
        ],
    );
    assert!(same_as_reference(&bytes));
    let (h, _) = header::read(&bytes).unwrap();
    assert_eq!(
        h.meta("esc\"aped\\key"),
        Some("tab\there\nnewline é 😀 /slash")
    );
    assert_eq!(h.meta("\u{1}ctl"), Some(""));
    assert_eq!(h.meta("missing"), None);
    let names: Vec<&str> = (0..h.tensor_count())
        .map(|i| h.tensor_at(i).unwrap().0)
        .collect();
    assert_eq!(names, ["a", "b.weight", "empty", "half", "scalar"]);
    // Only metadata, only tensors, nothing: all fine.
    assert!(same_as_reference(&file(&[("k", "v")], &[])));
    assert!(same_as_reference(&file(&[], &[("t", "I8", &[3], 3)])));
    assert!(same_as_reference(&with_json("{}  ", 0)));
    assert!(same_as_reference(&with_json(
        " \n{ \"t\" :\t{ \"shape\":[ 2 ] ,\"dtype\" : \"I16\", \"data_offsets\":[0,4]} }",
        4
    )));
}

#[test]
fn damaged_headers_are_refused() {
    let t = |h: &str, data: usize| with_json(h, data);
    let ok = r#"{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#;
    assert!(same_as_reference(&t(ok, 2)));
    let cases: Vec<Vec<u8>> = vec![
        t(ok, 3),                            // data longer than the tensors
        t(ok, 1),                            // shorter
        t(&ok.replace("[0,2]", "[1,3]"), 3), // gap at the start
        t(&ok.replace("[2]", "[3]"), 2),     // size does not match the shape
        t(&ok.replace("U8", "U7"), 2),       // unknown dtype
        t(&ok.replace("U8", "u8"), 2),
        t(&ok.replace("[0,2]", "[0,2,4]"), 2),
        t(&ok.replace("[0,2]", "[-0,2]"), 2),
        t(&ok.replace("[0,2]", "[0,2.0]"), 2),
        t(&ok.replace("[0,2]", "[0,02]"), 2),
        t(&ok.replace("[0,2]", "[0,99999999999999999999999]"), 2),
        t(&ok.replace("\"shape\"", "\"shape\":[2],\"shape\""), 2),
        t(&ok.replace("\"shape\"", "\"extra\":1,\"shape\""), 2),
        t(&ok.replace(",\"shape\":[2]", ""), 2),
        t(
            &ok.replace(
                '}',
                "},\"t\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]}}",
            )
            .replacen("}}},", "}},", 1),
            2,
        ),
        t(&ok[..ok.len() - 1], 2), // unterminated
        t(&format!("{ok}x"), 2),   // trailing text
        t(&ok.replacen('{', "[", 1), 2),
        t("", 0),
        t(r#"{"__metadata__":{"k":1}}"#, 0), // metadata values are strings
        t(r#"{"__metadata__":{"k":"v","k":"w"}}"#, 0),
        t(r#"{"__metadata__":{"k":"\x"}}"#, 0),
        t(r#"{"__metadata__":{"k":"\ud800"}}"#, 0), // lone surrogate
        t(r#"{"__metadata__":{"k":"\u12"}}"#, 0),
        t("{\"__metadata__\":{\"k\":\"a\nb\"}}", 0), // raw control character
        t(r#"{"__metadata__":{},"__metadata__":{}}"#, 0),
        t(
            r#"{"t":{"dtype":"U8","shape":[1,1,1,1,1],"data_offsets":[0,1]}}"#,
            1,
        ),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        assert!(
            header::read(bytes).is_err(),
            "case {i}: {:?}",
            String::from_utf8_lossy(&bytes[8..])
        );
    }
    // Not UTF-8, a length beyond the file or the limit.
    let mut b = t(r#"{"__metadata__":{"k":"vv"}}"#, 0);
    let at = b.len() - 4;
    b[at] = 0xff;
    assert!(header::read(&b).is_err());
    let mut b = t(ok, 2);
    b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(header::read(&b).is_err());
    assert!(header::read(&b[..5]).is_err());
}

#[test]
fn a_huge_header_allocates_what_parse_bytes_says() {
    // 32 MiB of small metadata entries: the worst shape for a JSON tree (544 MiB as a
    // serde_json::Value in the issue).
    let mut h = String::from("{\"__metadata__\":{");
    let mut i = 0u32;
    while h.len() < 32 << 20 {
        if i > 0 {
            h.push(',');
        }
        h.push_str(&format!("\"k{i:x}\":\"v\""));
        i += 1;
    }
    h.push_str("}}");
    let bytes = with_json(&h, 0);
    let json = header::header_json(&bytes).unwrap();
    let (need, counted) = peak_of(|| header::parse_bytes(json).unwrap());
    assert_eq!(counted, 0, "the counting pass allocates nothing");
    let (parsed, peak) = peak_of(|| Header::parse(json).map(|h| h.meta("k0").map(str::len)));
    assert_eq!(parsed, Ok(Some(1)));
    assert!(
        peak <= need,
        "parse allocated {peak}, parse_bytes said {need}"
    );
    // 16 bytes per entry of at least 8 header bytes: at most twice the header.
    assert!(need <= 2 * json.len(), "{need} for {}", json.len());
    let (_, reference) = peak_of(|| safetensors::SafeTensors::read_metadata(&bytes).map(|_| ()));
    println!(
        "header {} MiB: parse allocates {} MiB; the safetensors crate {} MiB",
        json.len() >> 20,
        peak >> 20,
        reference >> 20
    );
}

fn config(n_layers: usize, dim: usize, seq_len: usize) -> Config {
    Config {
        dim,
        hidden_dim: dim * 8 / 3,
        n_layers,
        n_heads: dim / 64,
        n_kv_heads: dim / 192,
        vocab_size: 49152,
        seq_len,
        rope_theta: 100000.0,
        norm_eps: 1e-5,
        tied_classifier: true,
    }
}

#[test]
fn a_state_allocates_what_its_layout_says() {
    // SmolLM2-135M's shape, and a small odd one.
    let mut small = config(2, 192, 100);
    small.n_heads = 4;
    small.n_kv_heads = 2;
    for (c, context, batch) in [
        (config(30, 576, 8192), 1024, 64),
        (config(30, 576, 8192), 1, 1),
        (small, 1000, 7),
    ] {
        let layout = StateLayout::new(&c, context, batch);
        let (state, peak) = peak_of(|| State::try_new(&c, context, batch));
        let state = state.unwrap();
        assert_eq!(peak as u64, layout.bytes(), "{c:?} {context} {batch}");
        assert_eq!(state.max_seq(), context.min(c.seq_len));
        assert_eq!(state.batch(), batch);
    }
    // SmolLM2 at the service's defaults: 2 x 30 x 1024 x 192 x 4 bytes of KV cache.
    let b = StateLayout::new(&config(30, 576, 8192), 1024, 64).bytes();
    assert!(
        b > 2 * 30 * 1024 * 192 * 4 && b < 2 * 30 * 1024 * 192 * 4 + (2 << 20),
        "{b}"
    );
}

#[test]
fn a_state_too_large_for_memory_is_an_error() {
    // 2^30 layers x 2^20 positions x 2^16 KV values: more than the address space, refused
    // before any memory is touched (whatever the host's overcommit policy).
    let mut c = config(1 << 30, 1 << 16, 1 << 20);
    c.n_kv_heads = c.n_heads;
    let e = State::try_new(&c, 1 << 20, 1)
        .err()
        .expect("a KV cache beyond the address space");
    assert_eq!(e.bytes, StateLayout::new(&c, 1 << 20, 1).bytes());
    assert_eq!(e.bytes, u64::MAX);
    assert!(e.to_string().contains("cannot allocate"), "{e}");
}
