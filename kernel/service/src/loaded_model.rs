//! A model read from the share into memory: the file bytes, the parsed [`Model`] that borrows
//! them, and the activation / KV-cache [`State`] sized for it. Loading checks that the file
//! and the state fit in free memory before allocating them, so a model too large for the
//! guest is an error, not an out-of-memory abort.

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use alloc::format;
use alloc::string::String;

use inference::quant::QuantType;
use inference::{Config, Model, State, StateLayout};

use crate::platform::{FileHandle, MemoryStats, ReadOnlyFs};

/// Alignment of the file buffer: matrices are read in place, so keep them cache-line aligned.
const FILE_ALIGN: usize = 64;
/// Bytes read per request (virtio-fs splits it into its own READ size).
const READ_CHUNK: usize = 4 << 20;
/// Heap kept free beyond the model's own needs (tool results, connections, tokenizer tables).
pub const HEAP_HEADROOM: u64 = 8 << 20;

/// Owned, aligned bytes. Not a `Vec` because [`LoadedModel`] hands out `'static` borrows of
/// them: a raw allocation is never moved or re-borrowed mutably while the model lives.
struct FileBytes {
    ptr: *mut u8,
    len: usize,
}

impl FileBytes {
    fn layout(len: usize) -> Option<Layout> {
        Layout::from_size_align(len.max(1), FILE_ALIGN).ok()
    }

    fn new_zeroed(len: usize) -> Option<FileBytes> {
        let layout = Self::layout(len)?;
        // SAFETY: the layout has non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        (!ptr.is_null()).then_some(FileBytes { ptr, len })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is a live allocation of len initialised (zeroed) bytes.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// SAFETY: the caller keeps `self` alive and unmodified while the slice is used.
    unsafe fn as_static(&self) -> &'static [u8] {
        core::slice::from_raw_parts(self.ptr, self.len)
    }
}

impl Drop for FileBytes {
    fn drop(&mut self) {
        if let Some(layout) = Self::layout(self.len) {
            // SAFETY: allocated in `new_zeroed` with this layout.
            unsafe { dealloc(self.ptr, layout) }
        }
    }
}

pub struct LoadedModel {
    /// Declared before `bytes`: fields drop in order, so the borrowing model goes first.
    model: Model<'static>,
    pub state: State,
    bytes: FileBytes,
    /// Path inside the share.
    pub path: String,
    pub load_ns: u64,
}

/// Limits the service applies to every model.
#[derive(Debug, Clone, Copy)]
pub struct ModelLimits {
    /// KV cache length in positions (capped at the model's own context length).
    pub max_context: usize,
    /// Most prompt tokens per batched prefill step.
    pub prefill_batch: usize,
}

impl Default for ModelLimits {
    fn default() -> Self {
        ModelLimits {
            max_context: 1024,
            prefill_batch: 64,
        }
    }
}

/// Bytes the state of a model takes at these limits (`State::try_new` allocates exactly
/// `StateLayout::bytes`).
fn state_bytes(c: &Config, limits: ModelLimits) -> u64 {
    StateLayout::new(c, limits.max_context, limits.prefill_batch).bytes()
}

fn mib(b: u64) -> u64 {
    b.div_ceil(1 << 20)
}

impl LoadedModel {
    /// Reads `path` from `fs`, validates it and allocates its state. Nothing of the current
    /// model is touched: the caller swaps on success.
    pub fn load(
        fs: &mut dyn ReadOnlyFs,
        memory: &dyn MemoryStats,
        path: &str,
        limits: ModelLimits,
        clock: fn() -> u64,
    ) -> Result<LoadedModel, String> {
        check_path(path)?;
        let t0 = clock();
        let file = fs
            .open(path)
            .map_err(|e| format!("cannot open {path}: {e}"))?;
        let result = read_file(fs, memory, path, file, limits);
        fs.close(file);
        let bytes = result?;
        // SAFETY: `bytes` moves into the LoadedModel next to `model`, which drops first.
        let model = Model::load(unsafe { bytes.as_static() })
            .map_err(|e| format!("{path} is not a usable model: {e}"))?;
        let need = state_bytes(&model.config, limits);
        let free = memory.heap_free_bytes();
        if need + HEAP_HEADROOM > free {
            return Err(format!(
                "model {path} needs {} MiB for its KV cache and activations \
                 (context {}), only {} MiB of heap are free; give the VM more memory",
                mib(need),
                limits.max_context.min(model.config.seq_len),
                mib(free.saturating_sub(HEAP_HEADROOM))
            ));
        }
        let state = State::try_new(&model.config, limits.max_context, limits.prefill_batch)
            .map_err(|e| format!("model {path}: {e} (context {})", limits.max_context))?;
        Ok(LoadedModel {
            model,
            state,
            bytes,
            path: path.into(),
            load_ns: clock().saturating_sub(t0),
        })
    }

    pub fn model(&self) -> &Model<'static> {
        &self.model
    }

    /// The model and its state, borrowed together for generation.
    pub fn parts(&mut self) -> (&Model<'static>, &mut State) {
        (&self.model, &mut self.state)
    }

    pub fn file_bytes(&self) -> u64 {
        self.bytes.len as u64
    }

    /// The display name: the converter's `name`, else the file name.
    pub fn name(&self) -> String {
        match &self.model.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => String::from(self.path.rsplit('/').next().unwrap_or(&self.path)),
        }
    }

    /// Quantisation of the layer matrices (e.g. `q8_0`), `mixed` if they differ.
    pub fn quant(&self) -> &'static str {
        let w = &self.model.weights;
        let mut q: Option<QuantType> = None;
        for l in &w.layers {
            for m in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3] {
                match q {
                    None => q = Some(m.qtype),
                    Some(prev) if prev != m.qtype => return "mixed",
                    _ => {}
                }
            }
        }
        q.map_or("none", QuantType::name)
    }

    /// Weights (matrix elements and norm vectors), for display.
    pub fn parameters(&self) -> u64 {
        let w = &self.model.weights;
        let mut n = (w.tok_embeddings.rows * w.tok_embeddings.cols + w.norm.len()) as u64;
        if let Some(o) = &w.output {
            n += (o.rows * o.cols) as u64;
        }
        for l in &w.layers {
            n += (l.attention_norm.len() + l.ffn_norm.len()) as u64;
            for m in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3] {
                n += (m.rows * m.cols) as u64;
            }
        }
        n
    }
}

