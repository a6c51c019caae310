use serde::Deserialize;

use super::kind::EventKind;

/// One audit record as read back from a log line, for tools that display or filter the
/// log.
///
/// Parsing checks the shape only. Use [`verify`](crate::verify) to check the hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuditRecord {
    /// Schema version.
    pub v: u32,
    /// Position in the chain, starting at 1 and increasing by 1 per record.
    pub seq: u64,
    /// When the event happened: RFC 3339, UTC, microseconds.
    pub ts: String,
    /// The kind-specific payload, including the `kind` tag.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The request id, 16 hex digits.
    #[serde(default)]
    pub request_id: Option<String>,
    /// The proxy session id, 32 hex digits, or its hash when configured.
    #[serde(default)]
    pub session_id: Option<String>,
    /// The client address, or its hash when configured.
    #[serde(default)]
    pub client_ip: Option<String>,
    /// The authenticated subject, or its hash when configured.
    #[serde(default)]
    pub subject: Option<String>,
    /// The previous record's hash, hex.
    pub prev: String,
    /// This record's hash, hex.
    pub hash: String,
}

impl AuditRecord {
    /// Parses one log line (with or without its trailing newline).
    ///
    /// # Errors
    ///
    /// Returns the JSON error when the line is not a record of a known kind.
    pub fn parse(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line.trim_end_matches('\n'))
    }
}
