//! Flattened device tree (FDT / DTB) reader: portable, `no_std`, no allocation.
//!
//! Layout per the Devicetree Specification v0.4, chapter 5: a 40-byte
//! big-endian header, the memory reservation block, the structure block (a
//! token stream: BEGIN_NODE name, PROP len nameoff value, END_NODE, NOP, END)
//! and the strings block holding property names.
//!
//! [`Fdt::new`] validates the whole blob once (bounds, alignment, token
//! nesting, name and string offsets), so every walker afterwards is total:
//! a malformed blob gives an [`FdtError`] up front and never a panic later.
//!
//! Besides the generic walker ([`Fdt::nodes`], [`Node::properties`],
//! [`Node::reg`], [`Node::ranges`], [`Fdt::compatible_nodes`]) the boot code
//! uses three shortcuts: [`Fdt::memory_regions`], [`Fdt::bootargs`] and
//! [`Fdt::pl011_base`].

use core::fmt;

const FDT_MAGIC: u32 = 0xd00d_feed;
const HEADER_LEN: usize = 40;
/// Oldest layout we read (v16 is what every producer since 2008 emits; v17 adds
/// `size_dt_struct`, which QEMU and Linux write).
const LAST_COMP_VERSION_MAX: u32 = 17;
/// Deeper trees than this are refused; QEMU's virt tree is 4 levels deep.
pub const MAX_DEPTH: usize = 16;
/// Upper bound accepted for `totalsize` when reading a blob from a raw pointer.
pub const MAX_TOTAL_SIZE: usize = 2 << 20;

const TOKEN_BEGIN_NODE: u32 = 1;
const TOKEN_END_NODE: u32 = 2;
const TOKEN_PROP: u32 = 3;
const TOKEN_NOP: u32 = 4;
const TOKEN_END: u32 = 9;

/// Why a blob was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdtError {
    /// Shorter than the header, or than `totalsize`.
    Truncated,
    BadMagic(u32),
    /// `last_comp_version` is newer than this reader understands.
    UnsupportedVersion(u32),
    /// `totalsize` larger than [`MAX_TOTAL_SIZE`] (raw-pointer reads only).
    TooLarge(usize),
    /// A block lies outside `totalsize` or is misaligned.
    BadLayout(&'static str),
    /// Unknown token or broken token structure at this structure-block offset.
    BadStructure {
        offset: usize,
        what: &'static str,
    },
    /// Node nesting deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdtError::Truncated => write!(f, "FDT truncated"),
            FdtError::BadMagic(m) => write!(f, "FDT bad magic {m:#x}"),
            FdtError::UnsupportedVersion(v) => write!(f, "FDT last_comp_version {v} unsupported"),
            FdtError::TooLarge(n) => write!(f, "FDT totalsize {n} too large"),
            FdtError::BadLayout(w) => write!(f, "FDT bad layout: {w}"),
            FdtError::BadStructure { offset, what } => {
                write!(f, "FDT bad structure at struct+{offset:#x}: {what}")
            }
            FdtError::TooDeep => write!(f, "FDT nesting deeper than {MAX_DEPTH}"),
        }
    }
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    Some(((be32(b, off)? as u64) << 32) | be32(b, off + 4)? as u64)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// NUL-terminated string at `off`; `None` if unterminated or not UTF-8.
fn cstr_at(b: &[u8], off: usize) -> Option<&str> {
    let tail = b.get(off..)?;
    let len = tail.iter().position(|&c| c == 0)?;
    core::str::from_utf8(&tail[..len]).ok()
}

/// NUL-terminated string at `off` of a blob that [`Fdt::new`] validated (every
/// node and property name there is terminated and UTF-8). Skipping the
/// second UTF-8 check matters under TCG: boot walks the tree a few times.
fn validated_str(b: &[u8], off: usize) -> Option<&str> {
    let tail = b.get(off..)?;
    let len = tail.iter().position(|&c| c == 0)?;
    // SAFETY: `b` is immutable and `Fdt::new` checked this string with
    // `cstr_at` (UTF-8) before any walker could reach it.
    Some(unsafe { core::str::from_utf8_unchecked(&tail[..len]) })
}

/// A validated device tree blob. Cheap to copy.
#[derive(Clone, Copy)]
pub struct Fdt<'a> {
    blob: &'a [u8],
    structs: &'a [u8],
    strings: &'a [u8],
    rsvmap_off: usize,
    boot_cpuid: u32,
}

