//! Rejections an MCP client can act on, and rate-limit headers for allowed responses.
//!
//! Headers follow the IETF httpapi draft "RateLimit header fields for HTTP"
//! (draft-ietf-httpapi-ratelimit-headers), in structured-field syntax:
//!
//! - `RateLimit-Policy: "ip";q=100;w=60`: the tier allows `q` requests per `w` seconds.
//! - `RateLimit: "ip";r=0;t=7`: `r` requests remain now. On an allowed response `t` is
//!   the seconds until the bucket is full again. On a rejection it is the seconds until
//!   the same request would pass, equal to `Retry-After`.

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde::Serialize;
use shadowcat_core::{JsonRpcId, Message, MessageKind, error_codes};

use crate::config::ResponseConfig;
use crate::decision::{Allowed, CostTooHigh, Limited, Policy, Tier, whole_secs_up};
use crate::error::RateLimitError;

/// The `RateLimit-Policy` response header.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` response header.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Builds rejection responses, choosing the status per client.
#[derive(Debug, Clone, Default)]
pub struct RejectionRenderer {
    ok_status_user_agents: Vec<String>,
}

impl RejectionRenderer {
    /// Builds a renderer from the `[ratelimit.response]` section.
    ///
    /// # Errors
    ///
    /// Returns [`RateLimitError::InvalidConfig`] for an empty user-agent substring, which
    /// would match every client.
    pub fn new(config: &ResponseConfig) -> Result<Self, RateLimitError> {
        if let Some(index) = config
            .ok_status_user_agents
            .iter()
            .position(|agent| agent.trim().is_empty())
        {
            return Err(RateLimitError::InvalidConfig {
                field: format!("response.ok_status_user_agents[{index}]"),
                value: format!("{:?}", config.ok_status_user_agents[index]),
                reason: "expected a non-empty User-Agent substring",
            });
        }
        Ok(Self {
            ok_status_user_agents: config.ok_status_user_agents.clone(),
        })
    }

    /// Returns `status`, or 200 for clients configured to get rejections with 200.
    pub fn status_for(&self, status: StatusCode, user_agent: Option<&str>) -> StatusCode {
        let drops_errors = user_agent.is_some_and(|agent| {
            self.ok_status_user_agents
                .iter()
                .any(|pattern| agent.contains(pattern.as_str()))
        });
        if drops_errors { StatusCode::OK } else { status }
    }

    /// Renders a rate or concurrency rejection: 429 (or 200 for configured clients) with
    /// `Retry-After`, the rate-limit headers, and a JSON-RPC error per request.
    ///
    /// `messages` and `batch` describe the request body. A batch gets an array with one
    /// error per request, each carrying its request's id. A body with only notifications
    /// and responses gets an empty body. A request without a body gets one error with a
    /// null id.
    pub fn limited(
        &self,
        limited: &Limited,
        messages: &[Message],
        batch: bool,
        user_agent: Option<&str>,
    ) -> Response<Vec<u8>> {
        let retry_secs = limited.retry_after_secs();
        let retry_ms = u64::try_from(limited.retry_after.as_micros().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1);
        let message = format!(
            "rate limit exceeded on tier {}; retry after {retry_secs} s",
            limited.tier
        );
        let data = LimitedData {
            limit: limited.policy.map(PolicyData::from),
            retry_after_ms: retry_ms,
            retryable: true,
            tier: limited.tier.as_str(),
        };

        let mut response = self.json_rpc_errors(
            StatusCode::TOO_MANY_REQUESTS,
            user_agent,
            messages,
            batch,
            &message,
            &data,
        );
        let headers = response.headers_mut();
        headers.insert(RETRY_AFTER, HeaderValue::from(retry_secs));
        if let Some(policy) = limited.policy {
            headers.insert(RATELIMIT_POLICY, policy_value(limited.tier, &policy));
            headers.insert(RATELIMIT, remaining_value(limited.tier, 0, retry_secs));
        }
        response
    }

