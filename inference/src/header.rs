//! The safetensors header (u64 little-endian length, then a JSON object of tensor entries
//! and an optional `__metadata__` object of strings), read without building a JSON tree.
//!
//! A client names the file `load_model` reads, so the header is untrusted and may be large.
//! A generic JSON tree costs ~17 bytes per header byte (a 32 MiB header took 544 MiB); here
//! strings stay in the header's bytes (escaped ones are decoded once into one buffer), the
//! entry tables are allocated once at their exact size after a first pass that only counts,
//! and nothing recurses. `parse_bytes` is that first pass: what `parse` will allocate, known
//! before anything is, so the loader can check it against free memory.

use alloc::string::String;
use alloc::vec::Vec;

/// Largest header accepted (the reference implementation's limit).
pub const MAX_HEADER_BYTES: usize = 100_000_000;
/// Most dimensions of a tensor (model files use one or two).
pub const MAX_RANK: usize = 4;
const METADATA_KEY: &str = "__metadata__";

/// A tensor's element type (the safetensors names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

impl Dtype {
    const ALL: [(Dtype, &'static str, usize); 15] = [
        (Dtype::Bool, "BOOL", 8),
        (Dtype::U8, "U8", 8),
        (Dtype::I8, "I8", 8),
        (Dtype::F8E5M2, "F8_E5M2", 8),
        (Dtype::F8E4M3, "F8_E4M3", 8),
        (Dtype::I16, "I16", 16),
        (Dtype::U16, "U16", 16),
        (Dtype::F16, "F16", 16),
        (Dtype::BF16, "BF16", 16),
        (Dtype::I32, "I32", 32),
        (Dtype::U32, "U32", 32),
        (Dtype::F32, "F32", 32),
        (Dtype::F64, "F64", 64),
        (Dtype::I64, "I64", 64),
        (Dtype::U64, "U64", 64),
    ];

    pub fn from_name(name: &str) -> Option<Dtype> {
        Self::ALL.iter().find(|e| e.1 == name).map(|e| e.0)
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|e| e.0 == self).map_or("?", |e| e.1)
    }

    fn bits(self) -> usize {
        Self::ALL.iter().find(|e| e.0 == self).map_or(8, |e| e.2)
    }
}

/// What is wrong with a header, and at which byte of its JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderError {
    pub at: usize,
    pub what: &'static str,
}

impl core::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "header byte {}: {}", self.at, self.what)
    }
}

/// Where a string's text is: in the JSON (no escapes) or, with `len`'s top bit set, in the
/// decoded buffer. Eight bytes, so a metadata entry costs 16.
#[derive(Clone, Copy, Debug)]
struct Text {
    start: u32,
    len: u32,
}

const DECODED: u32 = 1 << 31;

impl Text {
    fn new(start: usize, len: usize, decoded: bool) -> Option<Text> {
        let start = u32::try_from(start).ok()?;
        let len = u32::try_from(len).ok().filter(|&l| l < DECODED)?;
        Some(Text {
            start,
            len: if decoded { len | DECODED } else { len },
        })
    }

    fn decoded(self) -> bool {
        self.len & DECODED != 0
    }

    fn range(self) -> core::ops::Range<usize> {
        let s = self.start as usize;
        s..s + (self.len & !DECODED) as usize
    }
}

/// One tensor entry.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    name: Text,
    pub dtype: Dtype,
    rank: u8,
    dims: [usize; MAX_RANK],
    /// Byte range in the data section (after the header).
    pub data_offsets: (usize, usize),
}

impl TensorInfo {
    pub fn shape(&self) -> &[usize] {
        &self.dims[..self.rank as usize]
    }
}

/// A parsed header: metadata and tensor entries, each sorted by name for lookup. The tensor
/// entries are validated as the reference implementation does: known dtypes, sizes that
/// match the shapes, and offsets that tile the data section from 0 without gaps.
#[derive(Debug)]
pub struct Header<'a> {
    json: &'a str,
    decoded: String,
    meta: Vec<(Text, Text)>,
    tensors: Vec<TensorInfo>,
    data_len: usize,
}

