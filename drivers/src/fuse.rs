//! FUSE wire protocol as virtio-fs carries it (Linux `include/uapi/linux/fuse.h`,
//! protocol 7.31), the subset a read-only client needs.
//!
//! Every request is `fuse_in_header` + an opcode-specific body; every reply
//! is `fuse_out_header` + a body. All fields are little-endian (virtio-fs is
//! little-endian on every architecture). Decoding never trusts lengths sent
//! by the server: short or inconsistent replies become [`FsError::Protocol`].

use alloc::{string::String, vec::Vec};

pub const KERNEL_VERSION: u32 = 7;
/// 7.31 has everything used here (max_pages, READDIRPLUS) and keeps
/// `fuse_init_in` at 16 bytes, which every server accepts.
pub const KERNEL_MINOR_VERSION: u32 = 31;
pub const ROOT_ID: u64 = 1;

pub const IN_HEADER_LEN: usize = 40;
pub const OUT_HEADER_LEN: usize = 16;
pub const ATTR_LEN: usize = 88;
pub const ENTRY_OUT_LEN: usize = 40 + ATTR_LEN;
pub const ATTR_OUT_LEN: usize = 16 + ATTR_LEN;
pub const INIT_OUT_MIN_LEN: usize = 24;

#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Lookup = 1,
    Forget = 2,
    Getattr = 3,
    Open = 14,
    Read = 15,
    Release = 18,
    Init = 26,
    Opendir = 27,
    Readdir = 28,
    Releasedir = 29,
    Readdirplus = 44,
}

// fuse_init flags.
pub const FUSE_ASYNC_READ: u32 = 1 << 0;
pub const FUSE_DO_READDIRPLUS: u32 = 1 << 13;
pub const FUSE_MAX_PAGES: u32 = 1 << 22;

/// FUSE open flags: O_RDONLY; O_DIRECTORY for OPENDIR is implied by the opcode.
pub const O_RDONLY: u32 = 0;

/// File type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;

/// Errors of the file system client, with the common errno values named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsError {
    NotFound,
    PermissionDenied,
    NotADirectory,
    IsADirectory,
    Io,
    NotSupported,
    InvalidArgument,
    NameTooLong,
    Stale,
    /// Any other errno the server returned.
    Errno(i32),
    /// The path tries to leave the share (`..` above the root) or is not
    /// valid UTF-8 / contains NUL.
    BadPath(String),
    /// The server sent something that does not parse as a reply.
    Protocol(&'static str),
    /// The file ended before the requested range (it shrank or vanished).
    UnexpectedEof {
        offset: u64,
        wanted: u64,
        got: u64,
    },
    /// No reply within the deadline: the host daemon is gone or stuck.
    Timeout,
    /// The virtqueue or device failed.
    Device(&'static str),
}

impl FsError {
    /// Maps a FUSE reply error (a negated errno) to a typed error.
    pub fn from_errno(errno: i32) -> Self {
        match errno {
            2 => Self::NotFound,
            1 | 13 => Self::PermissionDenied,
            20 => Self::NotADirectory,
            21 => Self::IsADirectory,
            5 => Self::Io,
            38 | 95 => Self::NotSupported,
            22 => Self::InvalidArgument,
            36 => Self::NameTooLong,
            116 => Self::Stale,
            e => Self::Errno(e),
        }
    }
}

impl core::fmt::Display for FsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFound => write!(f, "no such file or directory"),
            Self::PermissionDenied => write!(f, "permission denied"),
            Self::NotADirectory => write!(f, "not a directory"),
            Self::IsADirectory => write!(f, "is a directory"),
            Self::Io => write!(f, "I/O error"),
            Self::NotSupported => write!(f, "operation not supported by the server"),
            Self::InvalidArgument => write!(f, "invalid argument"),
            Self::NameTooLong => write!(f, "name too long"),
            Self::Stale => write!(f, "stale file handle"),
            Self::Errno(e) => write!(f, "server error errno {e}"),
            Self::BadPath(p) => write!(f, "path {p:?} is not inside the share"),
            Self::Protocol(what) => write!(f, "malformed FUSE reply: {what}"),
            Self::UnexpectedEof {
                offset,
                wanted,
                got,
            } => write!(
                f,
                "file ended early: wanted {wanted} bytes at {offset}, got {got}"
            ),
            Self::Timeout => write!(f, "virtio-fs request timed out"),
            Self::Device(what) => write!(f, "virtio-fs device error: {what}"),
        }
    }
}

