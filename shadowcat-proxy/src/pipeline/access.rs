//! The authentication and authorization stages, and the filtering of list results to
//! what the caller may call.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use shadowcat_audit::{AuditEvent, AuthFailureReason, EventKind};
use shadowcat_core::{CallContext, JsonRpcBody, MessageKind, Principal};

use super::AppState;
use super::audit::Verdict;
use crate::auth::{AuthRejection, RejectReason};
use crate::policy::{forbidden_error, forbidden_response, insufficient_scope_challenge};

/// Largest list response that is buffered for filtering: 16 MiB.
const MAX_LIST_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Authenticates a request and stores the principal in `ctx`.
///
/// Without an `[auth]` table every caller is anonymous. A failure charges the client
/// address (never a subject) and returns the `401` or `403` to send. `body` is read
/// only to put the request ids into that error.
pub(super) async fn authenticate(
    app: &AppState,
    ctx: &mut CallContext,
    headers: &HeaderMap,
    body: Option<&[u8]>,
) -> Result<(), Response> {
    let Some(authenticator) = &app.authenticator else {
        ctx.principal = Some(Arc::new(Principal::anonymous()));
        return Ok(());
    };
    match authenticator.authenticate(headers, &ctx.route).await {
        Ok(principal) => {
            if let Some(audit) = &app.audit {
                audit.record(
                    AuditEvent::new(EventKind::AuthSuccess {
                        method: principal.method,
                    })
                    .with_request_id(ctx.request_id)
                    .with_client_ip(ctx.client_ip)
                    .with_principal(Arc::clone(&principal)),
                );
            }
            ctx.principal = Some(principal);
            Ok(())
        }
        Err(rejection) => {
            if let Some(limits) = &app.limits {
                limits.limiter.record_auth_failure(ctx.client_ip);
            }
            Err(unauthenticated(&rejection, body))
        }
    }
}

fn unauthenticated(rejection: &AuthRejection, body: Option<&[u8]>) -> Response {
    let parsed = body.and_then(|body| JsonRpcBody::parse(body).ok());
    let ids: Vec<_> = parsed
        .iter()
        .flat_map(|parsed| parsed.request_ids().cloned())
        .collect();
    let response = match (&parsed, ids.as_slice()) {
        (Some(parsed), ids) if parsed.is_batch() && !ids.is_empty() => {
            let errors: Vec<Value> = ids
                .iter()
                .map(|id| rejection.error_body(Some(id)))
                .collect();
            let mut response = rejection.to_response(None).map(Body::from);
            *response.body_mut() =
                Body::from(serde_json::to_vec(&errors).expect("JSON serializes"));
            response
        }
        (_, ids) => rejection.to_response(ids.first()).map(Body::from),
    };
    let mut response = response;
    response.extensions_mut().insert(Verdict::Unauthenticated {
        reason: audit_reason(rejection.reason()),
    });
    response
}

/// Maps the authenticator's reason to the audit schema's reason.
fn audit_reason(reason: RejectReason) -> AuthFailureReason {
    match reason {
        RejectReason::MissingCredentials => AuthFailureReason::MissingCredentials,
        RejectReason::MultipleCredentials => AuthFailureReason::MultipleCredentials,
        RejectReason::UnsupportedScheme => AuthFailureReason::UnsupportedScheme,
        RejectReason::Malformed => AuthFailureReason::Malformed,
        RejectReason::BadAlgorithm => AuthFailureReason::BadAlgorithm,
        RejectReason::UnknownKid => AuthFailureReason::UnknownKey,
        RejectReason::BadSignature => AuthFailureReason::InvalidSignature,
        RejectReason::MissingExp => AuthFailureReason::MissingExp,
        RejectReason::Expired => AuthFailureReason::Expired,
        RejectReason::NotYetValid => AuthFailureReason::NotYetValid,
        RejectReason::WrongIssuer => AuthFailureReason::WrongIssuer,
        RejectReason::WrongAudience => AuthFailureReason::WrongAudience,
        RejectReason::MissingSubject => AuthFailureReason::MissingSubject,
        RejectReason::InsufficientScope => AuthFailureReason::InsufficientScope,
        RejectReason::UnknownApiKey => AuthFailureReason::UnknownApiKey,
    }
}

