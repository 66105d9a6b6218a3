//! The client against an in-memory FUSE server that completes requests out
//! of order, counts lookup references, and can misbehave on demand.

use super::*;
use crate::fuse::{tests_support::*, S_IFDIR, S_IFREG};
use std::collections::HashMap;

#[derive(Clone)]
enum Kind {
    Dir(Vec<(String, u64)>),
    File(Vec<u8>),
}

#[derive(Default)]
struct Faults {
    /// After this many READs the file shrinks to this length.
    shrink_after_reads: Option<(usize, usize)>,
    /// After this many completions the host is gone: `complete` times out.
    die_after_completions: Option<usize>,
    /// Every READ reply is cut to this many bytes (a broken header).
    cut_read_replies: Option<usize>,
    /// LOOKUPs fail with this errno.
    lookup_errno: Option<i32>,
    /// READDIR always answers from the start (offsets never advance).
    stuck_readdir: bool,
}

struct FakeServer {
    nodes: HashMap<u64, Kind>,
    lookups: HashMap<u64, i64>,
    open: HashMap<u64, u64>,
    next_fh: u64,
    pending: Vec<(u16, Vec<u8>)>,
    next_tag: u16,
    reads: usize,
    completions: usize,
    max_in_flight_seen: usize,
    faults: Faults,
    readdirplus: bool,
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl FakeServer {
    fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            1,
            Kind::Dir(vec![
                ("big.bin".into(), 2),
                ("sub".into(), 3),
                ("empty".into(), 5),
            ]),
        );
        nodes.insert(2, Kind::File(pseudo_random(3 * 1024 * 1024 + 123, 7)));
        nodes.insert(3, Kind::Dir(vec![("small.txt".into(), 4)]));
        nodes.insert(4, Kind::File(b"hello".to_vec()));
        nodes.insert(5, Kind::File(Vec::new()));
        Self {
            nodes,
            lookups: HashMap::new(),
            open: HashMap::new(),
            next_fh: 100,
            pending: Vec::new(),
            next_tag: 0,
            reads: 0,
            completions: 0,
            max_in_flight_seen: 0,
            faults: Faults::default(),
            readdirplus: true,
        }
    }

    fn attr(&self, node: u64) -> Vec<u8> {
        match &self.nodes[&node] {
            Kind::Dir(_) => attr_bytes(node, 4096, S_IFDIR | 0o755),
            Kind::File(d) => attr_bytes(node, d.len() as u64, S_IFREG | 0o644),
        }
    }

    fn entry(&self, node: u64) -> Vec<u8> {
        let mut e = vec![0u8; 40];
        e[0..8].copy_from_slice(&node.to_le_bytes());
        e.extend(self.attr(node));
        e
    }

    fn handle(&mut self, req: &[u8], reply_len: usize) -> Vec<u8> {
        let op = u32::from_le_bytes(req[4..8].try_into().unwrap());
        let unique = u64::from_le_bytes(req[8..16].try_into().unwrap());
        let node = u64::from_le_bytes(req[16..24].try_into().unwrap());
        let body = &req[40..];
        let (error, out): (i32, Vec<u8>) = match op {
            26 => {
                let mut b = vec![0u8; 64];
                b[0..4].copy_from_slice(&7u32.to_le_bytes());
                b[4..8].copy_from_slice(&38u32.to_le_bytes());
                let mut flags = fuse::FUSE_MAX_PAGES;
                if self.readdirplus {
                    flags |= fuse::FUSE_DO_READDIRPLUS;
                }
                b[12..16].copy_from_slice(&flags.to_le_bytes());
                b[24..28].copy_from_slice(&1u32.to_le_bytes()); // time_gran
                b[28..30].copy_from_slice(&64u16.to_le_bytes()); // 256 KiB
                (0, b)
            }
            1 => {
                let name = std::str::from_utf8(&body[..body.len() - 1]).unwrap();
                if let Some(e) = self.faults.lookup_errno {
                    (-e, vec![])
                } else {
                    match &self.nodes.get(&node) {
                        Some(Kind::Dir(children)) => match children.iter().find(|(n, _)| n == name)
                        {
                            Some(&(_, child)) if self.nodes.contains_key(&child) => {
                                *self.lookups.entry(child).or_default() += 1;
                                (0, self.entry(child))
                            }
                            _ => (-2, vec![]),
                        },
                        Some(Kind::File(_)) => (-20, vec![]),
                        None => (-116, vec![]),
                    }
                }
            }
            3 => {
                let mut b = vec![0u8; 16];
                b.extend(self.attr(node));
                (0, b)
            }
            14 | 27 => {
                let fh = self.next_fh;
                self.next_fh += 1;
                self.open.insert(fh, node);
                let mut b = fh.to_le_bytes().to_vec();
                b.extend([0u8; 8]);
                (0, b)
            }
            18 | 29 => {
                let fh = u64::from_le_bytes(body[0..8].try_into().unwrap());
                assert_eq!(
                    self.open.remove(&fh),
                    Some(node),
                    "release of a handle never opened"
                );
                (0, vec![])
            }
            15 => {
                self.reads += 1;
                if let Some((after, len)) = self.faults.shrink_after_reads {
                    if self.reads > after {
                        if let Some(Kind::File(d)) = self.nodes.get_mut(&node) {
                            d.truncate(len);
                        }
                    }
                }
                let offset = u64::from_le_bytes(body[8..16].try_into().unwrap()) as usize;
                let size = u32::from_le_bytes(body[16..20].try_into().unwrap()) as usize;
                match &self.nodes[&node] {
                    Kind::File(d) => {
                        let start = offset.min(d.len());
                        (0, d[start..(offset + size).min(d.len())].to_vec())
                    }
                    Kind::Dir(_) => (-21, vec![]),
                }
            }
            44 if !self.readdirplus => (-38, vec![]),
            28 | 44 => {
                let plus = op == 44;
                let mut offset = u64::from_le_bytes(body[8..16].try_into().unwrap()) as usize;
                if self.faults.stuck_readdir {
                    offset = 0;
                }
                let Kind::Dir(children) = self.nodes[&node].clone() else {
                    panic!()
                };
                let mut all = vec![(".".to_string(), node), ("..".to_string(), 1)];
                all.extend(children);
                let mut b = Vec::new();
                // Two entries per reply to exercise continuation offsets.
                for (i, (name, child)) in all.iter().enumerate().skip(offset).take(2) {
                    if plus {
                        if name != "." && name != ".." {
                            *self.lookups.entry(*child).or_default() += 1;
                        }
                        b.extend(self.entry(*child));
                    }
                    b.extend(child.to_le_bytes());
                    b.extend((i as u64 + 1).to_le_bytes());
                    b.extend((name.len() as u32).to_le_bytes());
                    let dt = if matches!(self.nodes[child], Kind::Dir(_)) {
                        4u32
                    } else {
                        8
                    };
                    b.extend(dt.to_le_bytes());
                    b.extend(name.as_bytes());
                    while b.len() % 8 != 0 {
                        b.push(0);
                    }
                }
                (0, b)
            }
            2 => {
                let n = u64::from_le_bytes(body[0..8].try_into().unwrap()) as i64;
                *self.lookups.entry(node).or_default() -= n;
                return vec![];
            }
            _ => (-38, vec![]),
        };
        let mut r = Vec::new();
        r.extend(((16 + out.len()) as u32).to_le_bytes());
        r.extend(error.to_le_bytes());
        r.extend(unique.to_le_bytes());
        r.extend(out);
        assert!(
            r.len() <= reply_len,
            "reply larger than the buffer the client gave"
        );
        if op == 15 {
            if let Some(cut) = self.faults.cut_read_replies {
                r.truncate(cut);
            }
        }
        r
    }

    fn live_lookups(&self) -> Vec<(u64, i64)> {
        let mut v: Vec<_> = self
            .lookups
            .iter()
            .filter(|(_, &n)| n != 0)
            .map(|(&k, &n)| (k, n))
            .collect();
        v.sort();
        v
    }
}