/// Paths are relative to the share; no `..`, no empty components, no control characters.
pub fn check_path(path: &str) -> Result<(), String> {
    let trimmed = path.trim_start_matches('/');
    if trimmed.is_empty() {
        return Err(String::from("empty model path"));
    }
    if path.chars().any(char::is_control) {
        return Err(String::from("model path contains control characters"));
    }
    if trimmed
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "bad model path {path:?}: use a path inside the share, without `.`, `..` or `//`"
        ));
    }
    Ok(())
}

/// What the file's safetensors header says before the file is read: the hyper-parameters
/// (`None` when it lacks them; the full load then says what is wrong), and the bytes parsing
/// the header takes (`inference::header::parse_bytes`), which `Model::load` will spend again.
/// The header is read only once the whole file fits in free memory, and parsed only once
/// its tables fit too, so a huge header is refused before anything large is built.
fn peek_header(
    fs: &mut dyn ReadOnlyFs,
    file: FileHandle,
    size: u64,
    free: u64,
    path: &str,
) -> Result<(Option<Config>, u64), String> {
    use inference::format::*;
    use inference::header::{self, Header};
    let bad = |e: header::HeaderError| {
        format!("{path} is not a usable model: invalid safetensors container: {e}")
    };
    let mut len = [0u8; 8];
    if fs.read_at(file, 0, &mut len).ok() != Some(8) {
        return Ok((None, 0));
    }
    let n = header::header_len(len).map_err(bad)? as u64;
    if 8 + n > size {
        return Err(format!(
            "{path} is not a usable model: invalid safetensors container: header longer than \
             the file"
        ));
    }
    let mut json = alloc::vec![0u8; n as usize];
    let mut done = 0;
    while done < json.len() {
        match fs.read_at(file, 8 + done as u64, &mut json[done..]) {
            Ok(0) | Err(_) => return Ok((None, 0)),
            Ok(got) => done += got,
        }
    }
    let parse = header::parse_bytes(&json).map_err(bad)? as u64;
    if n + parse + HEAP_HEADROOM > free {
        return Err(format!(
            "model {path}: its {} MiB header needs {} MiB to parse, only {} MiB of heap are \
             free (the current model stays loaded)",
            mib(n),
            mib(parse),
            mib(free.saturating_sub(HEAP_HEADROOM + n))
        ));
    }
    let h = Header::parse(&json).map_err(bad)?;
    let num = |k: &str| h.meta(k)?.parse::<usize>().ok();
    let config = (|| {
        let config = Config {
            dim: num(KEY_DIM)?,
            hidden_dim: num(KEY_HIDDEN_DIM)?,
            n_layers: num(KEY_N_LAYERS)?,
            n_heads: num(KEY_N_HEADS)?,
            n_kv_heads: num(KEY_N_KV_HEADS)?,
            vocab_size: num(KEY_VOCAB_SIZE)?,
            seq_len: num(KEY_SEQ_LEN)?,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
            tied_classifier: false,
        };
        config.check().ok()?;
        Some(config)
    })();
    Ok((config, parse))
}

fn read_file(
    fs: &mut dyn ReadOnlyFs,
    memory: &dyn MemoryStats,
    path: &str,
    file: FileHandle,
    limits: ModelLimits,
) -> Result<FileBytes, String> {
    let size = fs.size(file).map_err(|e| format!("{path}: {e}"))?;
    let free = memory.heap_free_bytes();
    let too_big = |parse: u64, state: u64, context: usize| {
        format!(
            "model {path} needs {} MiB ({} MiB file + {} MiB KV cache and activations at \
             context {} + {} MiB to parse its header), only {} MiB of heap are free; give the \
             VM more memory (the current model stays loaded)",
            mib(size + state + parse),
            mib(size),
            mib(state),
            context,
            mib(parse),
            mib(free.saturating_sub(HEAP_HEADROOM))
        )
    };
    if size.saturating_add(HEAP_HEADROOM) > free {
        return Err(too_big(0, 0, limits.max_context));
    }
    let (config, parse) = peek_header(fs, file, size, free, path)?;
    let (state, context) = config.map_or((0, limits.max_context), |c| {
        (state_bytes(&c, limits), limits.max_context.min(c.seq_len))
    });
    if size
        .saturating_add(state)
        .saturating_add(parse)
        .saturating_add(HEAP_HEADROOM)
        > free
    {
        return Err(too_big(parse, state, context));
    }
    let len = usize::try_from(size).map_err(|_| format!("{path}: too large"))?;
    let mut bytes =
        FileBytes::new_zeroed(len).ok_or_else(|| format!("{path}: cannot allocate {len} bytes"))?;
    let buf = bytes.as_mut_slice();
    let mut done = 0;
    while done < len {
        let end = (done + READ_CHUNK).min(len);
        let n = fs
            .read_at(file, done as u64, &mut buf[done..end])
            .map_err(|e| format!("reading {path}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "reading {path}: file ended early ({done} of {len} bytes)"
            ));
        }
        done += n;
    }
    Ok(bytes)
}
