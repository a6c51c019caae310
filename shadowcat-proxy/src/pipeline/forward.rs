//! Upstream selection and forwarding. The balancer chooses a replica, or the session's
//! replica is admitted through its breaker. The outcome of each request feeds the
//! breaker, and a failed request that is safe to repeat goes once to another replica.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use shadowcat_audit::RejectReason;
use shadowcat_core::{CallContext, JsonRpcBody, error_codes};

use super::{AppState, reject, upstream_failure};
use crate::upstream::group::outcome_of;
use crate::upstream::resilience::{NoReplica, is_failure, is_retry_safe};
use crate::upstream::{Attempt, Member, StdioChild, UpstreamError, UpstreamGroup, UpstreamKind};

/// The request to send upstream.
pub(super) struct Outgoing<'a> {
    /// `POST` or `GET`.
    pub method: Method,
    /// The client's headers, filtered by the HTTP upstream client.
    pub headers: &'a HeaderMap,
    /// The upstream's own session id, for a request of a legacy session.
    pub session: Option<&'a HeaderValue>,
    /// The request body.
    pub body: Bytes,
    /// The id of a legacy `initialize` request: a stdio replica then gets a child of
    /// its own for the new session instead of a pooled one.
    pub initialize_id: Option<Value>,
}

/// The upstream's response and the replica that produced it.
pub(super) struct Forwarded {
    /// The replica's index in its group.
    pub index: usize,
    /// The response, with the upstream's headers still unfiltered.
    pub response: Response,
    /// The child started for a new legacy session on a stdio replica, once its
    /// `initialize` succeeded.
    pub child: Option<Arc<StdioChild>>,
}

/// The name of the replica a failed request reached, for its audit record.
#[derive(Debug, Clone)]
pub(super) struct UpstreamName(pub Arc<str>);

/// Sends `outgoing` to the group: to replica `bound` when the request belongs to a
/// legacy session, to a replica the balancer picks otherwise.
///
/// A failure is retried once, on a different replica, when the request could not have
/// acted upstream (the connection failed) or its method is read-only, and the group's
/// retry budget allows it. When no other replica is available, the first failure
/// is returned.
///
/// # Errors
///
/// Returns the client's response when no replica is available (`503` with
/// `Retry-After`) or the upstream could not be reached or timed out.
pub(super) async fn send(
    app: &AppState,
    group: &UpstreamGroup,
    ctx: &CallContext,
    parsed: Option<&JsonRpcBody>,
    bound: Option<usize>,
    outgoing: Outgoing<'_>,
) -> Result<Forwarded, Response> {
    let chosen = match bound {
        Some(index) => group.acquire(index),
        None => group.pick(None),
    };
    let attempt = chosen.map_err(|none| unavailable(group, none, parsed))?;
    let (mut index, mut result) = attempt_once(app, group, attempt, &outgoing).await;

    let method = parsed
        .filter(|body| !body.is_batch())
        .and_then(|body| body.messages()[0].method.as_deref());
    let failed = is_failure(&outcome_of(status_of(&result)));
    let sent_any_byte = !matches!(result, Err(UpstreamError::Unreachable(_)));
    let may_retry =
        failed && bound.is_none() && is_retry_safe(method.unwrap_or_default(), sent_any_byte);
    if may_retry
        && let Ok(second) = group.pick(Some(index))
        && group.try_retry()
    {
        tracing::info!(
            request_id = %ctx.request_id,
            group = %group.name,
            upstream = %group.member(index).name,
            "retrying on another replica"
        );
        (index, result) = attempt_once(app, group, second, &outgoing).await;
    }

    match result {
        Ok((response, child)) => Ok(Forwarded {
            index,
            response,
            child,
        }),
        Err(error) => {
            let mut response = upstream_failure(app, ctx, &error, parsed);
            response
                .extensions_mut()
                .insert(UpstreamName(Arc::clone(&group.member(index).name)));
            Err(response)
        }
    }
}

