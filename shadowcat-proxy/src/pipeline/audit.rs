//! Audit records for every request that reaches the pipeline.
//!
//! A stage that rejects or fails a request tags its response with a [`Verdict`]; the
//! endpoint then writes exactly one `request.rejected` or `request.completed` record per
//! JSON-RPC message (one for a GET, a DELETE or an unparseable body).

use std::time::Duration;

use axum::response::Response;
use http::StatusCode;
use shadowcat_audit::{
    AuditEvent, AuditHandle, AuthFailureReason, EventKind, Outcome, RejectReason, UpstreamFailure,
};
use shadowcat_core::{CallContext, MessageKind, error_codes};

use super::reject;

/// The way a stage ended a request, attached to its response as an extension.
#[derive(Debug, Clone)]
pub(super) enum Verdict {
    /// The proxy rejected the request before it reached the upstream.
    Rejected {
        /// The audit reason.
        reason: RejectReason,
    },
    /// A rate, cost or concurrency limit rejected the request.
    Limited {
        /// The tier that rejected.
        tier: &'static str,
        /// The limit key as the limiter prints it, with IPs and subjects already hashed.
        key: String,
        /// Rejections the `ratelimit.limited` record stands for, or `None` when an earlier
        /// record of this window already covers this one.
        hits: Option<u64>,
    },
    /// Authentication failed.
    Unauthenticated {
        /// The audit reason.
        reason: AuthFailureReason,
    },
    /// A policy rule denied a message.
    Denied {
        /// The deciding rule's id, or `default`.
        rule: String,
        /// The denied message's method.
        method: String,
        /// The denied message's target.
        target: Option<String>,
    },
    /// The upstream failed or timed out.
    UpstreamFailed {
        /// The request outcome.
        outcome: Outcome,
        /// The kind of upstream failure.
        failure: UpstreamFailure,
        /// The JSON-RPC error code sent to the client.
        code: i32,
    },
}

/// Attaches a rejection reason to a response.
pub(super) fn rejected(mut response: Response, reason: RejectReason) -> Response {
    response
        .extensions_mut()
        .insert(Verdict::Rejected { reason });
    response
}

/// Builds the records for one completed request.
pub(super) fn records(
    ctx: &CallContext,
    response: &Response,
    latency: Duration,
    upstream_name: &str,
) -> Vec<AuditEvent> {
    let status = response.status().as_u16();
    let verdict = response.extensions().get::<Verdict>().cloned();
    let mut events = Vec::with_capacity(ctx.messages.len().max(1) + 1);

    if let Some(Verdict::Limited {
        tier,
        key,
        hits: Some(hits),
    }) = &verdict
    {
        events.push(
            AuditEvent::new(EventKind::RatelimitLimited {
                tier: (*tier).into(),
                key_hash: key_hash(key).into(),
                hits: *hits,
            })
            .with_context(ctx),
        );
    }
    if let Some(Verdict::Unauthenticated { reason }) = &verdict {
        let user_agent = None;
        events.push(
            AuditEvent::new(EventKind::AuthFailure {
                reason: *reason,
                user_agent,
            })
            .with_request_id(ctx.request_id)
            .with_client_ip(ctx.client_ip),
        );
    }
    if let Some(Verdict::Denied {
        rule,
        method,
        target,
    }) = &verdict
    {
        events.push(
            AuditEvent::new(EventKind::AuthzDeny {
                rule: rule.clone().into(),
                method: method.clone().into(),
                target: target.clone().map(Into::into),
            })
            .with_context(ctx),
        );
    }
    if let Some(Verdict::UpstreamFailed { failure, .. }) = verdict {
        events.push(
            AuditEvent::new(EventKind::UpstreamError {
                upstream: upstream_name.to_owned().into(),
                error: failure,
                status: None,
            })
            .with_context(ctx),
        );
    }

    let per_message = |method: String, target: Option<String>| {
        let kind = match &verdict {
            Some(Verdict::Rejected { reason }) => EventKind::RequestRejected {
                reason: *reason,
                status,
                detail: None,
            },
            Some(Verdict::Unauthenticated { .. }) => EventKind::RequestCompleted {
                method: method.into(),
                target: target.map(Into::into),
                status,
                latency_us: latency.as_micros() as u64,
                outcome: Outcome::Rejected,
                error_code: Some(error_codes::UNAUTHORIZED),
            },
            Some(Verdict::Denied { .. }) => EventKind::RequestCompleted {
                method: method.into(),
                target: target.map(Into::into),
                status,
                latency_us: latency.as_micros() as u64,
                outcome: Outcome::Rejected,
                error_code: Some(error_codes::FORBIDDEN),
            },
            Some(Verdict::Limited { .. }) => EventKind::RequestCompleted {
                method: method.into(),
                target: target.map(Into::into),
                status,
                latency_us: latency.as_micros() as u64,
                outcome: Outcome::Limited,
                error_code: Some(error_codes::RATE_LIMITED),
            },
            Some(Verdict::UpstreamFailed { outcome, code, .. }) => EventKind::RequestCompleted {
                method: method.into(),
                target: target.map(Into::into),
                status,
                latency_us: latency.as_micros() as u64,
                outcome: *outcome,
                error_code: Some(*code),
            },
            None => EventKind::RequestCompleted {
                method: method.into(),
                target: target.map(Into::into),
                status,
                latency_us: latency.as_micros() as u64,
                outcome: if response.status().is_success() {
                    Outcome::Ok
                } else {
                    Outcome::Error
                },
                error_code: None,
            },
        };
        AuditEvent::new(kind).with_context(ctx)
    };

    if ctx.messages.is_empty() {
        events.push(per_message(ctx.http_method.to_owned(), None));
    }
    for message in ctx.messages.iter() {
        let method = match message.kind {
            MessageKind::Response => "response".to_owned(),
            _ => message.method.clone().unwrap_or_default(),
        };
        events.push(per_message(method, message.target.clone()));
    }
    events
}

/// Returns the audit form of a limit key: its SHA-256, so no address or subject is
/// written in clear, and equal keys still match across records.
fn key_hash(key: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(key.as_bytes())[..16])
}

/// Writes the records of one request. In lossless mode a record that cannot be queued
/// in time fails the request closed: the client gets `503` instead of the response.
///
/// NOTE: the records are written once the response is ready, so a request that was
/// already forwarded has run upstream even when its client then gets `503`.
pub(super) async fn write(
    audit: &AuditHandle,
    events: Vec<AuditEvent>,
    response: Response,
    ctx: &CallContext,
) -> Response {
    for event in events {
        if let Err(error) = audit.submit(event).await {
            tracing::error!(request_id = %ctx.request_id, %error, "audit trail unavailable; failing the request closed");
            let id = ctx.messages.first().and_then(|message| message.id.as_ref());
            return reject::error(
                StatusCode::SERVICE_UNAVAILABLE,
                id,
                error_codes::AUDIT_UNAVAILABLE,
                "the audit trail is unavailable, so the request was not served; retry later",
                None,
            );
        }
    }
    response
}
