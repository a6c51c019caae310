//! MCP protocol eras and the mirrored-header rules of the modern era.
//!
//! Modern clients (2026-07-28 and later) are stateless and mirror parts of the body into
//! HTTP headers so intermediaries can route without parsing JSON: `MCP-Protocol-Version`,
//! `Mcp-Method`, and `Mcp-Name` for calls that target a tool, prompt or resource. A header
//! value that cannot travel as plain visible ASCII is sent as `=?base64?<base64>?=`.
//! Legacy clients (2025-03-26 to 2025-11-25) use `initialize` and `Mcp-Session-Id`.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::jsonrpc::{Message, MessageKind};

/// `MCP-Protocol-Version` request header.
pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// `Mcp-Method` request header (modern era).
pub const HEADER_METHOD: &str = "mcp-method";
/// `Mcp-Name` request header (modern era).
pub const HEADER_NAME: &str = "mcp-name";
/// Prefix of the `Mcp-Param-*` request headers (modern era), forwarded untouched.
pub const HEADER_PARAM_PREFIX: &str = "mcp-param-";
/// `Mcp-Session-Id` header (legacy era).
pub const HEADER_SESSION_ID: &str = "mcp-session-id";
/// `Last-Event-ID` header for resuming an SSE stream.
pub const HEADER_LAST_EVENT_ID: &str = "last-event-id";

/// Modern protocol versions this proxy serves, oldest first.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
/// Legacy protocol versions this proxy serves, oldest first.
pub const LEGACY_VERSIONS: &[&str] = &["2025-03-26", "2025-06-18", "2025-11-25"];
/// The only legacy version that allows JSON-RPC batches.
pub const BATCH_VERSION: &str = "2025-03-26";
/// The version a legacy client is assumed to speak when it sends no version header.
pub const DEFAULT_LEGACY_VERSION: &str = "2025-03-26";

const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";

/// The two generations of MCP over Streamable HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Era {
    /// 2026-07-28 and later: stateless, mirrored headers, no `initialize`.
    Modern,
    /// 2025-03-26 to 2025-11-25: sessions, `initialize`, GET streams, DELETE.
    Legacy,
}

impl Era {
    /// Returns the era's name as written in logs and audit records.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Modern => "modern",
            Self::Legacy => "legacy",
        }
    }
}

/// Returns the era of a protocol version this proxy supports, or `None` for any other
/// version.
pub fn era_of(version: &str) -> Option<Era> {
    if MODERN_VERSIONS.contains(&version) {
        Some(Era::Modern)
    } else if LEGACY_VERSIONS.contains(&version) {
        Some(Era::Legacy)
    } else {
        None
    }
}

/// Returns every supported version, oldest first, for `-32022` error data.
pub fn supported_versions() -> impl Iterator<Item = &'static str> {
    LEGACY_VERSIONS.iter().chain(MODERN_VERSIONS).copied()
}

/// One request header, reduced to what the validator needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderField<'a> {
    /// The header is absent.
    Missing,
    /// The header appears exactly once with a visible-ASCII value.
    Value(&'a str),
    /// The header appears more than once or its value is not visible ASCII.
    Invalid,
}

impl<'a> HeaderField<'a> {
    /// Builds a field from every value of one header, in order.
    pub fn from_values(mut values: impl Iterator<Item = &'a [u8]>) -> Self {
        let Some(first) = values.next() else {
            return Self::Missing;
        };
        if values.next().is_some() {
            return Self::Invalid;
        }
        match std::str::from_utf8(first) {
            Ok(text)
                if text
                    .bytes()
                    .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) =>
            {
                Self::Value(text.trim_matches([' ', '\t']))
            }
            _ => Self::Invalid,
        }
    }
}

/// The error returned when a modern request's headers are rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A mirrored header is missing, duplicated or disagrees with the body (`-32020`).
    #[error("{0}")]
    Mismatch(&'static str),
    /// The requested version is not one this proxy serves (`-32022`).
    #[error("unsupported protocol version")]
    UnsupportedVersion {
        /// The version the client asked for, as sent.
        requested: String,
    },
}

