use std::fmt;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// JSON-RPC error codes used by Shadowcat's rejections.
///
/// The standard codes come from JSON-RPC 2.0, the two header codes from the MCP
/// 2026-07-28 transport, and the rest are Shadowcat's own in the implementation-defined
/// server error range (-32000 to -32099).
pub mod error_codes {
    /// The body is not valid JSON.
    pub const PARSE_ERROR: i32 = -32700;
    /// The body is JSON but not a valid JSON-RPC request.
    pub const INVALID_REQUEST: i32 = -32600;
    /// A mirrored `Mcp-*` header is missing or contradicts the body.
    pub const HEADER_MISMATCH: i32 = -32020;
    /// The requested MCP protocol version is not supported.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;
    /// A rate or concurrency limit rejected the request.
    pub const RATE_LIMITED: i32 = -32000;
    /// The session id is unknown or the session has ended.
    pub const SESSION_NOT_FOUND: i32 = -32001;
    /// The request lacks valid credentials.
    pub const UNAUTHORIZED: i32 = -32004;
    /// The request was understood and refused: policy, origin or host.
    pub const FORBIDDEN: i32 = -32003;
    /// The request body exceeds the configured limit.
    pub const PAYLOAD_TOO_LARGE: i32 = -32005;
    /// The upstream failed or returned an unusable response.
    pub const UPSTREAM_ERROR: i32 = -32010;
    /// The upstream did not respond in time.
    pub const UPSTREAM_TIMEOUT: i32 = -32011;
    /// No upstream is available to serve the request.
    pub const UPSTREAM_UNAVAILABLE: i32 = -32012;
    /// The audit trail cannot accept records, so the proxy fails closed.
    pub const AUDIT_UNAVAILABLE: i32 = -32013;
    /// The request combination is valid MCP but this proxy cannot serve it.
    pub const NOT_SUPPORTED: i32 = -32014;
}

/// A JSON-RPC request id: a number or a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JsonRpcId {
    /// A numeric id, kept as written.
    Number(serde_json::Number),
    /// A string id.
    String(String),
}

impl fmt::Display for JsonRpcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(number) => write!(f, "{number}"),
            Self::String(text) => write!(f, "{text:?}"),
        }
    }
}

/// The kind of a JSON-RPC message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A request: has a method and an id, and expects a response.
    Request,
    /// A notification: has a method and no id.
    Notification,
    /// A response to a server-initiated request: has an id and a result or error.
    Response,
}

