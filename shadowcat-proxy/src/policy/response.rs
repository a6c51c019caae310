//! The `403` response for a message the policy denied.

use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use shadowcat_core::{JsonRpcId, error_codes, error_response};

use super::engine::PolicyDecision;

/// JSON-RPC error message of a policy denial. The rule and its reason stay in the
/// audit log.
const FORBIDDEN_MESSAGE: &str = "forbidden: the request is not allowed by policy";

/// Builds the JSON-RPC error object for a denied message with request `id`.
///
/// When a scope would help, `data.required_scope` names it. Use this to assemble the
/// errors of a batch.
pub fn forbidden_error(decision: &PolicyDecision, id: Option<&JsonRpcId>) -> serde_json::Value {
    let data = decision
        .missing_scope
        .as_ref()
        .map(|scope| serde_json::json!({ "required_scope": &**scope }));
    error_response(id, error_codes::FORBIDDEN, FORBIDDEN_MESSAGE, data)
}

/// Builds the `WWW-Authenticate` value for a denial that a scope would fix:
/// `Bearer error="insufficient_scope", scope="..."` (RFC 6750 section 3.1).
pub fn insufficient_scope_challenge(decision: &PolicyDecision) -> Option<HeaderValue> {
    let scope = decision.missing_scope.as_ref()?;
    // Scopes were checked at load time to hold no quotes or backslashes.
    HeaderValue::from_str(&format!(
        "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
    ))
    .ok()
}

/// Builds the full `403` response for a single denied message with request `id`:
/// `WWW-Authenticate` when a scope would help, and a JSON-RPC error body.
pub fn forbidden_response(decision: &PolicyDecision, id: Option<&JsonRpcId>) -> Response<Vec<u8>> {
    let body = serde_json::to_vec(&forbidden_error(decision, id)).unwrap_or_default();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::FORBIDDEN;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(challenge) = insufficient_scope_challenge(decision) {
        headers.insert(WWW_AUTHENTICATE, challenge);
    }
    response
}