impl FuseChannel for FakeServer {
    fn capacity(&self) -> usize {
        4
    }
    fn submit(&mut self, request: Vec<u8>, reply_len: usize) -> Result<u16, FsError> {
        assert!(
            self.pending.len() < self.capacity(),
            "client exceeded the channel capacity"
        );
        let reply = self.handle(&request, reply_len);
        self.next_tag = self.next_tag.wrapping_add(1);
        self.pending.push((self.next_tag, reply));
        self.max_in_flight_seen = self.max_in_flight_seen.max(self.pending.len());
        Ok(self.next_tag)
    }
    fn submit_no_reply(&mut self, request: Vec<u8>) -> Result<(), FsError> {
        self.handle(&request, 0);
        Ok(())
    }
    fn complete(&mut self) -> Result<(u16, Vec<u8>), FsError> {
        if let Some(n) = self.faults.die_after_completions {
            if self.completions >= n {
                return Err(FsError::Timeout);
            }
        }
        self.completions += 1;
        // Newest first: completions arrive out of order.
        self.pending
            .pop()
            .ok_or(FsError::Device("nothing in flight"))
    }
}

fn client() -> FsClient<FakeServer> {
    FsClient::new(FakeServer::new()).unwrap()
}

#[test]
fn init_negotiates_read_size() {
    let c = client();
    assert_eq!(c.max_read(), 256 * 1024);
}

