//! Test support: two [`Nic`]s joined by an in-memory Ethernet link, and a smoltcp
//! `Device` over a [`Nic`] for a client-side stack.

use crate::stack::{Nic, MAX_FRAME};
use smoltcp::phy::{DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

pub struct LinkNic {
    mac: [u8; 6],
    inbox: Queue,
    outbox: Queue,
    /// Frames sent so far.
    pub sent: usize,
}

/// Two ends of one link.
pub fn link() -> (LinkNic, LinkNic) {
    let ab: Queue = Default::default();
    let ba: Queue = Default::default();
    (
        LinkNic {
            mac: [2, 0, 0, 0, 0, 1],
            inbox: ba.clone(),
            outbox: ab.clone(),
            sent: 0,
        },
        LinkNic {
            mac: [2, 0, 0, 0, 0, 2],
            inbox: ab,
            outbox: ba,
            sent: 0,
        },
    )
}

impl Nic for LinkNic {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        let f = self.inbox.borrow_mut().pop_front()?;
        buf[..f.len()].copy_from_slice(&f);
        Some(f.len())
    }
    fn can_send(&mut self) -> bool {
        self.outbox.borrow().len() < 256
    }
    fn send(&mut self, frame: &[u8]) -> bool {
        assert!(frame.len() <= MAX_FRAME);
        self.sent += 1;
        self.outbox.borrow_mut().push_back(frame.to_vec());
        true
    }
}

/// A smoltcp device over a [`Nic`] (the client side of the tests).
pub struct Device<'a>(pub &'a mut LinkNic);

pub struct Rx(Vec<u8>);
pub struct Tx<'a>(&'a mut LinkNic);

impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.send(&buf);
        r
    }
}

impl smoltcp::phy::Device for Device<'_> {
    type RxToken<'a>
        = Rx
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a>
    where
        Self: 'a;
    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let f = self.0.inbox.borrow_mut().pop_front()?;
        Some((Rx(f), Tx(self.0)))
    }
    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(self.0))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = MAX_FRAME;
        c
    }
}
