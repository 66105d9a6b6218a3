//! MCP connections over the vsock stream server: [`mcp::Connection`] for one accepted
//! stream, [`mcp::Acceptor`] for the listening port. All share the one device driver.

use alloc::rc::Rc;
use core::cell::RefCell;

use drivers::hal::IdentityHal;
use drivers::virtio::AnyTransport;
use drivers::vsock::{ConnId, VsockError, VsockServer};
use mcp::{Acceptor, Connection, ConnectionClosed, ReadStatus};

pub type Server = VsockServer<IdentityHal, AnyTransport>;
pub type SharedServer = Rc<RefCell<Server>>;

pub struct VsockConnection {
    server: SharedServer,
    id: ConnId,
}

impl Connection for VsockConnection {
    fn try_read(&mut self, buf: &mut [u8]) -> ReadStatus {
        let mut s = self.server.borrow_mut();
        if let Err(e) = s.poll() {
            log::warn!("vsock: poll: {e}");
        }
        match s.recv(self.id, buf) {
            Ok(0) => ReadStatus::WouldBlock,
            Ok(n) => ReadStatus::Data(n),
            Err(VsockError::Closed) | Err(VsockError::Reset) => ReadStatus::Closed,
            Err(e) => {
                log::warn!("vsock: recv: {e}");
                ReadStatus::Closed
            }
        }
    }

    fn write_all(&mut self, data: &[u8]) -> Result<(), ConnectionClosed> {
        self.server
            .borrow_mut()
            .send_all(self.id, data)
            .map_err(|e| {
                log::info!("vsock: send to {:?}: {e}", self.id.peer);
                ConnectionClosed
            })
    }
}

impl Drop for VsockConnection {
    fn drop(&mut self) {
        log::debug!("vsock: connection from {:?} ends", self.id.peer);
        self.server.borrow_mut().close(self.id);
    }
}

pub struct VsockAcceptor(pub SharedServer);

impl Acceptor<VsockConnection> for VsockAcceptor {
    fn accept(&mut self) -> Option<VsockConnection> {
        let id = {
            let mut s = self.0.borrow_mut();
            if let Err(e) = s.poll() {
                log::warn!("vsock: poll: {e}");
            }
            s.next_accepted()?
        };
        log::info!("vsock: connection from {:?}", id.peer);
        Some(VsockConnection {
            server: self.0.clone(),
            id,
        })
    }
}
