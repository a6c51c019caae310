use std::net::IpAddr;
use std::sync::Arc;

use crate::id::{RequestId, SessionId};
use crate::jsonrpc::Message;
use crate::mcp::Era;
use crate::principal::Principal;

/// Everything a policy, limiter or audit record needs to know about one HTTP request.
///
/// The proxy fills it in stage by stage: the request id and client address on accept,
/// the principal after authentication, the era, session and messages after parsing.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The proxy-assigned id of this HTTP request.
    pub request_id: RequestId,
    /// The client address, after trusted-proxy resolution.
    pub client_ip: IpAddr,
    /// The verified caller, once authentication has run.
    pub principal: Option<Arc<Principal>>,
    /// The proxy's session id (legacy era only).
    pub session_id: Option<SessionId>,
    /// The MCP era of the request, once the body has been classified.
    pub era: Option<Era>,
    /// The HTTP method, upper case (`POST`, `GET`, `DELETE`).
    pub http_method: &'static str,
    /// The normalized request path, such as `/mcp`.
    pub route: Arc<str>,
    /// The JSON-RPC messages of a POST body, in order; empty for GET and DELETE.
    pub messages: Arc<[Message]>,
}

impl CallContext {
    /// Builds the context of a request that has just been accepted.
    pub fn new(
        request_id: RequestId,
        client_ip: IpAddr,
        http_method: &'static str,
        route: Arc<str>,
    ) -> Self {
        Self {
            request_id,
            client_ip,
            principal: None,
            session_id: None,
            era: None,
            http_method,
            route,
            messages: Arc::from(Vec::new()),
        }
    }

    /// Returns the subject of the verified caller, if any.
    pub fn subject(&self) -> Option<&str> {
        self.principal
            .as_deref()
            .map(|principal| principal.subject.as_str())
    }
}