/// Evaluates the policy for every message of the body. The first denial rejects the
/// whole body with `403`; each allowed message gets an `authz.allow` record.
pub(super) fn authorize(
    app: &AppState,
    ctx: &CallContext,
    parsed: &JsonRpcBody,
) -> Result<(), Response> {
    let Some(policy) = &app.policy else {
        return Ok(());
    };
    let anonymous;
    let principal = match ctx.principal.as_deref() {
        Some(principal) => principal,
        None => {
            anonymous = Principal::anonymous();
            &anonymous
        }
    };
    for message in parsed.messages() {
        let decision = policy.evaluate(principal, ctx.client_ip, message);
        let rule = decision.rule_id.as_deref().unwrap_or("default").to_owned();
        if decision.allowed {
            if let Some(audit) = &app.audit
                && message.kind != MessageKind::Response
            {
                audit.record(
                    AuditEvent::new(EventKind::AuthzAllow {
                        rule: rule.into(),
                        method: message.method.clone().unwrap_or_default().into(),
                        target: message.target.clone().map(Into::into),
                    })
                    .with_context(ctx),
                );
            }
            continue;
        }

        let mut response = if parsed.is_batch() {
            let errors: Vec<Value> = parsed
                .messages()
                .iter()
                .filter(|message| message.kind == MessageKind::Request)
                .map(|request| forbidden_error(&decision, request.id.as_ref()))
                .collect();
            let mut response = Response::new(Body::from(
                serde_json::to_vec(&errors).expect("JSON serializes"),
            ));
            *response.status_mut() = StatusCode::FORBIDDEN;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Some(challenge) = insufficient_scope_challenge(&decision) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge);
            }
            response
        } else {
            forbidden_response(&decision, message.id.as_ref()).map(Body::from)
        };
        response.extensions_mut().insert(Verdict::Denied {
            rule,
            method: message.method.clone().unwrap_or_default(),
            target: message.target.clone(),
        });
        return Err(response);
    }
    Ok(())
}

/// Returns true when the response to `parsed` is a list that policy may shorten.
pub(super) fn needs_list_filter(app: &AppState, parsed: &JsonRpcBody) -> Option<String> {
    app.policy.as_ref()?;
    if parsed.is_batch() {
        return None;
    }
    let method = parsed.messages()[0].method.as_deref()?;
    matches!(
        method,
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list"
    )
    .then(|| method.to_owned())
}

/// Removes from a list response (JSON or an event stream) the entries the caller may
/// not call.
pub(super) async fn filter_list(
    app: &AppState,
    ctx: &CallContext,
    method: &str,
    response: Response,
) -> Response {
    let Some(policy) = &app.policy else {
        return response;
    };
    if !response.status().is_success() {
        return response;
    }
    let anonymous = Principal::anonymous();
    let principal = ctx.principal.as_deref().unwrap_or(&anonymous);
    let (mut parts, body) = response.into_parts();
    let bytes = match Limited::new(body, MAX_LIST_RESPONSE_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            tracing::warn!(request_id = %ctx.request_id, %error, "could not read a list response to filter it");
            return super::reject::error(
                StatusCode::BAD_GATEWAY,
                ctx.messages.first().and_then(|message| message.id.as_ref()),
                shadowcat_core::error_codes::UPSTREAM_ERROR,
                "the upstream MCP server returned an unusable list response",
                None,
            );
        }
    };
    let filter =
        |value: &mut Value| policy.filter_list_response(principal, ctx.client_ip, method, value);

    let filtered = if let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) {
        filter(&mut value);
        Bytes::from(serde_json::to_vec(&value).expect("JSON serializes"))
    } else {
        // An event stream: rewrite each `data:` line that contains a JSON-RPC response.
        let text = String::from_utf8_lossy(&bytes);
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            let rewritten = line
                .strip_prefix("data:")
                .and_then(|data| serde_json::from_str::<Value>(data.trim()).ok())
                .filter(|value| value.get("result").is_some())
                .map(|mut value| {
                    filter(&mut value);
                    format!("data: {value}\n")
                });
            out.push_str(rewritten.as_deref().unwrap_or(line));
        }
        Bytes::from(out)
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(filtered))
}