fn put32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}
fn put64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}
fn get32(b: &[u8], at: usize) -> Result<u32, FsError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(FsError::Protocol("reply too short"))
}
fn get64(b: &[u8], at: usize) -> Result<u64, FsError> {
    Ok(get32(b, at)? as u64 | (get32(b, at + 4)? as u64) << 32)
}

/// A request ready for the device: header + body in one buffer.
pub fn request(opcode: Opcode, unique: u64, nodeid: u64, body: &[u8]) -> Vec<u8> {
    let len = IN_HEADER_LEN + body.len();
    let mut b = Vec::with_capacity(len);
    put32(&mut b, len as u32);
    put32(&mut b, opcode as u32);
    put64(&mut b, unique);
    put64(&mut b, nodeid);
    put32(&mut b, 0); // uid
    put32(&mut b, 0); // gid
    put32(&mut b, 0); // pid
    put32(&mut b, 0); // total_extlen + padding
    b.extend_from_slice(body);
    b
}

pub fn init_body(max_readahead: u32, flags: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    put32(&mut b, KERNEL_VERSION);
    put32(&mut b, KERNEL_MINOR_VERSION);
    put32(&mut b, max_readahead);
    put32(&mut b, flags);
    b
}

/// LOOKUP body: the name, NUL-terminated.
pub fn lookup_body(name: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(name.len() + 1);
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    b
}

pub fn getattr_body() -> Vec<u8> {
    alloc::vec![0; 16]
}

pub fn open_body(flags: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(8);
    put32(&mut b, flags);
    put32(&mut b, 0);
    b
}

/// `fuse_read_in`, also the body of READDIR / READDIRPLUS.
pub fn read_body(fh: u64, offset: u64, size: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(40);
    put64(&mut b, fh);
    put64(&mut b, offset);
    put32(&mut b, size);
    put32(&mut b, 0); // read_flags
    put64(&mut b, 0); // lock_owner
    put32(&mut b, O_RDONLY);
    put32(&mut b, 0);
    b
}

pub fn release_body(fh: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(24);
    put64(&mut b, fh);
    put32(&mut b, O_RDONLY);
    put32(&mut b, 0);
    put64(&mut b, 0);
    b
}

pub fn forget_body(nlookup: u64) -> Vec<u8> {
    nlookup.to_le_bytes().to_vec()
}

/// Checks a reply's header against the request `unique` and returns the
/// body, or the server's error.
pub fn reply_body(reply: &[u8], unique: u64) -> Result<&[u8], FsError> {
    let len = get32(reply, 0)? as usize;
    let error = get32(reply, 4)? as i32;
    let got_unique = get64(reply, 8)?;
    if got_unique != unique {
        return Err(FsError::Protocol("reply for another request"));
    }
    if len < OUT_HEADER_LEN || len > reply.len() {
        return Err(FsError::Protocol("reply length field out of range"));
    }
    if error != 0 {
        // Negative errno; a positive value is a protocol violation.
        return Err(if error < 0 {
            FsError::from_errno(-error)
        } else {
            FsError::Protocol("positive error value")
        });
    }
    Ok(&reply[OUT_HEADER_LEN..len])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
}