impl fmt::Debug for Fdt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fdt")
            .field("total_size", &self.blob.len())
            .finish()
    }
}

impl<'a> Fdt<'a> {
    /// Validates `blob` (which may be longer than the tree's `totalsize`).
    pub fn new(blob: &'a [u8]) -> Result<Self, FdtError> {
        let hdr = |i: usize| be32(blob, i * 4).ok_or(FdtError::Truncated);
        let magic = hdr(0)?;
        if magic != FDT_MAGIC {
            return Err(FdtError::BadMagic(magic));
        }
        if blob.len() < HEADER_LEN {
            return Err(FdtError::Truncated);
        }
        let total = hdr(1)? as usize;
        let off_struct = hdr(2)? as usize;
        let off_strings = hdr(3)? as usize;
        let off_rsvmap = hdr(4)? as usize;
        let version = hdr(5)?;
        let last_comp = hdr(6)?;
        let boot_cpuid = hdr(7)?;
        let size_strings = hdr(8)? as usize;
        if last_comp > LAST_COMP_VERSION_MAX {
            return Err(FdtError::UnsupportedVersion(last_comp));
        }
        if total < HEADER_LEN || total > blob.len() {
            return Err(FdtError::Truncated);
        }
        let blob = &blob[..total];
        // v16 has no size_dt_struct: the structure block then runs to the
        // strings block or the end, whichever the END token says.
        let size_struct = if version >= 17 {
            hdr(9)? as usize
        } else {
            total.saturating_sub(off_struct)
        };
        let block = |off: usize, len: usize, what| {
            let end = off.checked_add(len).ok_or(FdtError::BadLayout(what))?;
            blob.get(off..end).ok_or(FdtError::BadLayout(what))
        };
        if !off_struct.is_multiple_of(4) || !off_rsvmap.is_multiple_of(8) {
            return Err(FdtError::BadLayout("misaligned block"));
        }
        let structs = block(off_struct, size_struct, "structure block")?;
        let strings = block(off_strings, size_strings, "strings block")?;
        if off_rsvmap < HEADER_LEN || off_rsvmap >= total {
            return Err(FdtError::BadLayout("reservation map"));
        }
        let fdt = Fdt {
            blob,
            structs,
            strings,
            rsvmap_off: off_rsvmap,
            boot_cpuid,
        };
        fdt.validate_rsvmap()?;
        fdt.validate_structure()?;
        Ok(fdt)
    }

    /// Reads the blob a boot loader left at `ptr` (e.g. x0 on arm64).
    ///
    /// # Safety
    /// `ptr` must point to readable memory of at least 8 bytes, and of
    /// `totalsize` bytes if the magic matches, which stays valid for `'a`.
    pub unsafe fn from_ptr(ptr: *const u8) -> Result<Self, FdtError> {
        if ptr.is_null() {
            return Err(FdtError::Truncated);
        }
        // SAFETY: the caller guarantees the first 8 bytes are readable.
        let head = unsafe { core::slice::from_raw_parts(ptr, 8) };
        let magic = be32(head, 0).unwrap_or(0);
        if magic != FDT_MAGIC {
            return Err(FdtError::BadMagic(magic));
        }
        let total = be32(head, 4).unwrap_or(0) as usize;
        if total > MAX_TOTAL_SIZE {
            return Err(FdtError::TooLarge(total));
        }
        // SAFETY: the caller guarantees `totalsize` bytes are readable.
        Self::new(unsafe { core::slice::from_raw_parts(ptr, total) })
    }

    /// The blob's `totalsize`.
    pub fn total_size(&self) -> usize {
        self.blob.len()
    }