/// Decodes a mirrored header value, unwrapping the `=?base64?...?=` form.
///
/// Returns `None` when the sentinel wraps invalid Base64 or invalid UTF-8.
pub fn decode_header_value(raw: &str) -> Option<Cow<'_, str>> {
    match raw
        .strip_prefix(BASE64_PREFIX)
        .and_then(|inner| inner.strip_suffix(BASE64_SUFFIX))
    {
        Some(inner) => {
            let bytes = STANDARD.decode(inner).ok()?;
            String::from_utf8(bytes).ok().map(Cow::Owned)
        }
        None => Some(Cow::Borrowed(raw)),
    }
}

/// Decides the era of a POST whose body has already been parsed.
///
/// `initialize` is always legacy. Otherwise a message that carries the modern
/// `_meta` protocol version, or a header naming a modern version, is modern, and
/// everything else is legacy.
pub fn classify(version_header: HeaderField<'_>, messages: &[Message]) -> Era {
    if messages
        .iter()
        .any(|message| message.is_method("initialize"))
    {
        return Era::Legacy;
    }
    if messages
        .iter()
        .any(|message| message.protocol_version.is_some())
    {
        return Era::Modern;
    }
    match version_header {
        HeaderField::Value(version) if version >= MODERN_VERSIONS[0] => Era::Modern,
        _ => Era::Legacy,
    }
}

