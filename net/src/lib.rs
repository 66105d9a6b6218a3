//! The network side of microkernelia, portable and host-tested (no_std + alloc):
//!
//! - [`http`]: HTTP/1.1 requests in (httparse), responses out, with every limit a server
//!   on the open network needs.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod http;