#[test]
fn reads_a_large_file_with_requests_in_flight_out_of_order() {
    let mut c = client();
    let f = c.open("/big.bin").unwrap();
    let expected = pseudo_random(3 * 1024 * 1024 + 123, 7);
    assert_eq!(f.size(), expected.len() as u64);
    let mut buf = vec![0u8; expected.len()];
    c.read_exact_at(&f, 0, &mut buf).unwrap();
    assert!(buf == expected);
    assert_eq!(c.chan.max_in_flight_seen, 4);
    // Unaligned window in the middle, and a read running past the end.
    let mut mid = vec![0u8; 700_001];
    c.read_exact_at(&f, 1_000_003, &mut mid).unwrap();
    assert!(mid[..] == expected[1_000_003..1_700_004]);
    let mut tail = vec![0u8; 1000];
    assert_eq!(
        c.read_at(&f, expected.len() as u64 - 10, &mut tail)
            .unwrap(),
        10
    );
    assert_eq!(
        c.read_at(&f, expected.len() as u64 + 5, &mut tail).unwrap(),
        0
    );
    c.close(f).unwrap();
    assert!(c.chan.open.is_empty());
    assert_eq!(
        c.chan.live_lookups(),
        vec![],
        "every lookup reference is forgotten"
    );
}

#[test]
fn lists_directories_with_continuation_and_forgets_entries() {
    let mut c = client();
    let mut l = c.list("/").unwrap();
    l.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = l
        .iter()
        .map(|e| (e.name.as_str(), e.is_dir, e.size))
        .collect();
    assert_eq!(
        names,
        vec![
            ("big.bin", false, Some(3 * 1024 * 1024 + 123)),
            ("empty", false, Some(0)),
            ("sub", true, Some(4096))
        ]
    );
    assert_eq!(c.list("sub").unwrap()[0].name, "small.txt");
    assert_eq!(c.chan.live_lookups(), vec![]);
    assert!(c.chan.open.is_empty());
}

#[test]
fn a_directory_that_never_ends_is_a_protocol_error() {
    let mut c = client();
    c.chan.faults.stuck_readdir = true;
    assert!(matches!(c.list("/"), Err(FsError::Protocol(_))));
    assert!(c.chan.open.is_empty(), "the directory handle is released");
    assert_eq!(c.chan.live_lookups(), vec![]);
}

#[test]
fn offsets_past_the_end_are_refused() {
    let mut c = client();
    let f = c.open("big.bin").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        c.read_at(&f, u64::MAX - 4, &mut buf),
        Err(FsError::InvalidArgument)
    );
}

#[test]
fn plain_readdir_when_the_server_has_no_readdirplus() {
    let mut server = FakeServer::new();
    server.readdirplus = false;
    let mut c = FsClient::new(server).unwrap();
    let l = c.list("/sub").unwrap();
    assert_eq!(
        l,
        vec![ListEntry {
            name: "small.txt".into(),
            is_dir: false,
            size: None
        }]
    );
}

#[test]
fn errors_are_typed_and_leave_no_references() {
    let mut c = client();
    assert_eq!(c.open("/missing").unwrap_err(), FsError::NotFound);
    assert_eq!(c.open("/sub").unwrap_err(), FsError::IsADirectory);
    assert_eq!(
        c.open("/sub/small.txt/x").unwrap_err(),
        FsError::NotADirectory
    );
    assert_eq!(c.list("/big.bin").unwrap_err(), FsError::NotADirectory);
    assert!(matches!(c.open("/../etc/passwd"), Err(FsError::BadPath(_))));
    assert!(matches!(c.open("sub/../big.bin"), Err(FsError::BadPath(_))));
    assert_eq!(c.chan.live_lookups(), vec![]);
    c.chan.faults.lookup_errno = Some(13);
    assert_eq!(c.open("/big.bin").unwrap_err(), FsError::PermissionDenied);
}

