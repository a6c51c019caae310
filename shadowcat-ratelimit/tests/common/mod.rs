//! Builders shared by the integration tests.

#![allow(dead_code)]

use std::sync::Arc;

use serde_json::json;
use shadowcat_core::{AuthMethod, CallContext, JsonRpcBody, Principal, RequestId, SessionId};
use shadowcat_ratelimit::{FakeRelativeClock, MultiTierLimiter, RateLimitConfig};

pub(crate) type TestLimiter = MultiTierLimiter<FakeRelativeClock>;

/// Parses a `[ratelimit]` section written as JSON.
pub(crate) fn config(section: serde_json::Value) -> RateLimitConfig {
    serde_json::from_value(section).expect("valid ratelimit config")
}

/// Builds a limiter on a fake clock and returns both.
pub(crate) fn limiter(section: serde_json::Value) -> (TestLimiter, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    let limiter = MultiTierLimiter::with_clock(&config(section), clock.clone()).unwrap();
    (limiter, clock)
}

/// Builds a quota object: `requests` per `per`, `burst` at once.
pub(crate) fn quota(requests: u32, per: &str, burst: u32) -> serde_json::Value {
    json!({ "requests": requests, "per": per, "burst": burst })
}

/// Builds the context of a POST from `ip` with `body` (empty for a request without body).
pub(crate) fn ctx(ip: &str, body: &str) -> CallContext {
    let mut ctx = CallContext::new(
        RequestId::next(),
        ip.parse().unwrap(),
        "POST",
        Arc::from("/mcp"),
    );
    if !body.is_empty() {
        let parsed = JsonRpcBody::parse(body.as_bytes()).unwrap();
        ctx.messages = Arc::from(parsed.messages().to_vec());
    }
    ctx
}

/// Adds a verified JWT principal.
pub(crate) fn with_subject(mut ctx: CallContext, subject: &str) -> CallContext {
    ctx.principal = Some(Arc::new(jwt_principal(subject)));
    ctx
}

/// Adds a legacy session.
pub(crate) fn with_session(mut ctx: CallContext, session: SessionId) -> CallContext {
    ctx.session_id = Some(session);
    ctx
}

pub(crate) fn jwt_principal(subject: &str) -> Principal {
    Principal {
        subject: subject.to_owned(),
        issuer: Some("https://issuer.test".to_owned()),
        client_id: None,
        scopes: Vec::new(),
        method: AuthMethod::Jwt,
    }
}

/// Builds a `tools/call` request body.
pub(crate) fn tool_call(id: u64, name: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name}})
        .to_string()
}

/// Builds a request body for `method` with no params.
pub(crate) fn request(id: u64, method: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method}).to_string()
}

/// Builds a notification body.
pub(crate) fn notification(method: &str) -> String {
    json!({"jsonrpc": "2.0", "method": method}).to_string()
}

/// Joins bodies into a batch.
pub(crate) fn batch(parts: &[String]) -> String {
    format!("[{}]", parts.join(","))
}