/// Reads the header of a safetensors file held in memory: the header and the data section.
pub fn read(file: &[u8]) -> Result<(Header<'_>, &[u8]), HeaderError> {
    let json = header_json(file)?;
    let header = Header::parse(json)?;
    let data = &file[8 + json.len()..];
    if header.data_len != data.len() {
        return Err(HeaderError {
            at: json.len(),
            what: "the tensors do not cover the data section exactly",
        });
    }
    Ok((header, data))
}

/// The JSON bytes of a file's header, after checking its length prefix.
pub fn header_json(file: &[u8]) -> Result<&[u8], HeaderError> {
    let err = |what| HeaderError { at: 0, what };
    let len: [u8; 8] = file
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or(err("file shorter than the 8-byte header length"))?;
    let n = header_len(len)?;
    file.get(8..8 + n).ok_or(err("header longer than the file"))
}

/// The header length a file's first 8 bytes announce, if acceptable.
pub fn header_len(prefix: [u8; 8]) -> Result<usize, HeaderError> {
    let n = u64::from_le_bytes(prefix);
    if n > MAX_HEADER_BYTES as u64 {
        return Err(HeaderError {
            at: 0,
            what: "header longer than 100 MB",
        });
    }
    Ok(n as usize)
}

/// Bytes `Header::parse(json)` allocates, from a pass that allocates nothing (and checks
/// everything `parse` does but the tensor offsets).
pub fn parse_bytes(json: &[u8]) -> Result<usize, HeaderError> {
    let json = as_str(json)?;
    let mut count = Counts::default();
    Scanner::new(json).header(&mut count)?;
    Ok(count.bytes())
}

fn as_str(json: &[u8]) -> Result<&str, HeaderError> {
    core::str::from_utf8(json).map_err(|e| HeaderError {
        at: e.valid_up_to(),
        what: "header is not UTF-8",
    })
}

