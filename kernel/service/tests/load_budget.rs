//! `load_model` of a file whose safetensors header is huge: what the load allocates is
//! bounded by what the header's parse needs (checked against free memory first), not by a
//! JSON tree of it (+544 MiB for a 32 MiB header before).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use mk_service::host::DirFs;
use mk_service::{LoadedModel, MemoryStats, ModelLimits};

/// Counts this thread's live heap bytes and their peak.
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

fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, PEAK.with(Cell::get) - base)
}

struct Free(u64);

impl MemoryStats for Free {
    fn heap_used_bytes(&self) -> u64 {
        0
    }
    fn heap_free_bytes(&self) -> u64 {
        self.0
    }
}

const MIB: usize = 1 << 20;

#[test]
fn a_huge_header_is_bounded_by_free_memory() {
    let dir = std::env::temp_dir().join(format!("mk-load-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 32 MiB of tiny metadata entries and no tensors: a valid container, not a model.
    let mut h = String::from("{\"__metadata__\":{");
    let mut i = 0u32;
    while h.len() < 32 * MIB {
        if i > 0 {
            h.push(',');
        }
        h.push_str(&format!("\"k{i:x}\":\"v\""));
        i += 1;
    }
    h.push_str("}}");
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(h.as_bytes());
    std::fs::write(dir.join("huge-header.safetensors"), &file).unwrap();
    let parse = inference::header::parse_bytes(h.as_bytes()).unwrap();
    drop(h);
    let load = |free: usize| {
        let mut fs = DirFs::new(&dir);
        peak_of(|| {
            LoadedModel::load(
                &mut fs,
                &Free(free as u64),
                "huge-header.safetensors",
                ModelLimits::default(),
                || 0,
            )
            .map(|_| ())
        })
    };

    // 64 MiB free: the file fits, its header's tables do not. Refused after reading the
    // header, before parsing it.
    let (r, peak) = load(64 * MIB);
    let e = r.unwrap_err();
    assert!(e.contains("header needs") && e.contains("to parse"), "{e}");
    assert!(peak <= file.len() + MIB, "peak {} MiB", peak / MIB);

    // 1 GiB free: parsed (twice: to size the state, then by Model::load) and refused as
    // not a model. Never more than the file plus one parse at a time.
    let (r, peak) = load(1024 * MIB);
    let e = r.unwrap_err();
    assert!(e.contains("is not a usable model"), "{e}");
    assert!(
        peak <= file.len() + parse + MIB,
        "peak {} MiB, parse {} MiB",
        peak / MIB,
        parse / MIB
    );
    assert!(parse <= 2 * file.len());
    println!(
        "32 MiB header: parse needs {} MiB, load_model peaked at {} MiB",
        parse / MIB,
        peak / MIB
    );
    let _ = std::fs::remove_dir_all(&dir);
}
