//! The driver against a fake virtio-net device that reads and writes the real split
//! virtqueues in memory: frames the "host" injects arrive in order through recycled
//! buffers, frames the guest sends leave with a virtio-net header, and a device that
//! stops consuming fills the transmit queue without blocking the driver.

use super::*;
use crate::hal::IdentityHal;
use crate::virtio::fake_device::{read_chain, write_chain, Chain, Queue};
use crate::virtio::F_VERSION_1;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus};
use zerocopy::{FromBytes, Immutable, IntoBytes};

const HDR: usize = 12;
const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

#[derive(Default)]
struct Dev {
    queues: [Queue; 2],
    status: u32,
    features: u64,
    /// Frames for the guest, delivered when it has receive buffers.
    to_guest: VecDeque<Vec<u8>>,
    /// Frames the guest sent (header stripped).
    from_guest: Vec<Vec<u8>>,
    /// When false the device leaves transmit buffers unconsumed.
    consume_tx: bool,
    /// Receive buffers the device holds (popped, not yet used).
    rx_held: VecDeque<(u16, Chain)>,
}

impl Dev {
    fn pump(&mut self) {
        if self.status & DeviceStatus::DRIVER_OK.bits() == 0 {
            return;
        }
        if self.consume_tx {
            for (head, chain) in self.queues[1].take_chains() {
                let bytes = read_chain(&chain);
                assert!(bytes.len() >= HDR, "no virtio-net header");
                assert!(bytes[..HDR].iter().all(|&b| b == 0), "plain header");
                self.from_guest.push(bytes[HDR..].to_vec());
                self.queues[1].push_used(head, 0);
            }
        }
        let chains = self.queues[0].take_chains();
        self.rx_held.extend(chains);
        while !self.to_guest.is_empty() && !self.rx_held.is_empty() {
            let (head, chain) = self.rx_held.pop_front().unwrap();
            let frame = self.to_guest.pop_front().unwrap();
            let mut pkt = vec![0u8; HDR];
            pkt.extend_from_slice(&frame);
            let n = write_chain(&chain, &pkt);
            self.queues[0].push_used(head, n as u32);
        }
    }
}

struct FakeTransport(Rc<RefCell<Dev>>);

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::Network
    }
    fn read_device_features(&mut self) -> u64 {
        F_VERSION_1 | 1 << 5 // MAC
    }
    fn write_driver_features(&mut self, f: u64) {
        self.0.borrow_mut().features = f;
    }
    fn max_queue_size(&mut self, _q: u16) -> u32 {
        256
    }
    fn notify(&mut self, _q: u16) {
        self.0.borrow_mut().pump();
    }
    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.0.borrow().status)
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
    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, VirtioError> {
        // struct virtio_net_config: mac[6], status u16 (link up).
        let cfg = [MAC[0], MAC[1], MAC[2], MAC[3], MAC[4], MAC[5], 1, 0];
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

impl VirtioTransport for FakeTransport {
    fn device_id(&self) -> u32 {
        DEVICE_ID_NET
    }
}

fn setup() -> (NetDevice<IdentityHal, FakeTransport>, Rc<RefCell<Dev>>) {
    crate::hal::tests::install_test_dma();
    let dev = Rc::new(RefCell::new(Dev {
        consume_tx: true,
        ..Default::default()
    }));
    let net = NetDevice::<IdentityHal, _>::new(FakeTransport(dev.clone())).unwrap();
    (net, dev)
}

fn frame(n: usize, tag: u8) -> Vec<u8> {
    (0..n).map(|i| tag.wrapping_add(i as u8)).collect()
}

#[test]
fn negotiates_a_modern_device_and_reads_the_mac() {
    let (net, dev) = setup();
    assert_eq!(net.mac(), MAC);
    let f = dev.borrow().features;
    assert_ne!(f & F_VERSION_1, 0);
    assert_eq!(f & (1 << 29), 0, "no EVENT_IDX");
    assert!(dev.borrow().status & DeviceStatus::DRIVER_OK.bits() != 0);
}

#[test]
fn frames_arrive_in_order_through_recycled_buffers() {
    let (mut net, dev) = setup();
    let mut out = vec![0u8; MAX_FRAME];
    // Three queues' worth: every buffer is reused twice.
    for round in 0..3 {
        let frames: Vec<Vec<u8>> = (0..QUEUE_SIZE)
            .map(|i| frame(60 + (i * 23) % 1455, (round * 64 + i) as u8))
            .collect();
        {
            let mut d = dev.borrow_mut();
            d.to_guest.extend(frames.iter().cloned());
            d.pump();
        }
        for f in &frames {
            let n = net.recv(&mut out).expect("a frame");
            assert_eq!(&out[..n], &f[..]);
        }
        assert_eq!(net.recv(&mut out), None);
        dev.borrow_mut().pump();
    }
    assert_eq!(net.stats().received, 3 * QUEUE_SIZE as u64);
}

#[test]
fn a_frame_larger_than_the_callers_buffer_is_dropped_not_truncated() {
    let (mut net, dev) = setup();
    {
        let mut d = dev.borrow_mut();
        d.to_guest.push_back(frame(1000, 1));
        d.to_guest.push_back(frame(100, 2));
        d.pump();
    }
    let mut small = vec![0u8; 500];
    assert_eq!(
        net.recv(&mut small),
        Some(100),
        "the next frame is reported"
    );
    assert_eq!(small[..100], frame(100, 2)[..]);
    assert_eq!(net.stats().rx_dropped, 1);
}

#[test]
fn sends_do_not_block_and_a_full_queue_refuses() {
    let (mut net, dev) = setup();
    assert!(net.send(&frame(1514, 7)));
    assert!(net.send(&frame(60, 8)));
    assert_eq!(dev.borrow().from_guest, vec![frame(1514, 7), frame(60, 8)]);
    assert!(!net.send(&frame(1515, 0)), "over the MTU");

    dev.borrow_mut().consume_tx = false;
    let mut queued = 0;
    while net.send(&frame(100, queued as u8)) {
        queued += 1;
        assert!(queued <= QUEUE_SIZE, "the queue never fills");
    }
    assert!(queued >= QUEUE_SIZE - 1, "{queued}");
    assert!(!net.can_send());
    // The device catches up: everything queued leaves, in order, and sending resumes.
    dev.borrow_mut().consume_tx = true;
    dev.borrow_mut().pump();
    assert!(net.can_send());
    let sent = dev.borrow().from_guest.len();
    assert_eq!(sent, 2 + queued);
    assert_eq!(
        dev.borrow().from_guest[2 + queued - 1],
        frame(100, (queued - 1) as u8)
    );
    assert!(net.send(&frame(70, 9)));
}
