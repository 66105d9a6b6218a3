//! virtio-fs client (virtio 1.2 §5.11): FUSE requests over virtqueues, and a
//! small read-only file API on top.
//!
//! The client ([`FsClient`]) speaks FUSE through a [`FuseChannel`]; the real
//! channel is [`VirtioFsChannel`] (queue 0 = hiprio for FORGET, queue 1 = the
//! first request queue), host tests use an in-memory server. Large reads are
//! split into `max_read` chunks and kept in flight up to the channel's
//! capacity; completions may come back in any order (virtiofsd runs a thread
//! pool), so each is matched by its tag, never by position.

use crate::clock::Clock;
use crate::fuse::{self, Attr, DirEntry, EntryOut, FsError, Opcode, ROOT_ID};
use crate::virtio::{negotiate_features, VirtioTransport, DEVICE_ID_FS};
use alloc::{string::String, vec, vec::Vec};
use virtio_drivers::{queue::VirtQueue, transport::DeviceStatus, Hal};

/// A place FUSE requests go to and replies come from.
pub trait FuseChannel {
    /// How many replied requests can be in flight at once.
    fn capacity(&self) -> usize;
    /// Queues `request`; its reply may be up to `reply_len` bytes. Returns a
    /// tag that [`FuseChannel::complete`] reports back.
    fn submit(&mut self, request: Vec<u8>, reply_len: usize) -> Result<u16, FsError>;
    /// Queues a request that has no reply (FORGET) on the high-priority queue.
    fn submit_no_reply(&mut self, request: Vec<u8>) -> Result<(), FsError>;
    /// Waits until any submitted request completes: (tag, reply bytes).
    fn complete(&mut self) -> Result<(u16, Vec<u8>), FsError>;
}

/// Largest READ we ask for even if the server allows more: 256 KiB chunks
/// keep 8 requests in flight within 2 MiB of bounce buffers.
pub const MAX_READ_CHUNK: u32 = 256 * 1024;
/// READ size when the server does not announce max_pages (FUSE default 32 pages).
const DEFAULT_MAX_READ: u32 = 32 * 4096;
const DIR_READ_SIZE: u32 = 16 * 1024;
/// A directory longer than this is treated as a server fault.
const MAX_DIR_ENTRIES: usize = 1 << 20;

/// An open file of the share.
#[derive(Debug)]
pub struct File {
    node: u64,
    fh: u64,
    size: u64,
}

impl File {
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// One entry of [`FsClient::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub name: String,
    pub is_dir: bool,
    /// Size in bytes when the server sent attributes (READDIRPLUS).
    pub size: Option<u64>,
}

pub struct FsClient<C: FuseChannel> {
    chan: C,
    next_unique: u64,
    max_read: u32,
    readdirplus: bool,
    /// Set after a channel failure: requests may still be on the device, so
    /// nothing more is sent.
    broken: bool,
}

impl<C: FuseChannel> FsClient<C> {
    /// FUSE_INIT: negotiates version 7.x and the largest READ.
    pub fn new(chan: C) -> Result<Self, FsError> {
        let mut client = Self {
            chan,
            next_unique: 1,
            max_read: DEFAULT_MAX_READ,
            readdirplus: true,
            broken: false,
        };
        let flags = fuse::FUSE_ASYNC_READ | fuse::FUSE_MAX_PAGES | fuse::FUSE_DO_READDIRPLUS;
        let reply = client.call(Opcode::Init, 0, &fuse::init_body(MAX_READ_CHUNK, flags), 64)?;
        let init = fuse::parse_init(&reply)?;
        if init.major != fuse::KERNEL_VERSION {
            return Err(FsError::Protocol(
                "server speaks another FUSE major version",
            ));
        }
        if init.max_pages != 0 {
            client.max_read = (init.max_pages as u32 * 4096).min(MAX_READ_CHUNK);
        }
        // virtiofsd serves READDIRPLUS without echoing FUSE_DO_READDIRPLUS
        // in its INIT reply, so always try it; ENOSYS switches to READDIR.
        client.readdirplus = true;
        log::info!(
            "virtio-fs: FUSE {}.{}, flags {:#x}, max read {} bytes",
            init.major,
            init.minor,
            init.flags,
            client.max_read
        );
        Ok(client)
    }