impl Attr {
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
    fn parse(b: &[u8]) -> Result<Self, FsError> {
        if b.len() < ATTR_LEN {
            return Err(FsError::Protocol("fuse_attr too short"));
        }
        Ok(Self {
            ino: get64(b, 0)?,
            size: get64(b, 8)?,
            mode: get32(b, 60)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitOut {
    pub major: u32,
    pub minor: u32,
    pub flags: u32,
    pub max_write: u32,
    /// Largest READ in pages; 0 when the server did not set FUSE_MAX_PAGES.
    pub max_pages: u16,
}

pub fn parse_init(b: &[u8]) -> Result<InitOut, FsError> {
    if b.len() < INIT_OUT_MIN_LEN {
        return Err(FsError::Protocol("fuse_init_out too short"));
    }
    let flags = get32(b, 12)?;
    // fuse_init_out: ... max_write @20, time_gran @24, max_pages @28 (7.28+).
    let max_pages = if flags & FUSE_MAX_PAGES != 0 && b.len() >= 30 {
        u16::from_le_bytes([b[28], b[29]])
    } else {
        0
    };
    Ok(InitOut {
        major: get32(b, 0)?,
        minor: get32(b, 4)?,
        flags,
        max_write: get32(b, 20)?,
        max_pages,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryOut {
    pub nodeid: u64,
    pub attr: Attr,
}

pub fn parse_entry(b: &[u8]) -> Result<EntryOut, FsError> {
    if b.len() < ENTRY_OUT_LEN {
        return Err(FsError::Protocol("fuse_entry_out too short"));
    }
    Ok(EntryOut {
        nodeid: get64(b, 0)?,
        attr: Attr::parse(&b[40..])?,
    })
}

pub fn parse_attr_out(b: &[u8]) -> Result<Attr, FsError> {
    if b.len() < ATTR_OUT_LEN {
        return Err(FsError::Protocol("fuse_attr_out too short"));
    }
    Attr::parse(&b[16..])
}

pub fn parse_open(b: &[u8]) -> Result<u64, FsError> {
    if b.len() < 16 {
        return Err(FsError::Protocol("fuse_open_out too short"));
    }
    get64(b, 0)
}

/// One directory entry of READDIR or READDIRPLUS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    /// Offset of the next entry: where the next READDIR continues.
    pub next_offset: u64,
    /// d_type (DT_DIR = 4, DT_REG = 8)
    pub kind: u32,
    /// READDIRPLUS only: the looked-up node (nodeid 0 = not looked up).
    pub entry: Option<EntryOut>,
}

pub const DT_DIR: u32 = 4;
pub const DT_REG: u32 = 8;

/// Parses a READDIR (`plus = false`) or READDIRPLUS reply body.
pub fn parse_dirents(mut b: &[u8], plus: bool) -> Result<Vec<DirEntry>, FsError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let entry = if plus {
            let e = parse_entry(b)?;
            b = &b[ENTRY_OUT_LEN..];
            Some(e)
        } else {
            None
        };
        // fuse_dirent: ino u64, off u64, namelen u32, type u32, name
        let next_offset = get64(b, 8)?;
        let namelen = get32(b, 16)? as usize;
        let kind = get32(b, 20)?;
        if namelen == 0 || namelen > 1024 {
            return Err(FsError::Protocol("dirent name length"));
        }
        let name = b
            .get(24..24 + namelen)
            .ok_or(FsError::Protocol("dirent name cut"))?;
        let name =
            core::str::from_utf8(name).map_err(|_| FsError::Protocol("dirent name not UTF-8"))?;
        out.push(DirEntry {
            name: name.into(),
            next_offset,
            kind,
            entry,
        });
        let record = (24 + namelen).next_multiple_of(8);
        b = b.get(record..).unwrap_or(&[]);
    }
    Ok(out)
}

/// Splits a path into components inside the share. Absolute paths are taken
/// relative to the share root; `.` and empty parts are skipped; `..` is
/// refused everywhere: resolving it lexically would disagree with the host
/// when a component is a symlink, and no caller needs it.
pub fn resolve_components(path: &str) -> Result<Vec<&str>, FsError> {
    let mut parts: Vec<&str> = Vec::new();
    if path.contains('\0') {
        return Err(FsError::BadPath(path.into()));
    }
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(FsError::BadPath(path.into())),
            p if p.len() > 255 => return Err(FsError::NameTooLong),
            p => parts.push(p),
        }
    }
    Ok(parts)
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::ATTR_LEN;

    pub(crate) fn attr_bytes(ino: u64, size: u64, mode: u32) -> Vec<u8> {
        let mut a = vec![0u8; ATTR_LEN];
        a[0..8].copy_from_slice(&ino.to_le_bytes());
        a[8..16].copy_from_slice(&size.to_le_bytes());
        a[60..64].copy_from_slice(&mode.to_le_bytes());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::attr_bytes;
    use super::*;

    #[test]
    fn request_header_layout() {
        let r = request(Opcode::Lookup, 7, ROOT_ID, &lookup_body("a"));
        assert_eq!(r.len(), IN_HEADER_LEN + 2);
        assert_eq!(get32(&r, 0).unwrap() as usize, r.len());
        assert_eq!(get32(&r, 4).unwrap(), 1);
        assert_eq!(get64(&r, 8).unwrap(), 7);
        assert_eq!(get64(&r, 16).unwrap(), 1);
        assert_eq!(&r[40..], b"a\0");
        assert_eq!(read_body(1, 2, 3).len(), 40);
        assert_eq!(release_body(1).len(), 24);
    }

    fn reply(unique: u64, error: i32, body: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        put32(&mut r, (OUT_HEADER_LEN + body.len()) as u32);
        put32(&mut r, error as u32);
        put64(&mut r, unique);
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn errors_map_to_types() {
        assert_eq!(reply_body(&reply(3, -2, &[]), 3), Err(FsError::NotFound));
        assert_eq!(
            reply_body(&reply(3, -13, &[]), 3),
            Err(FsError::PermissionDenied)
        );
        assert_eq!(
            reply_body(&reply(3, -20, &[]), 3),
            Err(FsError::NotADirectory)
        );
        assert_eq!(reply_body(&reply(3, -71, &[]), 3), Err(FsError::Errno(71)));
        assert!(matches!(
            reply_body(&reply(4, 0, &[]), 3),
            Err(FsError::Protocol(_))
        ));
        assert!(matches!(
            reply_body(&reply(3, 0, &[])[..10], 3),
            Err(FsError::Protocol(_))
        ));
        let mut lying = reply(3, 0, &[1, 2]);
        lying[0] = 200; // length larger than the buffer
        assert!(matches!(reply_body(&lying, 3), Err(FsError::Protocol(_))));
        assert_eq!(reply_body(&reply(3, 0, &[9, 8]), 3).unwrap(), &[9, 8]);
    }

    #[test]
    fn parses_entry_and_attr() {
        let mut e = vec![0u8; 40];
        e[0..8].copy_from_slice(&42u64.to_le_bytes());
        e.extend(attr_bytes(5, 1 << 26, S_IFREG | 0o644));
        let entry = parse_entry(&e).unwrap();
        assert_eq!(entry.nodeid, 42);
        assert_eq!(entry.attr.size, 1 << 26);
        assert!(entry.attr.is_file());
        assert!(parse_entry(&e[..100]).is_err());
    }

    #[test]
    fn parses_dirents_with_padding_and_rejects_garbage() {
        let mut b = Vec::new();
        for (i, name) in ["a", "longer-name"].iter().enumerate() {
            put64(&mut b, 10 + i as u64);
            put64(&mut b, i as u64 + 1);
            put32(&mut b, name.len() as u32);
            put32(&mut b, DT_REG);
            b.extend_from_slice(name.as_bytes());
            while b.len() % 8 != 0 {
                b.push(0);
            }
        }
        let d = parse_dirents(&b, false).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].name, "longer-name");
        assert_eq!(d[1].next_offset, 2);
        b[16] = 200; // name length past the end
        assert!(parse_dirents(&b, false).is_err());
    }

    #[test]
    fn path_resolution_stays_inside_the_share() {
        assert_eq!(
            resolve_components("/a/./b//c").unwrap(),
            vec!["a", "b", "c"]
        );
        assert!(matches!(
            resolve_components("a/b/../c"),
            Err(FsError::BadPath(_))
        ));
        assert_eq!(resolve_components("").unwrap(), Vec::<&str>::new());
        assert!(matches!(
            resolve_components("../etc/passwd"),
            Err(FsError::BadPath(_))
        ));
        assert!(matches!(
            resolve_components("/a/../../x"),
            Err(FsError::BadPath(_))
        ));
        assert!(matches!(
            resolve_components("a\0b"),
            Err(FsError::BadPath(_))
        ));
    }

    #[test]
    fn init_reply_with_and_without_max_pages() {
        let mut b = vec![0u8; 64];
        b[0..4].copy_from_slice(&7u32.to_le_bytes());
        b[4..8].copy_from_slice(&38u32.to_le_bytes());
        b[12..16].copy_from_slice(&FUSE_MAX_PAGES.to_le_bytes());
        b[24..28].copy_from_slice(&1u32.to_le_bytes()); // time_gran
        b[28..30].copy_from_slice(&256u16.to_le_bytes());
        let i = parse_init(&b).unwrap();
        assert_eq!((i.major, i.minor, i.max_pages), (7, 38, 256));
        b[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(parse_init(&b).unwrap().max_pages, 0);
        assert!(parse_init(&b[..20]).is_err());
    }
}
