//! MCP protocol revisions and what each one allows.
//!
//! "Legacy" revisions (2024-11-05 … 2025-11-25) negotiate once per connection through
//! `initialize`. The "modern" revision 2026-07-28 is stateless: every request names its
//! revision in `params._meta["io.modelcontextprotocol/protocolVersion"]`.

/// A protocol revision, ordered by date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    V2024_11_05,
    V2025_03_26,
    V2025_06_18,
    V2025_11_25,
    V2026_07_28,
}

/// Revisions reachable through `initialize`, oldest first.
pub const LEGACY_VERSIONS: [ProtocolVersion; 4] = [
    ProtocolVersion::V2024_11_05,
    ProtocolVersion::V2025_03_26,
    ProtocolVersion::V2025_06_18,
    ProtocolVersion::V2025_11_25,
];

/// Revisions accepted in a per-request `_meta` (stateless style).
pub const MODERN_VERSIONS: [ProtocolVersion; 1] = [ProtocolVersion::V2026_07_28];

/// What `initialize` answers when the client asks for a revision we do not speak.
pub const LATEST_LEGACY: ProtocolVersion = ProtocolVersion::V2025_11_25;

/// `_meta` key carrying the per-request revision (2026-07-28).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying the client's capabilities (2026-07-28, required).
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key carrying the client's name and version (2026-07-28, optional).
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";

impl ProtocolVersion {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "2024-11-05" => Self::V2024_11_05,
            "2025-03-26" => Self::V2025_03_26,
            "2025-06-18" => Self::V2025_06_18,
            "2025-11-25" => Self::V2025_11_25,
            "2026-07-28" => Self::V2026_07_28,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2024_11_05 => "2024-11-05",
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
            Self::V2026_07_28 => "2026-07-28",
        }
    }

    /// The stateless per-request style (no `initialize`).
    pub fn is_modern(self) -> bool {
        self >= Self::V2026_07_28
    }

    /// JSON-RPC batch arrays: added in 2025-03-26, removed again in 2025-06-18.
    pub fn allows_batch(self) -> bool {
        self == Self::V2025_03_26
    }

    /// Tool `title`, `outputSchema` and `structuredContent` exist from 2025-06-18 on.
    pub fn has_structured_tools(self) -> bool {
        self >= Self::V2025_06_18
    }

    /// From 2025-11-25 (SEP-1303) argument validation failures are tool execution errors
    /// (`isError: true`) so that the model can read and correct them; before, -32602.
    pub fn validation_errors_are_results(self) -> bool {
        self >= Self::V2025_11_25
    }

    /// `logging/setLevel`, `ping` and `notifications/message` were removed in 2026-07-28.
    pub fn has_logging_and_ping(self) -> bool {
        !self.is_modern()
    }

    /// Version negotiation for `initialize`: echo a supported requested legacy revision,
    /// otherwise offer our latest legacy revision.
    pub fn negotiate(requested: &str) -> Self {
        match Self::parse(requested) {
            Some(v) if !v.is_modern() => v,
            _ => LATEST_LEGACY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_echoes_supported_legacy_versions() {
        for v in LEGACY_VERSIONS {
            assert_eq!(ProtocolVersion::negotiate(v.as_str()), v);
        }
        assert_eq!(ProtocolVersion::negotiate("2023-01-01"), LATEST_LEGACY);
        assert_eq!(ProtocolVersion::negotiate("2026-07-28"), LATEST_LEGACY);
        assert_eq!(ProtocolVersion::negotiate(""), LATEST_LEGACY);
    }

    #[test]
    fn feature_gates() {
        assert!(ProtocolVersion::V2025_03_26.allows_batch());
        assert!(!ProtocolVersion::V2024_11_05.allows_batch());
        assert!(!ProtocolVersion::V2025_06_18.allows_batch());
        assert!(!ProtocolVersion::V2026_07_28.allows_batch());
        assert!(!ProtocolVersion::V2025_03_26.has_structured_tools());
        assert!(ProtocolVersion::V2025_06_18.has_structured_tools());
        assert!(ProtocolVersion::V2026_07_28.is_modern());
        for v in LEGACY_VERSIONS {
            assert_eq!(ProtocolVersion::parse(v.as_str()), Some(v));
        }
    }
}