    pub fn max_read(&self) -> u32 {
        self.max_read
    }

    fn unique(&mut self) -> u64 {
        self.next_unique += 1;
        self.next_unique
    }

    fn fail(&mut self, e: FsError) -> FsError {
        if matches!(e, FsError::Timeout | FsError::Device(_)) {
            self.broken = true;
        }
        e
    }

    /// One request, waited for alone.
    fn call(
        &mut self,
        op: Opcode,
        node: u64,
        body: &[u8],
        reply_len: usize,
    ) -> Result<Vec<u8>, FsError> {
        if self.broken {
            return Err(FsError::Device("channel failed earlier"));
        }
        let unique = self.unique();
        let tag = self
            .chan
            .submit(
                fuse::request(op, unique, node, body),
                fuse::OUT_HEADER_LEN + reply_len,
            )
            .map_err(|e| self.fail(e))?;
        let (got, reply) = self.chan.complete().map_err(|e| self.fail(e))?;
        if got != tag {
            self.broken = true;
            return Err(FsError::Protocol("completion for a request not in flight"));
        }
        Ok(fuse::reply_body(&reply, unique)?.to_vec())
    }

    pub fn lookup(&mut self, parent: u64, name: &str) -> Result<EntryOut, FsError> {
        let r = self.call(
            Opcode::Lookup,
            parent,
            &fuse::lookup_body(name),
            fuse::ENTRY_OUT_LEN,
        )?;
        let e = fuse::parse_entry(&r)?;
        if e.nodeid == 0 {
            // A negative entry: "does not exist", cached.
            return Err(FsError::NotFound);
        }
        Ok(e)
    }

    pub fn getattr(&mut self, node: u64) -> Result<Attr, FsError> {
        let r = self.call(
            Opcode::Getattr,
            node,
            &fuse::getattr_body(),
            fuse::ATTR_OUT_LEN,
        )?;
        fuse::parse_attr_out(&r)
    }

    /// Drops `nlookup` references the server holds for `node` (no reply).
    pub fn forget(&mut self, node: u64, nlookup: u64) -> Result<(), FsError> {
        if node == ROOT_ID || nlookup == 0 || self.broken {
            return Ok(());
        }
        let unique = self.unique();
        self.chan
            .submit_no_reply(fuse::request(
                Opcode::Forget,
                unique,
                node,
                &fuse::forget_body(nlookup),
            ))
            .map_err(|e| self.fail(e))
    }

    fn open_node(&mut self, node: u64, dir: bool) -> Result<u64, FsError> {
        let op = if dir { Opcode::Opendir } else { Opcode::Open };
        let r = self.call(op, node, &fuse::open_body(fuse::O_RDONLY), 16)?;
        fuse::parse_open(&r)
    }

    fn release_node(&mut self, node: u64, fh: u64, dir: bool) -> Result<(), FsError> {
        let op = if dir {
            Opcode::Releasedir
        } else {
            Opcode::Release
        };
        self.call(op, node, &fuse::release_body(fh), 0).map(|_| ())
    }

    /// Walks `path` from the root; returns the final node (one lookup
    /// reference held) and its attributes. Intermediate nodes are forgotten.
    fn walk(&mut self, path: &str) -> Result<(u64, Attr), FsError> {
        let parts = fuse::resolve_components(path)?;
        let mut node = ROOT_ID;
        let mut attr = None;
        for name in parts {
            let looked = self.lookup(node, name);
            self.forget(node, 1)?;
            let e = looked?;
            node = e.nodeid;
            attr = Some(e.attr);
        }
        let attr = match attr {
            Some(a) => a,
            None => self.getattr(ROOT_ID)?,
        };
        Ok((node, attr))
    }

    /// Opens a regular file for reading.
    pub fn open(&mut self, path: &str) -> Result<File, FsError> {
        let (node, attr) = self.walk(path)?;
        if !attr.is_file() {
            self.forget(node, 1)?;
            return Err(if attr.is_dir() {
                FsError::IsADirectory
            } else {
                FsError::InvalidArgument
            });
        }
        match self.open_node(node, false) {
            Ok(fh) => Ok(File {
                node,
                fh,
                size: attr.size,
            }),
            Err(e) => {
                self.forget(node, 1)?;
                Err(e)
            }
        }
    }