#[test]
fn a_file_that_shrinks_mid_read_is_a_short_read_not_a_panic() {
    let mut c = client();
    let f = c.open("big.bin").unwrap();
    c.chan.faults.shrink_after_reads = Some((2, 300_000));
    let mut buf = vec![0u8; 2 * 1024 * 1024];
    let err = c.read_exact_at(&f, 0, &mut buf).unwrap_err();
    assert!(
        matches!(err, FsError::UnexpectedEof { wanted, got, .. } if wanted == 2 * 1024 * 1024 && got < wanted),
        "{err:?}"
    );
    let mut f = f;
    assert_eq!(c.size(&mut f).unwrap(), 300_000);
    c.close(f).unwrap();
}

#[test]
fn a_truncated_reply_is_a_protocol_error() {
    let mut c = client();
    let f = c.open("big.bin").unwrap();
    c.chan.faults.cut_read_replies = Some(9);
    let mut buf = vec![0u8; 1024 * 1024];
    assert!(matches!(
        c.read_at(&f, 0, &mut buf),
        Err(FsError::Protocol(_))
    ));
    // The channel is still consistent: nothing left in flight.
    assert!(c.chan.pending.is_empty());
    c.chan.faults.cut_read_replies = None;
    assert_eq!(c.read_at(&f, 0, &mut buf[..5]).unwrap(), 5);
}

#[test]
fn a_vanished_host_times_out_and_the_client_stays_failed() {
    let mut c = client();
    let f = c.open("big.bin").unwrap();
    c.chan.faults.die_after_completions = Some(c.chan.completions + 2);
    let mut buf = vec![0u8; 2 * 1024 * 1024];
    assert_eq!(c.read_at(&f, 0, &mut buf).unwrap_err(), FsError::Timeout);
    assert!(matches!(c.open("sub/small.txt"), Err(FsError::Device(_))));
}

// ---- VirtioFsChannel on real split virtqueues ---------------------------

mod on_virtqueues {
    use super::*;
    use crate::hal::IdentityHal;
    use crate::virtio::fake_device::{read_chain, write_chain, Chain, Queue};
    use crate::virtio::{VirtioTransport, F_VERSION_1};
    use std::cell::RefCell;
    use std::rc::Rc;
    use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
    use virtio_drivers::Error as VirtioError;
    use zerocopy::{FromBytes, Immutable, IntoBytes};

    /// The device: FUSE requests go to the in-memory server; completions
    /// are held back until the driver polls, then returned newest first.
    struct FsDevice {
        queues: [Queue; 2],
        status: u32,
        server: FakeServer,
        held: Vec<(u16, Chain, Vec<u8>)>,
        max_held: usize,
        forgets: usize,
    }

    impl FsDevice {
        fn take_requests(&mut self) {
            for (head, chain) in self.queues[0].take_chains() {
                let req = read_chain(&chain);
                assert_eq!(
                    u32::from_le_bytes(req[4..8].try_into().unwrap()),
                    2,
                    "only FORGET on hiprio"
                );
                self.server.handle(&req, 0);
                self.forgets += 1;
                self.queues[0].push_used(head, 0);
            }
            for (head, chain) in self.queues[1].take_chains() {
                let req = read_chain(&chain);
                let room: u32 = chain.iter().filter(|c| c.2).map(|c| c.1).sum();
                let reply = self.server.handle(&req, room as usize);
                self.held.push((head, chain, reply));
            }
            self.max_held = self.max_held.max(self.held.len());
        }

        fn complete_held(&mut self) {
            while let Some((head, chain, reply)) = self.held.pop() {
                let n = write_chain(&chain, &reply);
                self.queues[1].push_used(head, n as u32);
            }
        }
    }

    struct FsTransport(Rc<RefCell<FsDevice>>);

    impl VirtioTransport for FsTransport {
        fn device_id(&self) -> u32 {
            crate::virtio::DEVICE_ID_FS
        }
    }