    /// Renders a request whose cost can never pass: 400 (or 200 for configured clients)
    /// with the tier's `RateLimit-Policy`, no `Retry-After`, and a JSON-RPC error per
    /// request saying the request must be split or the burst raised.
    pub fn cost_too_high(
        &self,
        rejection: &CostTooHigh,
        messages: &[Message],
        batch: bool,
        user_agent: Option<&str>,
    ) -> Response<Vec<u8>> {
        let message = format!(
            "request cost {} exceeds the burst of {} on tier {}; split the batch or ask the operator to raise the burst",
            rejection.cost, rejection.policy.burst, rejection.tier
        );
        let data = CostTooHighData {
            cost: rejection.cost,
            limit: PolicyData::from(rejection.policy),
            retryable: false,
            tier: rejection.tier.as_str(),
        };

        let mut response = self.json_rpc_errors(
            StatusCode::BAD_REQUEST,
            user_agent,
            messages,
            batch,
            &message,
            &data,
        );
        response.headers_mut().insert(
            RATELIMIT_POLICY,
            policy_value(rejection.tier, &rejection.policy),
        );
        response
    }

    /// Builds the response with one JSON-RPC error per request in `messages`.
    ///
    /// The body is serialized from typed structs, without building a `serde_json::Value`
    /// first, because under a flood this runs for every rejected request.
    fn json_rpc_errors<D: Serialize>(
        &self,
        status: StatusCode,
        user_agent: Option<&str>,
        messages: &[Message],
        batch: bool,
        message: &str,
        data: &D,
    ) -> Response<Vec<u8>> {
        let error = |id| ErrorResponse {
            error: ErrorObject {
                code: error_codes::RATE_LIMITED,
                data,
                message,
            },
            id,
            jsonrpc: "2.0",
        };
        let mut requests = messages
            .iter()
            .filter(|message| message.kind == MessageKind::Request);

        let body = if messages.is_empty() {
            serde_json::to_vec(&error(None))
        } else if batch {
            let errors: Vec<_> = requests.map(|request| error(request.id.as_ref())).collect();
            if errors.is_empty() {
                Ok(Vec::new())
            } else {
                serde_json::to_vec(&errors)
            }
        } else {
            match requests.next() {
                Some(request) => serde_json::to_vec(&error(request.id.as_ref())),
                None => Ok(Vec::new()),
            }
        };
        // Serializing these structs to a `Vec` has no failing case: every map key is a
        // fixed string and every value a string, a number, a boolean, null or a JSON-RPC
        // id.
        let body = body.unwrap_or_default();

        let mut response = Response::new(Vec::new());
        *response.status_mut() = self.status_for(status, user_agent);
        if !body.is_empty() {
            *response.body_mut() = body;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        response
    }
}

// The body structs list their fields in alphabetical order, the order in which a
// `serde_json::Value` map prints its keys, so the body is the same as the one
// `shadowcat_core::error_response` builds. The `body_bytes_match_value_rendering` test
// checks this.

/// A JSON-RPC error response.
#[derive(Serialize)]
struct ErrorResponse<'a, D> {
    error: ErrorObject<'a, D>,
    id: Option<&'a JsonRpcId>,
    jsonrpc: &'static str,
}

/// The `error` member of a JSON-RPC error response.
#[derive(Serialize)]
struct ErrorObject<'a, D> {
    code: i32,
    data: &'a D,
    message: &'a str,
}

/// The `data` of a rate or concurrency rejection.
#[derive(Serialize)]
struct LimitedData {
    limit: Option<PolicyData>,
    retry_after_ms: u64,
    retryable: bool,
    tier: &'static str,
}

/// The `data` of a request whose cost exceeds a tier's burst.
#[derive(Serialize)]
struct CostTooHighData {
    cost: u32,
    limit: PolicyData,
    retryable: bool,
    tier: &'static str,
}

/// A tier's quota in a rejection's `data`.
#[derive(Serialize)]
struct PolicyData {
    burst: u32,
    per_seconds: u64,
    requests: u32,
}