impl<'a> Header<'a> {
    /// Parses and validates the header's JSON (the bytes after the length prefix).
    pub fn parse(json: &'a [u8]) -> Result<Header<'a>, HeaderError> {
        let json = as_str(json)?;
        if json.len() > MAX_HEADER_BYTES {
            return Err(HeaderError {
                at: 0,
                what: "header longer than 100 MB",
            });
        }
        let mut count = Counts::default();
        Scanner::new(json).header(&mut count)?;
        let mut h = Header {
            json,
            decoded: String::with_capacity(count.decoded),
            meta: Vec::with_capacity(count.meta),
            tensors: Vec::with_capacity(count.tensors),
            data_len: 0,
        };
        let mut fill = Fill {
            decoded: &mut h.decoded,
            meta: &mut h.meta,
            tensors: &mut h.tensors,
        };
        Scanner::new(json).header(&mut fill)?;
        h.data_len = h.check_offsets()?;
        let (json, decoded) = (h.json, h.decoded.as_str());
        let text = |t: &Text| resolve(json, decoded, t);
        h.meta.sort_unstable_by(|a, b| text(&a.0).cmp(text(&b.0)));
        h.tensors
            .sort_unstable_by(|a, b| text(&a.name).cmp(text(&b.name)));
        let dup = |what| HeaderError { at: 0, what };
        if h.meta.windows(2).any(|w| text(&w[0].0) == text(&w[1].0)) {
            return Err(dup("a metadata key appears twice"));
        }
        if h.tensors
            .windows(2)
            .any(|w| text(&w[0].name) == text(&w[1].name))
        {
            return Err(dup("a tensor name appears twice"));
        }
        Ok(h)
    }

    /// Offsets in order from 0, without gaps or overlaps, each the size its shape and dtype
    /// give; returns where the last ends (the data section's length).
    fn check_offsets(&mut self) -> Result<usize, HeaderError> {
        let err = |what| HeaderError { at: 0, what };
        self.tensors.sort_unstable_by_key(|t| t.data_offsets);
        let mut end = 0usize;
        for t in &self.tensors {
            let (s, e) = t.data_offsets;
            if s != end || e < s {
                return Err(err("tensor offsets do not tile the data section"));
            }
            let bits = t
                .shape()
                .iter()
                .try_fold(t.dtype.bits(), |acc, &d| acc.checked_mul(d))
                .ok_or(err("tensor size overflows"))?;
            if bits % 8 != 0 || e - s != bits / 8 {
                return Err(err("tensor byte size does not match its shape and dtype"));
            }
            end = e;
        }
        Ok(end)
    }

    fn text(&self, t: &Text) -> &str {
        resolve(self.json, &self.decoded, t)
    }

    /// The metadata value of `key`.
    pub fn meta(&self, key: &str) -> Option<&str> {
        let i = self
            .meta
            .binary_search_by(|(k, _)| self.text(k).cmp(key))
            .ok()?;
        Some(self.text(&self.meta[i].1))
    }

    /// Number of tensor entries; `tensor_at(i)` for i below it.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// Index (for `tensor_at`) and entry of the tensor `name`.
    pub fn tensor(&self, name: &str) -> Option<(usize, &TensorInfo)> {
        let i = self
            .tensors
            .binary_search_by(|t| self.text(&t.name).cmp(name))
            .ok()?;
        Some((i, &self.tensors[i]))
    }

    /// Name and entry of the i-th tensor (in name order).
    pub fn tensor_at(&self, i: usize) -> Option<(&str, &TensorInfo)> {
        let t = self.tensors.get(i)?;
        Some((self.text(&t.name), t))
    }
}

fn resolve<'s>(json: &'s str, decoded: &'s str, t: &Text) -> &'s str {
    let src = if t.decoded() { decoded } else { json };
    src.get(t.range()).unwrap_or("")
}

/// Where the scanner's findings go: counted (first pass) or stored (second pass).
trait Sink {
    /// Room for a string of `len` decoded bytes; `Some(buffer)` to decode it into.
    fn decoded_string(&mut self, len: usize) -> Option<&mut String>;
    fn meta(&mut self, key: Text, value: Text);
    fn tensor(&mut self, t: TensorInfo);
}

#[derive(Default)]
struct Counts {
    decoded: usize,
    meta: usize,
    tensors: usize,
}

impl Counts {
    fn bytes(&self) -> usize {
        self.decoded
            + self.meta * core::mem::size_of::<(Text, Text)>()
            + self.tensors * core::mem::size_of::<TensorInfo>()
    }
}

impl Sink for Counts {
    fn decoded_string(&mut self, len: usize) -> Option<&mut String> {
        self.decoded += len;
        None
    }
    fn meta(&mut self, _: Text, _: Text) {
        self.meta += 1;
    }
    fn tensor(&mut self, _: TensorInfo) {
        self.tensors += 1;
    }
}

struct Fill<'h> {
    decoded: &'h mut String,
    meta: &'h mut Vec<(Text, Text)>,
    tensors: &'h mut Vec<TensorInfo>,
}

impl Sink for Fill<'_> {
    fn decoded_string(&mut self, _: usize) -> Option<&mut String> {
        Some(self.decoded)
    }
    fn meta(&mut self, key: Text, value: Text) {
        self.meta.push((key, value));
    }
    fn tensor(&mut self, t: TensorInfo) {
        self.tensors.push(t);
    }
}

