//! What one client negotiated: the per-session protocol state.
//!
//! A session is not tied to a byte stream: the stream transport keeps one per connection,
//! an HTTP transport one per `Mcp-Session-Id`. Stateless (2026-07-28) requests carry their
//! revision themselves and use no session state.

use crate::logging::LogLevel;
use crate::version::ProtocolVersion;

/// Per-session protocol state (legacy lifecycle).
#[derive(Debug, Default, Clone)]
pub struct Session {
    /// Set by a successful legacy `initialize`.
    pub(crate) legacy_version: Option<ProtocolVersion>,
    pub(crate) initialized_notified: bool,
    pub(crate) log_level: Option<LogLevel>,
}

impl Session {
    pub fn new() -> Self {
        Self::default()
    }

    /// The version negotiated by `initialize`, if any.
    pub fn legacy_version(&self) -> Option<ProtocolVersion> {
        self.legacy_version
    }

    /// True once the client sent `notifications/initialized`.
    pub fn initialized(&self) -> bool {
        self.initialized_notified
    }

    /// The level set through `logging/setLevel`.
    pub fn log_level(&self) -> Option<LogLevel> {
        self.log_level
    }

    /// The minimum level of `notifications/message` this session asked for: only legacy
    /// revisions have logging, and only once the client set a level.
    pub fn logging_level(&self) -> Option<LogLevel> {
        let has_logging = self
            .legacy_version
            .is_some_and(|v| v.has_logging_and_ping());
        self.log_level.filter(|_| has_logging)
    }

    /// Whether this session wants `notifications/message` at `level`.
    pub fn admits_log(&self, level: LogLevel) -> bool {
        self.logging_level().is_some_and(|min| level >= min)
    }
}