type CallResult = Result<(Response, Option<Arc<StdioChild>>), UpstreamError>;

fn status_of(result: &CallResult) -> Result<StatusCode, &UpstreamError> {
    result.as_ref().map(|(response, _)| response.status())
}

/// Sends the request to the attempt's replica and records the outcome in its breaker.
async fn attempt_once(
    app: &AppState,
    group: &UpstreamGroup,
    attempt: Attempt,
    outgoing: &Outgoing<'_>,
) -> (usize, CallResult) {
    let index = attempt.index();
    let started = Instant::now();
    let result = call(group.member(index), outgoing).await;
    let latency = started.elapsed();
    // NOTE: the outcome is taken at the response headers. A stream that breaks later
    // does not count against the replica, and its in-flight count ends here too.
    attempt.finish(&outcome_of(status_of(&result)), latency);
    if result.is_ok() {
        app.metrics.observe_upstream_latency(latency);
    }
    (index, result)
}

/// Sends one request to one replica. A stdio replica's JSON-RPC response becomes a JSON
/// HTTP response, and a body that expects no response becomes `202`.
async fn call(member: &Member, outgoing: &Outgoing<'_>) -> CallResult {
    let argv = match &member.kind {
        UpstreamKind::Http(http) => {
            let response = http
                .send(
                    outgoing.method.clone(),
                    outgoing.headers,
                    outgoing.session,
                    Body::from(outgoing.body.clone()),
                )
                .await?;
            return Ok((response, None));
        }
        UpstreamKind::Stdio { argv, pool } => match &outgoing.initialize_id {
            Some(_) => argv,
            None => {
                let value: Value = serde_json::from_slice(&outgoing.body)
                    .map_err(|_| UpstreamError::Internal("body re-parse failed".into()))?;
                let response = match pool.call(value, member.request_timeout).await? {
                    Some(answer) => reject::json_response(StatusCode::OK, &answer),
                    None => reject::empty(StatusCode::ACCEPTED),
                };
                return Ok((response, None));
            }
        },
    };
    let child = StdioChild::spawn(argv, Box::new(|_| {}))?;
    let answer = match child
        .call(
            outgoing.body.clone(),
            outgoing.initialize_id.as_ref(),
            member.request_timeout,
        )
        .await
    {
        Ok(Some(answer)) => answer,
        Ok(None) => {
            child.kill();
            return Err(UpstreamError::Failed(
                "the child sent no response to initialize".into(),
            ));
        }
        Err(error) => {
            child.kill();
            return Err(error);
        }
    };
    let response = reject::json_response(StatusCode::OK, &answer);
    if answer.get("result").is_none() {
        // The server refused the session; its error goes back to the client as is.
        child.kill();
        return Ok((response, None));
    }
    Ok((response, Some(child)))
}

/// Builds the `503` for a request no replica can take: a `Retry-After` header and a
/// JSON-RPC error per request id.
pub(super) fn unavailable(
    group: &UpstreamGroup,
    none: NoReplica,
    parsed: Option<&JsonRpcBody>,
) -> Response {
    let wait = none.retry_after.unwrap_or_else(|| group.check_interval());
    let seconds = retry_after_seconds(wait);
    let message = "no replica of the upstream MCP server is available; retry later";
    let data = Some(json!({ "retry_after_ms": wait.as_millis(), "upstream": &*group.name }));
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let code = error_codes::UPSTREAM_UNAVAILABLE;
    let mut response = match parsed {
        Some(body) => reject::for_body(
            RejectReason::UpstreamUnavailable,
            status,
            body,
            code,
            message,
            data,
        ),
        None => reject::single(
            RejectReason::UpstreamUnavailable,
            status,
            None,
            code,
            message,
            data,
        ),
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Rounds a wait up to whole seconds, at least 1, as `Retry-After` needs.
fn retry_after_seconds(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_a_whole_second() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(4_001)), 5);
        assert_eq!(retry_after_seconds(Duration::from_secs(30)), 30);
    }
}