    /// The whole blob (to hand to drivers or to reserve its frames).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.blob
    }

    pub fn boot_cpuid(&self) -> u32 {
        self.boot_cpuid
    }

    fn validate_rsvmap(&self) -> Result<(), FdtError> {
        let mut off = self.rsvmap_off;
        loop {
            let (a, s) = match (be64(self.blob, off), be64(self.blob, off + 8)) {
                (Some(a), Some(s)) => (a, s),
                _ => return Err(FdtError::BadLayout("unterminated reservation map")),
            };
            if a == 0 && s == 0 {
                return Ok(());
            }
            off += 16;
        }
    }

    fn validate_structure(&self) -> Result<(), FdtError> {
        let bad = |offset, what| Err(FdtError::BadStructure { offset, what });
        let mut off = 0;
        let mut depth = 0usize;
        let mut seen_root = false;
        loop {
            let Some(tok) = be32(self.structs, off) else {
                return bad(off, "missing END token");
            };
            match tok {
                TOKEN_BEGIN_NODE => {
                    if depth == 0 && seen_root {
                        return bad(off, "second root node");
                    }
                    seen_root = true;
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(FdtError::TooDeep);
                    }
                    let Some(name) = cstr_at(self.structs, off + 4) else {
                        return bad(off, "node name unterminated or not UTF-8");
                    };
                    off = align4(off + 4 + name.len() + 1);
                }
                TOKEN_END_NODE => {
                    if depth == 0 {
                        return bad(off, "END_NODE without BEGIN_NODE");
                    }
                    depth -= 1;
                    off += 4;
                }
                TOKEN_PROP => {
                    if depth == 0 {
                        return bad(off, "property outside a node");
                    }
                    let (Some(len), Some(nameoff)) =
                        (be32(self.structs, off + 4), be32(self.structs, off + 8))
                    else {
                        return bad(off, "property header truncated");
                    };
                    let start = off + 12;
                    let Some(end) = start.checked_add(len as usize) else {
                        return bad(off, "property length overflows");
                    };
                    if end > self.structs.len() {
                        return bad(off, "property value past structure block");
                    }
                    if cstr_at(self.strings, nameoff as usize).is_none() {
                        return bad(off, "property name offset invalid");
                    }
                    off = align4(end);
                }
                TOKEN_NOP => off += 4,
                TOKEN_END => {
                    if depth != 0 || !seen_root {
                        return bad(off, "END inside a node or before the root");
                    }
                    return Ok(());
                }
                _ => return bad(off, "unknown token"),
            }
        }
    }

    /// Memory reservation block entries (address, size).
    pub fn reserved(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        let blob = self.blob;
        let mut off = self.rsvmap_off;
        core::iter::from_fn(move || {
            let a = be64(blob, off)?;
            let s = be64(blob, off + 8)?;
            if a == 0 && s == 0 {
                return None;
            }
            off += 16;
            Some((a, s))
        })
    }

    /// The root node.
    pub fn root(&self) -> Node<'a> {
        // Validation guarantees the first non-NOP token opens the root.
        self.nodes().next().unwrap_or(Node {
            fdt: *self,
            name: "",
            props_off: self.structs.len(),
            depth: 0,
            parent_cells: Cells::ROOT_PARENT,
        })
    }

    /// Every node, depth first in blob order (the root first, depth 0).
    pub fn nodes(&self) -> NodeIter<'a> {
        NodeIter {
            fdt: *self,
            off: 0,
            depth: 0,
            open: [OpenNode::NONE; MAX_DEPTH + 1],
        }
    }

    /// The node at an absolute path like `/chosen` or `/pl011@9000000`. A path
    /// component without `@unit` matches a node name with any unit address
    /// if exactly that base name (the spec allows this when unambiguous; the
    /// first match wins here).
    pub fn find_node(&self, path: &str) -> Option<Node<'a>> {
        let path = path.strip_prefix('/')?;
        let mut want = path.split('/').filter(|c| !c.is_empty());
        let mut next = want.next();
        let mut matched_depth = 0usize;
        let mut iter = self.nodes();
        let root = iter.next()?;
        let Some(mut component) = next else {
            return Some(root);
        };
        for node in iter {
            if node.depth <= matched_depth {
                // Left the subtree of the last matched component: no match.
                return None;
            }
            if node.depth == matched_depth + 1 && node.name_matches(component) {
                matched_depth += 1;
                next = want.next();
                match next {
                    None => return Some(node),
                    Some(c) => component = c,
                }
            }
        }
        None
    }

    /// Nodes whose `compatible` list contains `compat`.
    pub fn compatible_nodes<'s>(&self, compat: &'s str) -> impl Iterator<Item = Node<'a>> + 's
    where
        'a: 's,
    {
        self.nodes().filter(move |n| n.is_compatible(compat))
    }

    /// The node whose `phandle` (or legacy `linux,phandle`) is `phandle`, e.g.
    /// to follow `interrupt-parent` or `msi-map` references.
    pub fn node_by_phandle(&self, phandle: u32) -> Option<Node<'a>> {
        self.nodes().find(|n| {
            n.property("phandle")
                .or_else(|| n.property("linux,phandle"))
                .and_then(|p| p.as_u32())
                == Some(phandle)
        })
    }

    /// `/chosen/bootargs` (the kernel command line), if present.
    pub fn bootargs(&self) -> Option<&'a str> {
        self.find_node("/chosen")?.property("bootargs")?.as_str()
    }

    /// RAM regions: `reg` of every top-level node with `device_type = "memory"`.
    pub fn memory_regions(&self) -> impl Iterator<Item = MemRegion> + 'a {
        self.nodes()
            .filter(|n| {
                n.depth == 1 && n.property("device_type").and_then(|p| p.as_str()) == Some("memory")
            })
            .flat_map(|n| n.reg().into_iter().flatten())
            .filter(|r| r.size != 0)
            .map(|r| MemRegion {
                address: r.address,
                size: r.size,
            })
    }

    /// The node `/chosen/stdout-path` names (aliases resolved, `:options` cut).
    pub fn stdout_node(&self) -> Option<Node<'a>> {
        let chosen = self.find_node("/chosen")?;
        let p = chosen
            .property("stdout-path")
            .or_else(|| chosen.property("linux,stdout-path"))?
            .as_str()?;
        let p = p.split(':').next()?;
        if p.starts_with('/') {
            self.find_node(p)
        } else {
            let full = self.find_node("/aliases")?.property(p)?.as_str()?;
            self.find_node(full)
        }
    }

    /// MMIO base of the PL011 console: the stdout node if it is a PL011,
    /// else the first `arm,pl011` node. 0x0900_0000 on QEMU virt.
    pub fn pl011_base(&self) -> Option<u64> {
        let node = match self.stdout_node() {
            Some(n) if n.is_compatible("arm,pl011") => n,
            _ => self.compatible_nodes("arm,pl011").next()?,
        };
        node.reg()?.next().map(|r| r.address)
    }
}