/// A strict JSON reader for exactly the header's shape.
struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(json: &'a str) -> Self {
        Scanner {
            s: json.as_bytes(),
            pos: 0,
        }
    }

    fn err<T>(&self, what: &'static str) -> Result<T, HeaderError> {
        Err(HeaderError { at: self.pos, what })
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), HeaderError> {
        if self.peek() != Some(c) {
            return self.err(what);
        }
        self.pos += 1;
        Ok(())
    }

    /// `{ (item (, item)*)? }`, calling `item` for each member after its key.
    fn object(
        &mut self,
        sink: &mut dyn Sink,
        mut item: impl FnMut(&mut Self, &mut dyn Sink, Text) -> Result<(), HeaderError>,
    ) -> Result<(), HeaderError> {
        self.expect(b'{', "expected an object")?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key = self.string(sink)?;
            self.expect(b':', "expected ':'")?;
            item(self, sink, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.err("expected ',' or '}'"),
            }
        }
    }

    fn header(&mut self, sink: &mut dyn Sink) -> Result<(), HeaderError> {
        let mut seen_meta = false;
        self.object(sink, |sc, sink, key| {
            if sc.is(key, METADATA_KEY) {
                if seen_meta {
                    return sc.err("__metadata__ appears twice");
                }
                seen_meta = true;
                sc.object(sink, |sc, sink, k| {
                    let v = sc.string(sink)?;
                    sink.meta(k, v);
                    Ok(())
                })
            } else {
                let t = sc.tensor(sink, key)?;
                sink.tensor(t);
                Ok(())
            }
        })?;
        if self.peek().is_some() {
            return self.err("text after the header object");
        }
        Ok(())
    }

    /// Whether the string at `t` (undecoded: keys we look for have no escapes) is `s`.
    fn is(&self, t: Text, s: &str) -> bool {
        !t.decoded() && self.s.get(t.range()) == Some(s.as_bytes())
    }

    fn tensor(&mut self, sink: &mut dyn Sink, name: Text) -> Result<TensorInfo, HeaderError> {
        let mut dtype = None;
        let mut shape: Option<(u8, [usize; MAX_RANK])> = None;
        let mut offsets = None;
        self.object(sink, |sc, sink, key| {
            let at = sc.pos;
            let dup = |sc: &Self| sc.err("a tensor field appears twice");
            if sc.is(key, "dtype") {
                if dtype.is_some() {
                    return dup(sc);
                }
                let d = sc.string(sink)?;
                let name = if d.decoded() {
                    None
                } else {
                    core::str::from_utf8(&sc.s[d.range()]).ok()
                };
                dtype = Some(name.and_then(Dtype::from_name).ok_or(HeaderError {
                    at,
                    what: "unknown dtype",
                })?);
            } else if sc.is(key, "shape") {
                if shape.is_some() {
                    return dup(sc);
                }
                let mut dims = [0usize; MAX_RANK];
                let rank = sc.integers(&mut dims, "tensors have at most 4 dimensions")?;
                shape = Some((rank as u8, dims));
            } else if sc.is(key, "data_offsets") {
                if offsets.is_some() {
                    return dup(sc);
                }
                let mut o = [0usize; 2];
                if sc.integers(&mut o, "data_offsets has two entries")? != 2 {
                    return sc.err("data_offsets has two entries");
                }
                offsets = Some((o[0], o[1]));
            } else {
                return sc.err("unknown tensor field");
            }
            Ok(())
        })?;
        match (dtype, shape, offsets) {
            (Some(dtype), Some((rank, dims)), Some(data_offsets)) => Ok(TensorInfo {
                name,
                dtype,
                rank,
                dims,
                data_offsets,
            }),
            _ => self.err("a tensor needs dtype, shape and data_offsets"),
        }
    }

    /// `[n, ...]` of non-negative integers into `out`; returns how many.
    fn integers(
        &mut self,
        out: &mut [usize],
        too_many: &'static str,
    ) -> Result<usize, HeaderError> {
        self.expect(b'[', "expected an array")?;
        let mut n = 0;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(0);
        }
        loop {
            if n == out.len() {
                return self.err(too_many);
            }
            out[n] = self.integer()?;
            n += 1;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(n);
                }
                _ => return self.err("expected ',' or ']'"),
            }
        }
    }

    fn integer(&mut self) -> Result<usize, HeaderError> {
        self.ws();
        let start = self.pos;
        let mut v: usize = 0;
        while let Some(&c @ b'0'..=b'9') = self.s.get(self.pos) {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add((c - b'0') as usize))
                .ok_or(HeaderError {
                    at: start,
                    what: "integer too large",
                })?;
            self.pos += 1;
        }
        let digits = self.pos - start;
        if digits == 0 || (digits > 1 && self.s[start] == b'0') {
            return self.err("expected a non-negative integer");
        }
        if let Some(b'.' | b'e' | b'E') = self.s.get(self.pos) {
            return self.err("expected an integer");
        }
        Ok(v)
    }

    /// A string; escaped ones are decoded into the sink's buffer (or just measured).
    fn string(&mut self, sink: &mut dyn Sink) -> Result<Text, HeaderError> {
        self.expect(b'"', "expected a string")?;
        let start = self.pos;
        let mut decoded_len = 0usize;
        let mut escaped = false;
        loop {
            match self.s.get(self.pos) {
                None => return self.err("unterminated string"),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    let (c, used) = self.escape_at(self.pos)?;
                    self.pos += used;
                    decoded_len += c.len_utf8();
                }
                Some(&c) if c < 0x20 => return self.err("control character in a string"),
                Some(_) => {
                    self.pos += 1;
                    decoded_len += 1;
                }
            }
        }
        let end = self.pos;
        self.pos += 1;
        let too_long = HeaderError {
            at: start,
            what: "string too long",
        };
        if !escaped {
            return Text::new(start, end - start, false).ok_or(too_long);
        }
        let Some(buf) = sink.decoded_string(decoded_len) else {
            // Counting pass: where the text goes does not matter.
            return Ok(Text {
                start: 0,
                len: DECODED,
            });
        };
        let at = buf.len();
        let mut p = start;
        while p < end {
            if self.s[p] == b'\\' {
                let (c, used) = self.escape_at(p)?;
                buf.push(c);
                p += used;
            } else {
                // Copy the run up to the next escape (valid UTF-8: the header was checked).
                let run = self.s[p..end]
                    .iter()
                    .position(|&b| b == b'\\')
                    .map_or(end, |i| p + i);
                buf.push_str(core::str::from_utf8(&self.s[p..run]).unwrap_or(""));
                p = run;
            }
        }
        Text::new(at, buf.len() - at, true).ok_or(too_long)
    }

    /// The escape starting at `p` (a backslash): its character and how many bytes it takes.
    fn escape_at(&self, p: usize) -> Result<(char, usize), HeaderError> {
        let err = |what| HeaderError { at: p, what };
        let c = match self.s.get(p + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let hi = self.hex4(p + 2)?;
                let (cp, used) = if (0xD800..0xDC00).contains(&hi) {
                    let lo = match self.s.get(p + 6..p + 8) {
                        Some(b"\\u") => self.hex4(p + 8)?,
                        _ => return Err(err("unpaired surrogate escape")),
                    };
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(err("unpaired surrogate escape"));
                    }
                    (0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00), 12)
                } else {
                    (hi, 6)
                };
                let c = char::from_u32(cp).ok_or(err("unpaired surrogate escape"))?;
                return Ok((c, used));
            }
            _ => return Err(err("bad escape")),
        };
        Ok((c, 2))
    }

    fn hex4(&self, at: usize) -> Result<u32, HeaderError> {
        let digits = self.s.get(at..at + 4).ok_or(HeaderError {
            at,
            what: "bad \\u escape",
        })?;
        digits.iter().try_fold(0u32, |acc, &d| {
            let v = (d as char).to_digit(16).ok_or(HeaderError {
                at,
                what: "bad \\u escape",
            })?;
            Ok(acc * 16 + v)
        })
    }
}
