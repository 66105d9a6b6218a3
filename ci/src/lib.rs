//! Host-side VM runner and integration tests.

pub mod daemons;