/// A RAM region from `/memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRegion {
    pub address: u64,
    pub size: u64,
}

/// `#address-cells` / `#size-cells` in force for a node's `reg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cells {
    pub address: u32,
    pub size: u32,
}

impl Cells {
    /// Defaults the spec gives a node that does not set them (section 2.3.5).
    pub const DEFAULT: Cells = Cells {
        address: 2,
        size: 1,
    };
    /// The root's own `reg` has no parent; the defaults apply.
    const ROOT_PARENT: Cells = Cells::DEFAULT;
}

/// A node on the iterator's path from the root; its `#address-cells` /
/// `#size-cells` are read only once a child shows up (most nodes are leaves,
/// and walking is what boot spends its FDT time on).
#[derive(Clone, Copy)]
struct OpenNode {
    props_off: usize,
    child_cells: Option<Cells>,
}

impl OpenNode {
    const NONE: OpenNode = OpenNode {
        props_off: 0,
        child_cells: Some(Cells::ROOT_PARENT),
    };
}

/// Depth-first iterator over all nodes; see [`Fdt::nodes`].
pub struct NodeIter<'a> {
    fdt: Fdt<'a>,
    off: usize,
    depth: usize,
    /// `open[d]` = the node at depth `d` on the current path.
    open: [OpenNode; MAX_DEPTH + 1],
}

impl<'a> Iterator for NodeIter<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        let s = self.fdt.structs;
        loop {
            match be32(s, self.off)? {
                TOKEN_BEGIN_NODE => {
                    let name = validated_str(s, self.off + 4)?;
                    let props_off = align4(self.off + 4 + name.len() + 1);
                    let depth = self.depth;
                    let parent_cells = match depth.checked_sub(1) {
                        None => Cells::ROOT_PARENT,
                        Some(p) => {
                            let fdt = self.fdt;
                            let parent = self.open.get_mut(p)?;
                            *parent
                                .child_cells
                                .get_or_insert_with(|| cells_of(fdt, parent.props_off))
                        }
                    };
                    let node = Node {
                        fdt: self.fdt,
                        name,
                        props_off,
                        depth,
                        parent_cells,
                    };
                    *self.open.get_mut(depth)? = OpenNode {
                        props_off,
                        child_cells: None,
                    };
                    self.depth += 1;
                    self.off = props_off;
                    return Some(node);
                }
                TOKEN_END_NODE => {
                    self.depth = self.depth.checked_sub(1)?;
                    self.off += 4;
                }
                TOKEN_PROP => {
                    let len = be32(s, self.off + 4)? as usize;
                    self.off = align4(self.off + 12 + len);
                }
                TOKEN_NOP => self.off += 4,
                _ => return None, // END (validation rules out anything else)
            }
        }
    }
}