    impl Transport for FsTransport {
        fn device_type(&self) -> DeviceType {
            DeviceType::IoMemory
        }
        fn read_device_features(&mut self) -> u64 {
            F_VERSION_1
        }
        fn write_driver_features(&mut self, f: u64) {
            assert_eq!(f, F_VERSION_1);
        }
        fn max_queue_size(&mut self, _q: u16) -> u32 {
            128
        }
        fn notify(&mut self, _q: u16) {
            self.0.borrow_mut().take_requests();
        }
        fn get_status(&self) -> DeviceStatus {
            // The driver checks the status while it waits: a good moment to
            // finish the held requests (out of order).
            let mut d = self.0.borrow_mut();
            d.complete_held();
            DeviceStatus::from_bits_truncate(d.status)
        }
        fn set_status(&mut self, s: DeviceStatus) {
            self.0.borrow_mut().status = s.bits();
        }
        fn set_guest_page_size(&mut self, _s: u32) {}
        fn requires_legacy_layout(&self) -> bool {
            false
        }
        fn queue_set(&mut self, q: u16, size: u32, desc: u64, avail: u64, used: u64) {
            self.0.borrow_mut().queues[q as usize] = Queue::new(size, desc, avail, used);
        }
        fn queue_unset(&mut self, q: u16) {
            self.0.borrow_mut().queues[q as usize] = Queue::default();
        }
        fn queue_used(&mut self, q: u16) -> bool {
            self.0.borrow().queues[q as usize].size != 0
        }
        fn ack_interrupt(&mut self) -> InterruptStatus {
            InterruptStatus::empty()
        }
        fn read_config_generation(&self) -> u32 {
            0
        }
        fn read_config_space<T: FromBytes + IntoBytes>(
            &self,
            offset: usize,
        ) -> Result<T, VirtioError> {
            let mut cfg = [0u8; 40];
            cfg[..5].copy_from_slice(b"share");
            cfg[36..40].copy_from_slice(&1u32.to_le_bytes());
            T::read_from_bytes(&cfg[offset..offset + size_of::<T>()])
                .map_err(|_| VirtioError::InvalidParam)
        }
        fn write_config_space<T: IntoBytes + Immutable>(
            &mut self,
            _o: usize,
            _v: T,
        ) -> Result<(), VirtioError> {
            Err(VirtioError::Unsupported)
        }
    }

    fn now_ns() -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_nanos() as u64
    }

    fn noop() {}

    #[test]
    fn reads_through_virtqueues_with_out_of_order_completions() {
        crate::hal::tests::install_test_dma();
        let dev = Rc::new(RefCell::new(FsDevice {
            queues: Default::default(),
            status: 0,
            server: FakeServer::new(),
            held: Vec::new(),
            max_held: 0,
            forgets: 0,
        }));
        let clock = Clock {
            now_ns,
            idle: noop,
            timeout_ns: 5_000_000_000,
        };
        let channel =
            VirtioFsChannel::<IdentityHal, _>::new(FsTransport(dev.clone()), clock).unwrap();
        assert_eq!(channel.tag(), "share");
        let mut fs = FsClient::new(channel).unwrap();
        let f = fs.open("big.bin").unwrap();
        let mut buf = vec![0u8; f.size() as usize];
        fs.read_exact_at(&f, 0, &mut buf).unwrap();
        assert!(buf == pseudo_random(buf.len(), 7));
        fs.close(f).unwrap();
        assert_eq!(fs.list("sub").unwrap()[0].name, "small.txt");
        let d = dev.borrow();
        assert!(
            d.max_held >= 8,
            "READs were kept in flight together ({} seen)",
            d.max_held
        );
        assert!(d.forgets > 0);
        assert_eq!(d.server.live_lookups(), vec![]);
        assert!(d.held.is_empty());
    }

    #[test]
    fn a_silent_device_times_out() {
        crate::hal::tests::install_test_dma();
        let dev = Rc::new(RefCell::new(FsDevice {
            queues: Default::default(),
            status: 0,
            server: FakeServer::new(),
            held: Vec::new(),
            max_held: 0,
            forgets: 0,
        }));
        let clock = Clock {
            now_ns,
            idle: noop,
            timeout_ns: 50_000_000,
        };
        let mut channel =
            VirtioFsChannel::<IdentityHal, _>::new(FsTransport(dev.clone()), clock).unwrap();
        // The device takes the request and drops it: nothing ever completes.
        channel
            .submit(
                fuse::request(Opcode::Getattr, 9, 1, &fuse::getattr_body()),
                200,
            )
            .unwrap();
        dev.borrow_mut().held.clear();
        assert_eq!(channel.complete().unwrap_err(), FsError::Timeout);
    }
}