/// Validates a modern request's mirrored headers against its single message.
///
/// Checks, in order: the version header is present once and supported, the body's
/// `_meta` version (if any) equals it, `Mcp-Method` equals the body method, and for
/// calls with a target, `Mcp-Name` (decoded) equals the target.
///
/// # Errors
///
/// Returns [`HeaderError::UnsupportedVersion`] for a version this proxy does not serve
/// and [`HeaderError::Mismatch`] for every other disagreement.
pub fn validate_modern(
    version: HeaderField<'_>,
    method: HeaderField<'_>,
    name: HeaderField<'_>,
    message: &Message,
) -> Result<(), HeaderError> {
    let header_version = match version {
        HeaderField::Value(value) => value,
        HeaderField::Missing => {
            return Err(HeaderError::Mismatch("missing MCP-Protocol-Version header"));
        }
        HeaderField::Invalid => {
            return Err(HeaderError::Mismatch(
                "MCP-Protocol-Version header is repeated or not visible ASCII",
            ));
        }
    };
    if era_of(header_version) != Some(Era::Modern) {
        return Err(HeaderError::UnsupportedVersion {
            requested: header_version.to_owned(),
        });
    }
    if let Some(body_version) = &message.protocol_version
        && body_version != header_version
    {
        return Err(HeaderError::Mismatch(
            "MCP-Protocol-Version header does not match the body's _meta protocol version",
        ));
    }

    if message.kind == MessageKind::Response {
        return Ok(());
    }
    let body_method = message.method.as_deref().unwrap_or_default();
    match method {
        HeaderField::Missing => return Err(HeaderError::Mismatch("missing Mcp-Method header")),
        HeaderField::Invalid => {
            return Err(HeaderError::Mismatch(
                "Mcp-Method header is repeated or not visible ASCII",
            ));
        }
        HeaderField::Value(value) if value != body_method => {
            return Err(HeaderError::Mismatch(
                "Mcp-Method header does not match the body method",
            ));
        }
        HeaderField::Value(_) => {}
    }

    let Some(target) = message.target.as_deref() else {
        return match name {
            HeaderField::Missing => Ok(()),
            _ => Err(HeaderError::Mismatch(
                "Mcp-Name header sent for a method without a target",
            )),
        };
    };
    match name {
        HeaderField::Missing => Err(HeaderError::Mismatch("missing Mcp-Name header")),
        HeaderField::Invalid => Err(HeaderError::Mismatch(
            "Mcp-Name header is repeated or not visible ASCII",
        )),
        HeaderField::Value(raw) => match decode_header_value(raw) {
            None => Err(HeaderError::Mismatch("Mcp-Name header is not valid base64")),
            Some(decoded) if decoded != target => Err(HeaderError::Mismatch(
                "Mcp-Name header does not match the body",
            )),
            Some(_) => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JsonRpcBody;

    fn message(text: &str) -> Message {
        JsonRpcBody::parse(text.as_bytes()).unwrap().messages()[0].clone()
    }

    fn call(name: &str) -> Message {
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}
        });
        message(&body.to_string())
    }

    const V: HeaderField<'static> = HeaderField::Value("2026-07-28");
    const M: HeaderField<'static> = HeaderField::Value("tools/call");

    #[test]
    fn matching_headers_pass() {
        assert_eq!(
            validate_modern(V, M, HeaderField::Value("echo"), &call("echo")),
            Ok(())
        );
    }

    #[test]
    fn base64_name_is_decoded() {
        let encoded = format!("=?base64?{}?=", STANDARD.encode("naïve tool"));
        let name = HeaderField::Value(&encoded);
        assert_eq!(validate_modern(V, M, name, &call("naïve tool")), Ok(()));
    }

    #[test]
    fn bad_base64_name_is_mismatch() {
        let name = HeaderField::Value("=?base64?!!!?=");
        let error = validate_modern(V, M, name, &call("echo")).unwrap_err();
        assert!(matches!(error, HeaderError::Mismatch(_)));
    }

    #[test]
    fn each_mismatch_kind_is_rejected() {
        let echo = call("echo");
        let cases = [
            (HeaderField::Missing, M, HeaderField::Value("echo")),
            (HeaderField::Invalid, M, HeaderField::Value("echo")),
            (
                HeaderField::Value("2026-07-28"),
                HeaderField::Missing,
                HeaderField::Value("echo"),
            ),
            (
                V,
                HeaderField::Value("tools/list"),
                HeaderField::Value("echo"),
            ),
            (V, HeaderField::Invalid, HeaderField::Value("echo")),
            (V, M, HeaderField::Missing),
            (V, M, HeaderField::Value("add")),
            (V, M, HeaderField::Invalid),
        ];
        for (version, method, name) in cases {
            let error = validate_modern(version, method, name, &echo).unwrap_err();
            assert!(
                matches!(error, HeaderError::Mismatch(_)),
                "{version:?} {method:?} {name:?}"
            );
        }
    }

    #[test]
    fn body_version_must_match_header() {
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/list",
            "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2027-01-01"}}
        });
        let list = message(&body.to_string());
        let error = validate_modern(
            V,
            HeaderField::Value("tools/list"),
            HeaderField::Missing,
            &list,
        )
        .unwrap_err();
        assert!(matches!(error, HeaderError::Mismatch(_)));
    }

    #[test]
    fn unknown_version_is_unsupported() {
        let error = validate_modern(
            HeaderField::Value("2099-01-01"),
            M,
            HeaderField::Value("echo"),
            &call("echo"),
        )
        .unwrap_err();
        assert_eq!(
            error,
            HeaderError::UnsupportedVersion {
                requested: "2099-01-01".into()
            }
        );
    }

    #[test]
    fn name_without_target_is_rejected() {
        let list = message(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        let error = validate_modern(
            V,
            HeaderField::Value("tools/list"),
            HeaderField::Value("x"),
            &list,
        )
        .unwrap_err();
        assert!(matches!(error, HeaderError::Mismatch(_)));
    }

    #[test]
    fn classify_picks_era() {
        let init = message(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#,
        );
        assert_eq!(classify(V, std::slice::from_ref(&init)), Era::Legacy);
        assert_eq!(classify(HeaderField::Missing, &[call("x")]), Era::Modern);
        let list = message(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert_eq!(classify(V, std::slice::from_ref(&list)), Era::Modern);
        assert_eq!(
            classify(
                HeaderField::Value("2025-06-18"),
                std::slice::from_ref(&list)
            ),
            Era::Legacy
        );
        assert_eq!(classify(HeaderField::Missing, &[list]), Era::Legacy);
    }

    #[test]
    fn header_field_rejects_duplicates_and_controls() {
        let two: [&[u8]; 2] = [b"a", b"b"];
        assert_eq!(
            HeaderField::from_values(two.into_iter()),
            HeaderField::Invalid
        );
        let control: [&[u8]; 1] = [b"a\x01"];
        assert_eq!(
            HeaderField::from_values(control.into_iter()),
            HeaderField::Invalid
        );
        let padded: [&[u8]; 1] = [b" echo "];
        assert_eq!(
            HeaderField::from_values(padded.into_iter()),
            HeaderField::Value("echo")
        );
    }
}