    /// Current size from the server (the file may have changed since open).
    pub fn size(&mut self, file: &mut File) -> Result<u64, FsError> {
        file.size = self.getattr(file.node)?.size;
        Ok(file.size)
    }

    pub fn close(&mut self, file: File) -> Result<(), FsError> {
        let released = self.release_node(file.node, file.fh, false);
        self.forget(file.node, 1)?;
        released
    }

    /// Reads up to `buf.len()` bytes at `offset`; fewer only at end of file.
    /// Requests go out in `max_read` chunks, as many in flight as the
    /// channel takes.
    pub fn read_at(&mut self, file: &File, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        if self.broken {
            return Err(FsError::Device("channel failed earlier"));
        }
        if offset.checked_add(buf.len() as u64).is_none() {
            return Err(FsError::InvalidArgument);
        }
        let chunk = self.max_read as usize;
        let chunks = buf.len().div_ceil(chunk);
        // in_flight[tag] = (chunk index, unique)
        let mut in_flight: Vec<(u16, usize, u64)> = Vec::new();
        // Bytes each chunk returned (None = not back yet).
        let mut got: Vec<Option<usize>> = vec![None; chunks];
        let mut next = 0usize;
        let mut first_error: Option<FsError> = None;
        while next < chunks || !in_flight.is_empty() {
            while first_error.is_none()
                && next < chunks
                && in_flight.len() < self.chan.capacity().max(1)
            {
                let start = next * chunk;
                let len = chunk.min(buf.len() - start);
                let unique = self.unique();
                let body = fuse::read_body(file.fh, offset + start as u64, len as u32);
                match self.chan.submit(
                    fuse::request(Opcode::Read, unique, file.node, &body),
                    fuse::OUT_HEADER_LEN + len,
                ) {
                    Ok(tag) => in_flight.push((tag, next, unique)),
                    Err(e) => {
                        first_error = Some(self.fail(e));
                        break;
                    }
                }
                next += 1;
            }
            if in_flight.is_empty() {
                break;
            }
            let (tag, reply) = match self.chan.complete() {
                Ok(c) => c,
                // The channel is gone; whatever is in flight stays lost.
                Err(e) => return Err(self.fail(e)),
            };
            let Some(pos) = in_flight.iter().position(|(t, _, _)| *t == tag) else {
                self.broken = true;
                return Err(FsError::Protocol("completion for a request not in flight"));
            };
            let (_, index, unique) = in_flight.swap_remove(pos);
            match fuse::reply_body(&reply, unique) {
                Ok(data) => {
                    let start = index * chunk;
                    let want = chunk.min(buf.len() - start);
                    if data.len() > want {
                        first_error
                            .get_or_insert(FsError::Protocol("READ returned more than asked"));
                        continue;
                    }
                    buf[start..start + data.len()].copy_from_slice(data);
                    got[index] = Some(data.len());
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        // Bytes up to the first short chunk count; a short chunk is EOF.
        let mut total = 0;
        for (i, g) in got.iter().enumerate() {
            let g = g.unwrap_or(0);
            total += g;
            if g < chunk.min(buf.len() - i * chunk) {
                break;
            }
        }
        Ok(total)
    }

    /// Reads exactly `buf.len()` bytes or fails with `UnexpectedEof`.
    pub fn read_exact_at(
        &mut self,
        file: &File,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), FsError> {
        let n = self.read_at(file, offset, buf)?;
        if n != buf.len() {
            return Err(FsError::UnexpectedEof {
                offset,
                wanted: buf.len() as u64,
                got: n as u64,
            });
        }
        Ok(())
    }

    /// Lists a directory of the share (without `.` and `..`).
    pub fn list(&mut self, path: &str) -> Result<Vec<ListEntry>, FsError> {
        let (node, attr) = self.walk(path)?;
        if !attr.is_dir() {
            self.forget(node, 1)?;
            return Err(FsError::NotADirectory);
        }
        let fh = match self.open_node(node, true) {
            Ok(fh) => fh,
            Err(e) => {
                self.forget(node, 1)?;
                return Err(e);
            }
        };
        let listed = self.read_dir(node, fh);
        let released = self.release_node(node, fh, true);
        self.forget(node, 1)?;
        let entries = listed?;
        released?;
        Ok(entries)
    }

    fn read_dir(&mut self, node: u64, fh: u64) -> Result<Vec<ListEntry>, FsError> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        loop {
            let body = fuse::read_body(fh, offset, DIR_READ_SIZE);
            let plus = self.readdirplus;
            let op = if plus {
                Opcode::Readdirplus
            } else {
                Opcode::Readdir
            };
            let reply = match self.call(op, node, &body, DIR_READ_SIZE as usize) {
                Err(FsError::NotSupported) if plus => {
                    self.readdirplus = false;
                    continue;
                }
                r => r?,
            };
            let entries = fuse::parse_dirents(&reply, plus)?;
            let Some(last) = entries.last() else { break };
            // Offsets must move forward, or a broken server loops us forever.
            if last.next_offset <= offset || out.len() > MAX_DIR_ENTRIES {
                return Err(FsError::Protocol("directory offsets do not advance"));
            }
            offset = last.next_offset;
            for DirEntry {
                name, kind, entry, ..
            } in entries
            {
                let dots = name == "." || name == "..";
                // READDIRPLUS entries carry a lookup reference, except the
                // dot entries (as in Linux fuse_direntplus_link).
                if let Some(e) = entry {
                    if !dots && e.nodeid != 0 {
                        self.forget(e.nodeid, 1)?;
                    }
                }
                if dots {
                    continue;
                }
                out.push(ListEntry {
                    is_dir: entry.map_or(kind == fuse::DT_DIR, |e| {
                        e.attr.is_dir() || kind == fuse::DT_DIR
                    }),
                    size: entry.filter(|e| e.nodeid != 0).map(|e| e.attr.size),
                    name,
                });
            }
        }
        Ok(out)
    }
}

/// Queue sizes: the request queue keeps 2 descriptors per request (request
/// and reply buffer), so 64 entries give 32 requests in flight.
pub const REQUEST_QUEUE_SIZE: usize = 64;
const HIPRIO_QUEUE_SIZE: usize = 16;
const HIPRIO_QUEUE: u16 = 0;
const REQUEST_QUEUE: u16 = 1;

/// The virtio-fs device's channel: hiprio queue + the first request queue,
/// polled. Request and reply buffers live in the (identity-mapped) heap and
/// stay in `slots` until the device has returned them.
pub struct VirtioFsChannel<H: Hal, T: VirtioTransport> {
    transport: T,
    hiprio: VirtQueue<H, HIPRIO_QUEUE_SIZE>,
    requests: VirtQueue<H, REQUEST_QUEUE_SIZE>,
    slots: Vec<Option<(Vec<u8>, Vec<u8>)>>,
    hiprio_slots: Vec<Option<Vec<u8>>>,
    tag: String,
    clock: Clock,
}

/// virtio-fs config space: tag[36], num_request_queues u32.
const CONFIG_TAG_LEN: usize = 36;

impl<H: Hal, T: VirtioTransport> VirtioFsChannel<H, T> {
    pub fn new(mut transport: T, clock: Clock) -> Result<Self, FsError> {
        if transport.device_id() != DEVICE_ID_FS {
            return Err(FsError::Device("not a virtio-fs device"));
        }
        negotiate_features(&mut transport, 0)
            .map_err(|_| FsError::Device("feature negotiation failed"))?;
        let mut tag_bytes = [0u8; CONFIG_TAG_LEN];
        for (i, b) in tag_bytes.iter_mut().enumerate() {
            *b = transport
                .read_config_space::<u8>(i)
                .map_err(|_| FsError::Device("config space"))?;
        }
        let end = tag_bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(CONFIG_TAG_LEN);
        let tag = String::from_utf8_lossy(&tag_bytes[..end]).into_owned();
        let hiprio = VirtQueue::new(&mut transport, HIPRIO_QUEUE, false, false)
            .map_err(|_| FsError::Device("hiprio queue setup"))?;
        let requests = VirtQueue::new(&mut transport, REQUEST_QUEUE, false, false)
            .map_err(|_| FsError::Device("request queue setup"))?;
        transport.finish_init();
        Ok(Self {
            transport,
            hiprio,
            requests,
            slots: (0..REQUEST_QUEUE_SIZE).map(|_| None).collect(),
            hiprio_slots: (0..HIPRIO_QUEUE_SIZE).map(|_| None).collect(),
            tag,
            clock,
        })
    }

    /// The mount tag QEMU was given (`tag=`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    fn reap_hiprio(&mut self) {
        while let Some(token) = self.hiprio.peek_used() {
            let Some(req) = self
                .hiprio_slots
                .get_mut(token as usize)
                .and_then(Option::take)
            else {
                return;
            };
            // SAFETY: `req` is the buffer added with this token.
            let _ = unsafe { self.hiprio.pop_used(token, &[&req], &mut []) };
        }
    }

    fn check_device(&self) -> Result<(), FsError> {
        if self
            .transport
            .get_status()
            .contains(DeviceStatus::DEVICE_NEEDS_RESET)
        {
            return Err(FsError::Device("device needs reset"));
        }
        Ok(())
    }
}

impl<H: Hal, T: VirtioTransport> Drop for VirtioFsChannel<H, T> {
    fn drop(&mut self) {
        // Reset first: after a timeout the device may still own buffers in
        // `slots`; a reset makes it let go before they are freed.
        self.transport.set_status(DeviceStatus::empty());
    }
}

impl<H: Hal, T: VirtioTransport> FuseChannel for VirtioFsChannel<H, T> {
    fn capacity(&self) -> usize {
        REQUEST_QUEUE_SIZE / 2
    }

