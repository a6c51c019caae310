//! Shared vocabulary for Shadowcat, the reverse proxy for the Model Context Protocol.
//!
//! This crate contains the types that cross crate lines so that the rate limiter, the audit
//! trail and the proxy speak the same words. It performs no I/O.
//!
//! - [`SessionId`] and [`RequestId`]: proxy-minted identifiers.
//! - [`Principal`]: who the caller is after authentication.
//! - [`ClientAddrResolver`]: the client address behind trusted proxies.
//! - [`JsonRpcBody`]: a parse-once view of an MCP POST body.
//! - [`mcp`]: protocol eras and the mirrored-header rules of the modern era.
//! - [`CallContext`]: everything a policy, limiter or audit record needs about one request.
//!
//! ```
//! use shadowcat_core::JsonRpcBody;
//!
//! let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#;
//! let parsed = JsonRpcBody::parse(body).unwrap();
//! let call = &parsed.messages()[0];
//! assert_eq!(call.method.as_deref(), Some("tools/call"));
//! assert_eq!(call.target.as_deref(), Some("echo"));
//! ```

mod client_addr;
mod context;
mod id;
mod jsonrpc;
pub mod mcp;
mod principal;

pub use client_addr::{ClientAddrResolver, normalize_ip};
pub use context::CallContext;
pub use id::{RequestId, SessionId, SessionIdError};
pub use jsonrpc::{
    JsonRpcBody, JsonRpcError, JsonRpcId, Message, MessageKind, error_codes, error_response,
};
pub use principal::{AuthMethod, Principal};
