//! The network side of microkernelia, portable and host-tested (no_std + alloc):
//!
//! - [`stack`]: smoltcp over a polled Ethernet card ([`stack::Nic`]): IPv4 by DHCP or a
//!   static address, ARP, and a fixed pool of listening TCP sockets.
//! - [`http`]: HTTP/1.1 requests in (httparse), responses out, with every limit a server
//!   on the open network needs.
//! - [`http_server`]: the two together: requests from every connection of the pool, and
//!   responses (whole or chunked) written back with bounded waits.
//! - [`mcp_http`]: MCP Streamable HTTP on that server: sessions, headers, routing of the
//!   `mcp` core's messages to JSON responses or SSE streams.
//! - [`conformance_tools`]: the tools the official MCP conformance suite calls by name
//!   (registered only with `conformance` on the kernel command line).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod conformance_tools;
pub mod http;
pub mod http_server;
pub mod mcp_http;
pub mod stack;
#[cfg(test)]
pub(crate) mod test_link;