/// One JSON-RPC message of a POST body, reduced to what the pipeline needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request, notification or response.
    pub kind: MessageKind,
    /// The id of a request or response.
    pub id: Option<JsonRpcId>,
    /// The method of a request or notification.
    pub method: Option<String>,
    /// The target of the call: `params.name` for `tools/call` and `prompts/get`,
    /// `params.uri` for `resources/read`, `resources/subscribe` and
    /// `resources/unsubscribe`.
    pub target: Option<String>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`, sent by modern clients
    /// on every request.
    pub protocol_version: Option<String>,
    /// `params.protocolVersion` of an `initialize` request.
    pub initialize_version: Option<String>,
}

impl Message {
    /// Returns true for a request or notification whose method is `method`.
    pub fn is_method(&self, method: &str) -> bool {
        self.method.as_deref() == Some(method)
    }
}

/// A parsed MCP POST body: one message or a batch.
///
/// The body is parsed once and never re-serialized: the proxy forwards the original bytes
/// and uses this view only to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonRpcBody {
    batch: bool,
    messages: Vec<Message>,
}

/// The error returned when a body is not an acceptable JSON-RPC payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonRpcError {
    /// The body is not JSON at all.
    #[error("invalid JSON: {0}")]
    Parse(String),
    /// The body is JSON but not a JSON-RPC message or batch.
    #[error("invalid JSON-RPC message: {reason}")]
    InvalidRequest {
        /// The id of the offending message, when it had a usable one.
        id: Option<JsonRpcId>,
        /// The problem, in a few words.
        reason: &'static str,
    },
}

impl JsonRpcError {
    /// Returns the JSON-RPC error code for this error.
    pub fn code(&self) -> i32 {
        match self {
            Self::Parse(_) => error_codes::PARSE_ERROR,
            Self::InvalidRequest { .. } => error_codes::INVALID_REQUEST,
        }
    }

    /// Returns the id of the offending message, when it had a usable one.
    pub fn id(&self) -> Option<&JsonRpcId> {
        match self {
            Self::Parse(_) => None,
            Self::InvalidRequest { id, .. } => id.as_ref(),
        }
    }
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present_raw")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(default)]
    result: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

/// Keeps an explicit `null` as a present value, so `"id": null` is distinguished from a
/// missing id.
fn present_raw<'de, D>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
struct RawParams<'a> {
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    uri: Option<&'a RawValue>,
    #[serde(rename = "protocolVersion", borrow, default)]
    protocol_version: Option<&'a RawValue>,
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawMeta<'a> {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow, default)]
    protocol_version: Option<&'a RawValue>,
}

impl JsonRpcBody {
    /// Parses a POST body into its messages.
    ///
    /// # Errors
    ///
    /// Returns [`JsonRpcError::Parse`] when the body is not JSON, and
    /// [`JsonRpcError::InvalidRequest`] when it is JSON but not a JSON-RPC message, a
    /// non-empty batch of them, or when a message lacks `"jsonrpc": "2.0"`, has a
    /// non-string method, or an id that is neither a string nor a number.
    pub fn parse(body: &[u8]) -> Result<Self, JsonRpcError> {
        let raw: &RawValue =
            serde_json::from_slice(body).map_err(|error| JsonRpcError::Parse(error.to_string()))?;
        let text = raw.get().trim_start();

        if text.starts_with('[') {
            let elements: Vec<&RawValue> = serde_json::from_str(text)
                .map_err(|error| JsonRpcError::Parse(error.to_string()))?;
            if elements.is_empty() {
                return Err(invalid(None, "empty batch"));
            }
            let messages = elements
                .into_iter()
                .map(parse_message)
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Self {
                batch: true,
                messages,
            });
        }

        let message = parse_message(raw)?;
        Ok(Self {
            batch: false,
            messages: vec![message],
        })
    }

    /// Returns true if the body was a JSON-RPC batch (an array), even of one message.
    pub fn is_batch(&self) -> bool {
        self.batch
    }

    /// Returns the messages in body order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Returns the ids of every request in the body, in order.
    pub fn request_ids(&self) -> impl Iterator<Item = &JsonRpcId> {
        self.messages
            .iter()
            .filter(|message| message.kind == MessageKind::Request)
            .filter_map(|message| message.id.as_ref())
    }

    /// Returns the first message's id, for error responses to single messages.
    pub fn first_id(&self) -> Option<&JsonRpcId> {
        self.messages
            .first()
            .and_then(|message| message.id.as_ref())
    }

    /// Returns true if every message is a notification or a response, so the upstream is
    /// expected to respond `202 Accepted` with no body.
    pub fn expects_no_response(&self) -> bool {
        self.messages
            .iter()
            .all(|message| message.kind != MessageKind::Request)
    }
}

/// Builds a JSON-RPC error response object.
///
/// `id` is `null` when the request's id is unknown, as JSON-RPC 2.0 requires for parse
/// errors.
pub fn error_response(
    id: Option<&JsonRpcId>,
    code: i32,
    message: &str,
    data: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut error = serde_json::json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": error })
}

fn invalid(id: Option<JsonRpcId>, reason: &'static str) -> JsonRpcError {
    JsonRpcError::InvalidRequest { id, reason }
}

fn parse_message(raw: &RawValue) -> Result<Message, JsonRpcError> {
    if !raw.get().trim_start().starts_with('{') {
        return Err(invalid(None, "message is not an object"));
    }
    let message: RawMessage<'_> = serde_json::from_str(raw.get())
        .map_err(|_| invalid(None, "message fields have the wrong types"))?;

    let id = match message.id {
        None => None,
        Some(raw_id) => match serde_json::from_str::<JsonRpcId>(raw_id.get()) {
            Ok(id) => Some(id),
            Err(_) => return Err(invalid(None, "id must be a string or a number")),
        },
    };

    if message.jsonrpc.and_then(raw_string).as_deref() != Some("2.0") {
        return Err(invalid(id, "jsonrpc must be \"2.0\""));
    }

    let Some(raw_method) = message.method else {
        let is_response = message.result.is_some() || message.error.is_some();
        if is_response && id.is_some() {
            return Ok(Message {
                kind: MessageKind::Response,
                id,
                method: None,
                target: None,
                protocol_version: None,
                initialize_version: None,
            });
        }
        return Err(invalid(id, "message has no method"));
    };
    let Some(method) = raw_string(raw_method) else {
        return Err(invalid(id, "method must be a string"));
    };

    let params = match message.params {
        None => None,
        Some(raw_params) if raw_params.get().trim_start().starts_with('{') => Some(
            serde_json::from_str::<RawParams<'_>>(raw_params.get())
                .map_err(|_| invalid(id.clone(), "params has the wrong shape"))?,
        ),
        Some(raw_params) if raw_params.get().trim() == "null" => None,
        Some(_) => return Err(invalid(id, "params must be an object")),
    };

    let target = params.as_ref().and_then(|params| {
        let field = match method.as_str() {
            "tools/call" | "prompts/get" => params.name,
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => params.uri,
            _ => None,
        };
        field.and_then(raw_string)
    });
    let protocol_version = params
        .as_ref()
        .and_then(|params| params.meta)
        .and_then(|meta| serde_json::from_str::<RawMeta<'_>>(meta.get()).ok())
        .and_then(|meta| meta.protocol_version)
        .and_then(raw_string);
    let initialize_version = (method == "initialize")
        .then(|| params.as_ref().and_then(|params| params.protocol_version))
        .flatten()
        .and_then(raw_string);

    Ok(Message {
        kind: if id.is_some() {
            MessageKind::Request
        } else {
            MessageKind::Notification
        },
        id,
        method: Some(method),
        target,
        protocol_version,
        initialize_version,
    })
}

/// Decodes a raw JSON value as a string, or returns `None` when it is not one.
fn raw_string(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(raw.get()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<JsonRpcBody, JsonRpcError> {
        JsonRpcBody::parse(text.as_bytes())
    }

    #[test]
    fn tool_call_names_its_target() {
        let body = parse(
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"add","arguments":{"a":1}}}"#,
        )
        .unwrap();
        let message = &body.messages()[0];
        assert_eq!(message.kind, MessageKind::Request);
        assert_eq!(message.id, Some(JsonRpcId::String("a".into())));
        assert_eq!(message.target.as_deref(), Some("add"));
        assert!(!body.is_batch());
    }

    #[test]
    fn resource_read_targets_uri() {
        let body = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#,
        )
        .unwrap();
        assert_eq!(body.messages()[0].target.as_deref(), Some("file:///a"));
    }

    #[test]
    fn modern_meta_version_is_read() {
        let body = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        )
        .unwrap();
        assert_eq!(
            body.messages()[0].protocol_version.as_deref(),
            Some("2026-07-28")
        );
    }

    #[test]
    fn batch_keeps_every_element() {
        let body = parse(
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":9,"result":{}}]"#,
        )
        .unwrap();
        assert!(body.is_batch());
        let kinds: Vec<_> = body.messages().iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                MessageKind::Request,
                MessageKind::Notification,
                MessageKind::Response
            ]
        );
        assert_eq!(body.request_ids().count(), 1);
    }

    #[test]
    fn escaped_names_are_decoded() {
        let body =
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\nb"}}"#)
                .unwrap();
        assert_eq!(body.messages()[0].target.as_deref(), Some("a\nb"));
    }

    #[test]
    fn malformed_json_is_parse_error() {
        let error = parse("{\"jsonrpc\":").unwrap_err();
        assert_eq!(error.code(), error_codes::PARSE_ERROR);
    }

    #[test]
    fn invalid_messages_are_invalid_request() {
        let cases = [
            "42",
            "[]",
            "[1]",
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":7}"#,
        ];
        for case in cases {
            let error = parse(case).unwrap_err();
            assert_eq!(error.code(), error_codes::INVALID_REQUEST, "{case}");
        }
    }

    #[test]
    fn invalid_request_keeps_usable_id() {
        let error = parse(r#"{"jsonrpc":"1.0","id":3,"method":"x"}"#).unwrap_err();
        assert_eq!(error.id(), Some(&JsonRpcId::Number(3.into())));
    }
}