    fn submit(&mut self, request: Vec<u8>, reply_len: usize) -> Result<u16, FsError> {
        let mut reply = vec![0u8; reply_len.max(fuse::OUT_HEADER_LEN)];
        // SAFETY: both buffers move into `slots[token]` below (a Vec's heap
        // block does not move) and stay untouched until `pop_used`.
        let token = unsafe { self.requests.add(&[&request], &mut [&mut reply]) }
            .map_err(|_| FsError::Device("request queue full"))?;
        let slot = self
            .slots
            .get_mut(token as usize)
            .ok_or(FsError::Device("bad token"))?;
        *slot = Some((request, reply));
        if self.requests.should_notify() {
            self.transport.notify(REQUEST_QUEUE);
        }
        Ok(token)
    }

    fn submit_no_reply(&mut self, request: Vec<u8>) -> Result<(), FsError> {
        self.reap_hiprio();
        // SAFETY: as in `submit`.
        let token = match unsafe { self.hiprio.add(&[&request], &mut []) } {
            Ok(t) => t,
            // FORGET is advisory; with the queue full it is dropped (the
            // server keeps an inode a little longer).
            Err(_) => return Ok(()),
        };
        if let Some(slot) = self.hiprio_slots.get_mut(token as usize) {
            *slot = Some(request);
        }
        if self.hiprio.should_notify() {
            self.transport.notify(HIPRIO_QUEUE);
        }
        Ok(())
    }

    fn complete(&mut self) -> Result<(u16, Vec<u8>), FsError> {
        let start = self.clock.now();
        let mut spins = 0u32;
        loop {
            if let Some(token) = self.requests.peek_used() {
                let (req, mut reply) = self
                    .slots
                    .get_mut(token as usize)
                    .and_then(Option::take)
                    .ok_or(FsError::Device("device completed an unknown buffer"))?;
                // SAFETY: these are the buffers added with `token`.
                let len = unsafe { self.requests.pop_used(token, &[&req], &mut [&mut reply]) }
                    .map_err(|_| FsError::Device("pop_used"))?;
                reply.truncate(len as usize);
                return Ok((token, reply));
            }
            self.reap_hiprio();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                self.check_device()?;
                if self.clock.expired(start) {
                    return Err(FsError::Timeout);
                }
            }
            self.clock.idle();
        }
    }
}

#[cfg(test)]
mod tests;