/// `#address-cells` / `#size-cells` of the node whose properties start at
/// `props_off`, in one pass over them.
fn cells_of(fdt: Fdt<'_>, props_off: usize) -> Cells {
    let mut c = Cells::DEFAULT;
    for p in (PropIter {
        fdt,
        off: props_off,
    }) {
        match p.name {
            "#address-cells" => c.address = p.as_u32().unwrap_or(c.address),
            "#size-cells" => c.size = p.as_u32().unwrap_or(c.size),
            _ => {}
        }
    }
    c
}

/// One node of the tree.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    fdt: Fdt<'a>,
    /// Full name including `@unit-address`; empty for the root.
    pub name: &'a str,
    props_off: usize,
    /// 0 for the root.
    pub depth: usize,
    /// Cells from the parent, which this node's `reg` is encoded with.
    pub parent_cells: Cells,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("depth", &self.depth)
            .finish()
    }
}

impl<'a> Node<'a> {
    /// Name without the `@unit-address`.
    pub fn base_name(&self) -> &'a str {
        self.name.split('@').next().unwrap_or(self.name)
    }

    /// Unit address part after `@`, if any.
    pub fn unit_address(&self) -> Option<&'a str> {
        self.name.split_once('@').map(|(_, u)| u)
    }

    fn name_matches(&self, component: &str) -> bool {
        if component.contains('@') {
            self.name == component
        } else {
            self.base_name() == component
        }
    }

    /// This node's properties in blob order.
    pub fn properties(&self) -> PropIter<'a> {
        PropIter {
            fdt: self.fdt,
            off: self.props_off,
        }
    }

    pub fn property(&self, name: &str) -> Option<Property<'a>> {
        self.properties().find(|p| p.name == name)
    }

    /// Whether `compatible` lists `compat`.
    pub fn is_compatible(&self, compat: &str) -> bool {
        self.property("compatible")
            .is_some_and(|p| p.strings().any(|s| s == compat))
    }

    /// Cells this node's children use (`#address-cells`, `#size-cells`).
    pub fn child_cells(&self) -> Cells {
        cells_of(self.fdt, self.props_off)
    }

    /// Direct children, in blob order.
    pub fn children(&self) -> impl Iterator<Item = Node<'a>> + 'a {
        let mut iter = NodeIter {
            fdt: self.fdt,
            off: self.props_off,
            depth: self.depth + 1,
            open: [OpenNode::NONE; MAX_DEPTH + 1],
        };
        if let Some(o) = iter.open.get_mut(self.depth) {
            *o = OpenNode {
                props_off: self.props_off,
                child_cells: None,
            };
        }
        let me = self.depth;
        // Stop at the first node that is not deeper than us (our END_NODE
        // makes the iterator's depth drop to ours).
        core::iter::from_fn(move || loop {
            if iter.depth <= me {
                return None;
            }
            let n = iter.next()?;
            if n.depth <= me {
                return None;
            }
            if n.depth == me + 1 {
                return Some(n);
            }
        })
    }

    /// `reg` decoded with the parent's cells; `None` if there is no `reg` or
    /// the cells are not 1 or 2 (address) / 0, 1 or 2 (size) — e.g. PCI
    /// device nodes with 3 address cells: read those with [`Property::cells`].
    pub fn reg(&self) -> Option<RegIter<'a>> {
        let p = self.property("reg")?;
        let c = self.parent_cells;
        if !(1..=2).contains(&c.address) || c.size > 2 {
            return None;
        }
        Some(RegIter {
            data: p.value,
            cells: c,
        })
    }

    /// `ranges` decoded as (child address, parent address, size), using this
    /// node's child cells for the child address and size and the parent's
    /// address cells for the parent address. Child addresses take up to 4
    /// cells (PCI uses 3: `phys.hi` is bits 64..96 of `child`). Returns `None`
    /// if there is no `ranges`, an empty iterator for an empty `ranges`
    /// (identity mapping).
    pub fn ranges(&self) -> Option<RangesIter<'a>> {
        let p = self.property("ranges")?;
        let child = self.child_cells();
        let parent = self.parent_cells.address;
        if child.address > 4 || child.size > 2 || parent > 2 {
            return None;
        }
        Some(RangesIter {
            data: p.value,
            child,
            parent,
        })
    }
}

/// Iterator over a node's properties.
pub struct PropIter<'a> {
    fdt: Fdt<'a>,
    off: usize,
}

impl<'a> Iterator for PropIter<'a> {
    type Item = Property<'a>;