impl From<Policy> for PolicyData {
    fn from(policy: Policy) -> Self {
        Self {
            burst: policy.burst.get(),
            per_seconds: whole_secs_up(policy.per),
            requests: policy.requests.get(),
        }
    }
}

/// Adds `RateLimit-Policy` and `RateLimit` for the tightest tier of an allowed request;
/// adds nothing when no tier applied.
pub fn apply_rate_limit_headers(headers: &mut HeaderMap, allowed: &Allowed) {
    let Some(status) = allowed.tightest else {
        return;
    };
    headers.insert(RATELIMIT_POLICY, policy_value(status.tier, &status.policy));
    headers.insert(
        RATELIMIT,
        remaining_value(status.tier, status.remaining, whole_secs_up(status.reset)),
    );
}

/// Formats `"tier";q=<requests>;w=<seconds>`.
pub fn policy_value(tier: Tier, policy: &Policy) -> HeaderValue {
    let window = whole_secs_up(policy.per);
    let text = format!("\"{tier}\";q={};w={window}", policy.requests);
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("\"limit\""))
}

/// Formats `"tier";r=<remaining>;t=<seconds>`.
pub fn remaining_value(tier: Tier, remaining: u32, seconds: u64) -> HeaderValue {
    let text = format!("\"{tier}\";r={remaining};t={seconds}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("\"limit\""))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use serde_json::{Value, json};
    use shadowcat_core::{JsonRpcBody, error_response};

    use super::*;
    use crate::decision::{LimitKey, LimitReason, TierStatus};

    fn policy() -> Policy {
        Policy {
            requests: NonZeroU32::new(100).unwrap(),
            per: Duration::from_secs(60),
            burst: NonZeroU32::new(20).unwrap(),
        }
    }

    fn limited(wait: Duration) -> Limited {
        Limited {
            tier: Tier::Ip,
            key: LimitKey::Global,
            policy: Some(policy()),
            retry_after: wait,
            reason: LimitReason::Rate,
            audit: None,
        }
    }

    fn parse(body: &str) -> JsonRpcBody {
        JsonRpcBody::parse(body.as_bytes()).unwrap()
    }

    fn body_json(response: &Response<Vec<u8>>) -> Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    #[test]
    fn single_request_gets_error_with_id() {
        let body = parse(r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/list"}"#);
        let response = RejectionRenderer::default().limited(
            &limited(Duration::from_millis(6_200)),
            body.messages(),
            body.is_batch(),
            None,
        );
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "7");
        assert_eq!(response.headers()[RATELIMIT_POLICY], "\"ip\";q=100;w=60");
        assert_eq!(response.headers()[RATELIMIT], "\"ip\";r=0;t=7");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");

        let json = body_json(&response);
        assert_eq!(json["id"], "a-1");
        assert_eq!(json["error"]["code"], -32000);
        assert!(json["error"]["message"].as_str().unwrap().contains("ip"));
        assert_eq!(json["error"]["data"]["retry_after_ms"], 6200);
        assert_eq!(json["error"]["data"]["tier"], "ip");
        assert_eq!(json["error"]["data"]["limit"]["requests"], 100);
        assert_eq!(json["error"]["data"]["limit"]["burst"], 20);
    }

    #[test]
    fn body_bytes_match_value_rendering() {
        // The typed structs must print the bytes of the `serde_json::Value` that
        // `error_response` builds, so clients see the same body as before.
        let body = parse(r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/list"}"#);
        let limited = limited(Duration::from_millis(6_200));
        let response = RejectionRenderer::default().limited(&limited, body.messages(), false, None);

        let data = json!({
            "tier": "ip",
            "retry_after_ms": 6200,
            "limit": {"requests": 100, "per_seconds": 60, "burst": 20},
            "retryable": true,
        });
        let message = "rate limit exceeded on tier ip; retry after 7 s";
        let expected = error_response(
            body.messages()[0].id.as_ref(),
            error_codes::RATE_LIMITED,
            message,
            Some(data),
        );
        assert_eq!(
            String::from_utf8(response.body().clone()).unwrap(),
            expected.to_string()
        );
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let response = RejectionRenderer::default().limited(
            &limited(Duration::from_millis(3)),
            &[],
            false,
            None,
        );
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert_eq!(body_json(&response)["id"], Value::Null);
    }

    #[test]
    fn batch_gets_one_error_per_request() {
        let body = parse(
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
                {"jsonrpc":"2.0","method":"notifications/progress"},
                {"jsonrpc":"2.0","id":"two","method":"tools/list"}]"#,
        );
        let response = RejectionRenderer::default().limited(
            &limited(Duration::from_secs(2)),
            body.messages(),
            body.is_batch(),
            None,
        );
        let json = body_json(&response);
        let errors = json.as_array().unwrap();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0]["id"], 1);
        assert_eq!(errors[1]["id"], "two");
        assert_eq!(errors[1]["error"]["code"], -32000);
    }

    #[test]
    fn single_request_batch_is_still_an_array() {
        let body = parse(r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#);
        let response = RejectionRenderer::default().limited(
            &limited(Duration::from_secs(2)),
            body.messages(),
            body.is_batch(),
            None,
        );
        assert!(body_json(&response).is_array());
    }

    #[test]
    fn notification_gets_empty_body() {
        let body = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let response = RejectionRenderer::default().limited(
            &limited(Duration::from_secs(2)),
            body.messages(),
            body.is_batch(),
            None,
        );
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.body().is_empty());
        assert!(response.headers().get(CONTENT_TYPE).is_none());
        assert_eq!(response.headers()[RETRY_AFTER], "2");
    }

    #[test]
    fn configured_client_gets_status_200() {
        let renderer = RejectionRenderer::new(&ResponseConfig {
            ok_status_user_agents: vec!["DropsErrors/".into()],
        })
        .unwrap();
        let body = parse(r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#);
        let response = renderer.limited(
            &limited(Duration::from_secs(1)),
            body.messages(),
            false,
            Some("DropsErrors/1.2 (linux)"),
        );
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert_eq!(body_json(&response)["id"], 5);

        let other = renderer.limited(
            &limited(Duration::from_secs(1)),
            body.messages(),
            false,
            Some("curl/8"),
        );
        assert_eq!(other.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn empty_user_agent_pattern_is_rejected() {
        let error = RejectionRenderer::new(&ResponseConfig {
            ok_status_user_agents: vec![" ".into()],
        })
        .unwrap_err();
        assert!(
            error.to_string().contains("ok_status_user_agents[0]"),
            "{error}"
        );
    }

    #[test]
    fn cost_too_high_is_not_retryable() {
        let body = parse(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x"}}"#);
        let rejection = CostTooHigh {
            tier: Tier::Tool,
            key: LimitKey::Global,
            policy: policy(),
            cost: 25,
        };
        let response =
            RejectionRenderer::default().cost_too_high(&rejection, body.messages(), false, None);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get(RETRY_AFTER).is_none());
        assert_eq!(response.headers()[RATELIMIT_POLICY], "\"tool\";q=100;w=60");
        let json = body_json(&response);
        assert_eq!(json["id"], 3);
        assert_eq!(json["error"]["data"]["retryable"], false);
        assert_eq!(json["error"]["data"]["cost"], 25);
    }

    #[test]
    fn allowed_headers_name_tightest_tier() {
        let mut headers = HeaderMap::new();
        let allowed = Allowed {
            tightest: Some(TierStatus {
                tier: Tier::Tool,
                policy: policy(),
                remaining: 4,
                reset: Duration::from_millis(1_500),
            }),
            overflow: None,
        };
        apply_rate_limit_headers(&mut headers, &allowed);
        assert_eq!(headers[RATELIMIT_POLICY], "\"tool\";q=100;w=60");
        assert_eq!(headers[RATELIMIT], "\"tool\";r=4;t=2");

        let mut empty = HeaderMap::new();
        apply_rate_limit_headers(
            &mut empty,
            &Allowed {
                tightest: None,
                overflow: None,
            },
        );
        assert!(empty.is_empty());
    }
}