    fn next(&mut self) -> Option<Property<'a>> {
        let s = self.fdt.structs;
        loop {
            match be32(s, self.off)? {
                TOKEN_PROP => {
                    let len = be32(s, self.off + 4)? as usize;
                    let nameoff = be32(s, self.off + 8)? as usize;
                    let start = self.off + 12;
                    let value = s.get(start..start.checked_add(len)?)?;
                    let name = validated_str(self.fdt.strings, nameoff)?;
                    self.off = align4(start + len);
                    return Some(Property { name, value });
                }
                TOKEN_NOP => self.off += 4,
                _ => return None, // a child node or the end of this node
            }
        }
    }
}

/// One property: name and raw big-endian value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Property<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

impl<'a> Property<'a> {
    /// A single `<u32>` cell.
    pub fn as_u32(&self) -> Option<u32> {
        if self.value.len() == 4 {
            be32(self.value, 0)
        } else {
            None
        }
    }

    /// A `<u64>` (two cells) or a single cell widened.
    pub fn as_u64(&self) -> Option<u64> {
        match self.value.len() {
            4 => be32(self.value, 0).map(u64::from),
            8 => be64(self.value, 0),
            _ => None,
        }
    }

    /// A single NUL-terminated string.
    pub fn as_str(&self) -> Option<&'a str> {
        let (last, body) = self.value.split_last()?;
        if *last != 0 || body.contains(&0) {
            return None;
        }
        core::str::from_utf8(body).ok()
    }

    /// A `<stringlist>`; stops at the first malformed entry.
    pub fn strings(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut rest = self.value;
        core::iter::from_fn(move || {
            let nul = rest.iter().position(|&c| c == 0)?;
            let s = core::str::from_utf8(&rest[..nul]).ok()?;
            rest = &rest[nul + 1..];
            Some(s)
        })
    }

    /// The value as a list of `<u32>` cells (trailing partial cell ignored).
    pub fn u32s(&self) -> impl Iterator<Item = u32> + 'a {
        self.value
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The value as consecutive numbers of `n` cells each (1..=4).
    pub fn cells(&self, n: u32) -> impl Iterator<Item = u128> + 'a {
        let width = if (1..=4).contains(&n) {
            n as usize * 4
        } else {
            usize::MAX
        };
        let mut rest = self.value;
        core::iter::from_fn(move || {
            let chunk = rest.get(..width)?;
            rest = &rest[width..];
            Some(read_cells(chunk))
        })
    }
}

/// Big-endian number from whole cells (caller bounds the length to 16 bytes).
fn read_cells(bytes: &[u8]) -> u128 {
    bytes.iter().fold(0u128, |acc, &b| (acc << 8) | b as u128)
}

/// Consumes `cells` cells from `data`, returning the number and the rest.
fn take_cells(data: &[u8], cells: u32) -> Option<(u128, &[u8])> {
    let n = cells as usize * 4;
    let chunk = data.get(..n)?;
    Some((read_cells(chunk), &data[n..]))
}

/// One `reg` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegEntry {
    pub address: u64,
    pub size: u64,
}

/// Iterator over `reg` entries; see [`Node::reg`].
pub struct RegIter<'a> {
    data: &'a [u8],
    cells: Cells,
}

impl Iterator for RegIter<'_> {
    type Item = RegEntry;

    fn next(&mut self) -> Option<RegEntry> {
        let (address, rest) = take_cells(self.data, self.cells.address)?;
        let (size, rest) = take_cells(rest, self.cells.size)?;
        self.data = rest;
        Some(RegEntry {
            address: address as u64,
            size: size as u64,
        })
    }
}

/// One `ranges` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeEntry {
    /// Child bus address (for PCI: `phys.hi << 64 | phys.mid << 32 | phys.lo`).
    pub child: u128,
    pub parent: u64,
    pub size: u64,
}

/// Iterator over `ranges`; see [`Node::ranges`].
pub struct RangesIter<'a> {
    data: &'a [u8],
    child: Cells,
    parent: u32,
}

impl Iterator for RangesIter<'_> {
    type Item = RangeEntry;

    fn next(&mut self) -> Option<RangeEntry> {
        let (child, rest) = take_cells(self.data, self.child.address)?;
        let (parent, rest) = take_cells(rest, self.parent)?;
        let (size, rest) = take_cells(rest, self.child.size)?;
        self.data = rest;
        Some(RangeEntry {
            child,
            parent: parent as u64,
            size: size as u64,
        })
    }
}
