//! `POST /mcp`: one JSON-RPC message or a legacy batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};
use shadowcat_audit::RejectReason;
use shadowcat_core::mcp::{self, Era, HeaderError, HeaderField};
use shadowcat_core::{CallContext, JsonRpcBody, MessageKind, error_codes};

use shadowcat_ratelimit::{Allowed, Permit, SlotKind};

use super::forward::{self, Outgoing};
use super::{
    AppState, GuardRejection, SessionLookupError, reject, relay_response, upstream_failure,
};
use super::{access, limits};
use crate::session::{Session, SessionUpstream};
use crate::upstream::{StdioChild, UpstreamError, UpstreamGroup, UpstreamKind};

/// Runs the POST pipeline and returns the response with the context it built.
pub(super) async fn handle(
    app: &Arc<AppState>,
    group: &Arc<UpstreamGroup>,
    mut ctx: CallContext,
    request: Request,
) -> (Response, CallContext) {
    let (parts, body) = request.into_parts();
    if let Err(rejection) = app.guard.check(&parts.headers) {
        return (guard_rejection(rejection), ctx);
    }

    let bytes = match read_body(body, &parts.headers, app.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(response) => return (response, ctx),
    };
    if let Err(response) = access::authenticate(app, &mut ctx, &parts.headers, Some(&bytes)).await {
        return (response, ctx);
    }
    let parsed = match JsonRpcBody::parse(&bytes) {
        Ok(parsed) => parsed,
        Err(error) => {
            let response = reject::single(
                RejectReason::BadInput,
                StatusCode::BAD_REQUEST,
                error.id(),
                error.code(),
                &error.to_string(),
                None,
            );
            return (response, ctx);
        }
    };
    ctx.messages = Arc::from(parsed.messages());

    let version = header_field(&parts.headers, mcp::HEADER_PROTOCOL_VERSION);
    let era = mcp::classify(version, parsed.messages());
    ctx.era = Some(era);
    let response = match era {
        Era::Modern => modern(app, group, &ctx, &parts, bytes, &parsed, version).await,
        Era::Legacy => legacy(app, group, &mut ctx, &parts, bytes, &parsed, version).await,
    };
    (response, ctx)
}

/// Builds the rejection for a failed Host or Origin check.
pub(super) fn guard_rejection(rejection: GuardRejection) -> Response {
    match rejection {
        GuardRejection::Host => reject::single(
            RejectReason::Host,
            StatusCode::MISDIRECTED_REQUEST,
            None,
            error_codes::FORBIDDEN,
            "the Host header names a host this proxy does not serve",
            None,
        ),
        GuardRejection::Origin => reject::single(
            RejectReason::Origin,
            StatusCode::FORBIDDEN,
            None,
            error_codes::FORBIDDEN,
            "the Origin header names an origin that may not call this server",
            None,
        ),
    }
}

/// Collects the body, rejecting it with `413` as soon as it passes the limit.
async fn read_body(body: Body, headers: &HeaderMap, max_bytes: usize) -> Result<Bytes, Response> {
    let too_large = || {
        reject::single(
            RejectReason::BodyTooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            error_codes::PAYLOAD_TOO_LARGE,
            &format!("the request body exceeds the limit of {max_bytes} bytes"),
            Some(json!({ "max_bytes": max_bytes })),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_bytes as u64) {
        return Err(too_large());
    }
    match Limited::new(body, max_bytes).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(reject::single(
            RejectReason::BadInput,
            StatusCode::BAD_REQUEST,
            None,
            error_codes::PARSE_ERROR,
            "the request body could not be read",
            None,
        )),
    }
}

pub(super) fn header_field<'a>(headers: &'a HeaderMap, name: &'static str) -> HeaderField<'a> {
    HeaderField::from_values(headers.get_all(name).iter().map(HeaderValue::as_bytes))
}

fn unsupported_version(body: &JsonRpcBody, requested: &str, supported: Vec<&str>) -> Response {
    reject::for_body(
        RejectReason::UnsupportedVersion,
        StatusCode::BAD_REQUEST,
        body,
        error_codes::UNSUPPORTED_PROTOCOL_VERSION,
        "unsupported MCP protocol version",
        Some(json!({ "supported": supported, "requested": requested })),
    )
}

// === modern era ===

async fn modern(
    app: &Arc<AppState>,
    group: &UpstreamGroup,
    ctx: &CallContext,
    parts: &Parts,
    bytes: Bytes,
    parsed: &JsonRpcBody,
    version: HeaderField<'_>,
) -> Response {
    if parsed.is_batch() {
        return reject::for_body(
            RejectReason::BadInput,
            StatusCode::BAD_REQUEST,
            parsed,
            error_codes::INVALID_REQUEST,
            "JSON-RPC batches are not allowed in MCP 2026-07-28",
            None,
        );
    }
    let message = &parsed.messages()[0];
    let checked = mcp::validate_modern(
        version,
        header_field(&parts.headers, mcp::HEADER_METHOD),
        header_field(&parts.headers, mcp::HEADER_NAME),
        message,
    );
    match checked {
        Ok(()) => {}
        Err(HeaderError::Mismatch(reason)) => {
            return reject::for_body(
                RejectReason::HeaderMismatch,
                StatusCode::BAD_REQUEST,
                parsed,
                error_codes::HEADER_MISMATCH,
                reason,
                None,
            );
        }
        Err(HeaderError::UnsupportedVersion { requested }) => {
            return unsupported_version(parsed, &requested, mcp::supported_versions().collect());
        }
    }
    if group.eras.supports(Era::Modern) == Some(false) {
        let requested = message
            .protocol_version
            .as_deref()
            .unwrap_or(mcp::MODERN_VERSIONS[0]);
        return unsupported_version(parsed, requested, mcp::LEGACY_VERSIONS.to_vec());
    }

    let listen = message.is_method("subscriptions/listen");
    let has_stdio = || {
        group
            .members()
            .iter()
            .any(|member| matches!(member.kind, UpstreamKind::Stdio { .. }))
    };
    if listen && has_stdio() {
        // NOTE: stdio pool children respond request by request; routing a long-lived
        // subscription stream back to one client is not built yet.
        return reject::for_body(
            RejectReason::NotSupported,
            StatusCode::NOT_IMPLEMENTED,
            parsed,
            error_codes::NOT_SUPPORTED,
            "subscriptions/listen is not supported for stdio upstreams",
            None,
        );
    }
    let slot = if listen {
        SlotKind::Stream
    } else {
        SlotKind::Request
    };
    if let Err(response) = access::authorize(app, ctx, parsed) {
        return response;
    }
    let admitted = match admit(app, ctx, parts, parsed, slot) {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let outgoing = Outgoing {
        method: Method::POST,
        headers: &parts.headers,
        session: None,
        body: bytes,
        initialize_id: None,
    };
    let response = match forward::send(app, group, ctx, Some(parsed), None, outgoing).await {
        Ok(forwarded) => relay_response(forwarded.response, None, &app.shutdown),
        Err(response) => response,
    };
    let response = match access::needs_list_filter(app, parsed) {
        Some(method) => access::filter_list(app, ctx, &method, response).await,
        None => response,
    };
    admitted.finish(response)
}

// === legacy era ===

async fn legacy(
    app: &Arc<AppState>,
    group: &Arc<UpstreamGroup>,
    ctx: &mut CallContext,
    parts: &Parts,
    bytes: Bytes,
    parsed: &JsonRpcBody,
    version: HeaderField<'_>,
) -> Response {
    match version {
        HeaderField::Value(requested) if mcp::era_of(requested) != Some(Era::Legacy) => {
            return unsupported_version(parsed, requested, mcp::supported_versions().collect());
        }
        HeaderField::Invalid => {
            return reject::for_body(
                RejectReason::HeaderMismatch,
                StatusCode::BAD_REQUEST,
                parsed,
                error_codes::HEADER_MISMATCH,
                "MCP-Protocol-Version header is repeated or not visible ASCII",
                None,
            );
        }
        _ => {}
    }

    if parsed
        .messages()
        .iter()
        .any(|message| message.is_method("initialize"))
    {
        if parsed.is_batch() {
            return reject::for_body(
                RejectReason::BadInput,
                StatusCode::BAD_REQUEST,
                parsed,
                error_codes::INVALID_REQUEST,
                "initialize must be sent on its own, not in a batch",
                None,
            );
        }
        // A discover result that lists only modern versions does not mean `initialize`
        // is refused: dual-era servers serve both, so the upstream decides.
        if let Some(limits) = &app.limits
            && let Err(response) = limits.session_creation(ctx, parsed.messages(), &parts.headers)
        {
            return response;
        }
        if let Err(response) = access::authorize(app, ctx, parsed) {
            return response;
        }
        let admitted = match admit(app, ctx, parts, parsed, SlotKind::Request) {
            Ok(admitted) => admitted,
            Err(response) => return response,
        };
        return admitted.finish(initialize(app, group, ctx, parts, bytes, parsed).await);
    }

    let session = match app.session_for(group, &parts.headers) {
        Ok(session) => session,
        Err(SessionLookupError::Missing) => {
            return reject::for_body(
                RejectReason::BadInput,
                StatusCode::BAD_REQUEST,
                parsed,
                error_codes::INVALID_REQUEST,
                "missing Mcp-Session-Id header: send initialize first",
                None,
            );
        }
        Err(SessionLookupError::Unknown) => return session_not_found(parsed),
    };
    ctx.session_id = Some(session.id);
    if parsed.is_batch() && !session.allows_batches() {
        return reject::for_body(
            RejectReason::BadInput,
            StatusCode::BAD_REQUEST,
            parsed,
            error_codes::INVALID_REQUEST,
            "JSON-RPC batches are allowed only in MCP 2025-03-26",
            None,
        );
    }

    if let Err(response) = access::authorize(app, ctx, parsed) {
        return response;
    }
    let admitted = match admit(app, ctx, parts, parsed, SlotKind::Request) {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let response = match &session.upstream {
        SessionUpstream::Http { upstream_session } => {
            let outgoing = Outgoing {
                method: Method::POST,
                headers: &parts.headers,
                session: upstream_session.as_ref(),
                body: bytes,
                initialize_id: None,
            };
            let sent = forward::send(
                app,
                &session.group,
                ctx,
                Some(parsed),
                Some(session.replica),
                outgoing,
            )
            .await;
            match sent {
                Ok(forwarded) => {
                    if forwarded.response.status() == StatusCode::NOT_FOUND {
                        // The upstream forgot its session, so the proxy's session is dead too.
                        app.sessions.remove(&session.id);
                    }
                    relay_response(forwarded.response, None, &app.shutdown)
                }
                Err(response) => response,
            }
        }
        SessionUpstream::Stdio(child) => {
            let timeout = session.group.member(session.replica).request_timeout;
            stdio_messages(app, ctx, child, parsed, &bytes, timeout).await
        }
    };
    let response = match access::needs_list_filter(app, parsed) {
        Some(method) => access::filter_list(app, ctx, &method, response).await,
        None => response,
    };
    admitted.finish(response)
}

/// The grant of the limits stage to a request: the `RateLimit` headers to send and the
/// concurrency slot to hold until the response ends.
struct Admitted {
    allowed: Option<Allowed>,
    permit: Option<Permit>,
}

impl Admitted {
    fn finish(self, mut response: Response) -> Response {
        if let Some(allowed) = &self.allowed {
            limits::add_headers(&mut response, allowed);
        }
        match self.permit {
            Some(permit) => limits::hold(response, permit),
            None => response,
        }
    }
}

/// Runs the concurrency and rate-limit checks. The slot is taken first, so a request
/// turned away for concurrency is not charged to any rate tier.
fn admit(
    app: &AppState,
    ctx: &CallContext,
    parts: &Parts,
    parsed: &JsonRpcBody,
    slot: SlotKind,
) -> Result<Admitted, Response> {
    let Some(limits) = &app.limits else {
        return Ok(Admitted {
            allowed: None,
            permit: None,
        });
    };
    let permit = limits.acquire(ctx, slot, parsed.is_batch(), &parts.headers)?;
    let allowed = limits.check(ctx, parsed.is_batch(), &parts.headers)?;
    Ok(Admitted {
        allowed: Some(allowed),
        permit: Some(permit),
    })
}

fn session_not_found(parsed: &JsonRpcBody) -> Response {
    reject::for_body(
        RejectReason::SessionNotFound,
        StatusCode::NOT_FOUND,
        parsed,
        error_codes::SESSION_NOT_FOUND,
        "session not found: it is unknown or has ended; send initialize to start a new one",
        None,
    )
}

async fn initialize(
    app: &Arc<AppState>,
    group: &Arc<UpstreamGroup>,
    ctx: &mut CallContext,
    parts: &Parts,
    bytes: Bytes,
    parsed: &JsonRpcBody,
) -> Response {
    let message = &parsed.messages()[0];
    let version = message
        .initialize_version
        .clone()
        .unwrap_or_else(|| mcp::DEFAULT_LEGACY_VERSION.to_owned());
    let subject = ctx.subject().map(str::to_owned);
    let outgoing = Outgoing {
        method: Method::POST,
        headers: &parts.headers,
        session: None,
        body: bytes,
        initialize_id: Some(serde_json::to_value(&message.id).expect("ids serialize")),
    };
    let forwarded = match forward::send(app, group, ctx, Some(parsed), None, outgoing).await {
        Ok(forwarded) => forwarded,
        Err(response) => return response,
    };
    let index = forwarded.index;
    let (upstream, mut response) = match forwarded.child {
        Some(child) => (SessionUpstream::Stdio(child), forwarded.response),
        // A stdio replica that rejected the session returned its error, sent as is.
        None if matches!(group.member(index).kind, UpstreamKind::Stdio { .. }) => {
            return forwarded.response;
        }
        None if !forwarded.response.status().is_success() => {
            return relay_response(forwarded.response, None, &app.shutdown);
        }
        None => {
            let upstream_session = forwarded
                .response
                .headers()
                .get(mcp::HEADER_SESSION_ID)
                .cloned();
            (
                SessionUpstream::Http { upstream_session },
                relay_response(forwarded.response, None, &app.shutdown),
            )
        }
    };
    let session = Arc::new(Session::new(
        version,
        upstream,
        (Arc::clone(group), index),
        subject,
        ctx.client_ip,
    ));
    super::set_session_header(&mut response, &session.id);

    if let Err(full) = app.sessions.insert(Arc::clone(&session)) {
        session.end_upstream();
        tracing::warn!(request_id = %ctx.request_id, max_sessions = full.0, "session limit reached");
        return reject::for_body(
            RejectReason::SessionBudget,
            StatusCode::SERVICE_UNAVAILABLE,
            parsed,
            error_codes::UPSTREAM_UNAVAILABLE,
            "the proxy holds its maximum number of sessions; retry later",
            None,
        );
    }
    ctx.session_id = Some(session.id);
    tracing::info!(request_id = %ctx.request_id, session_id = %session.id, "session created");
    if let Some(audit) = &app.audit {
        let user_agent = parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|agent| agent.to_owned().into());
        audit.record(
            shadowcat_audit::AuditEvent::new(shadowcat_audit::EventKind::SessionCreated {
                protocol_version: Some(session.protocol_version.clone().into()),
                user_agent,
            })
            .with_context(ctx),
        );
    }
    response
}

/// Writes each message of a legacy POST to a session's stdio child and gathers the
/// responses: one object for a single request, an array for a batch, and `202` when
/// nothing in the body expects a response.
async fn stdio_messages(
    app: &Arc<AppState>,
    ctx: &CallContext,
    child: &StdioChild,
    parsed: &JsonRpcBody,
    bytes: &Bytes,
    timeout: Duration,
) -> Response {
    let lines: Vec<Value> = if parsed.is_batch() {
        match serde_json::from_slice(bytes) {
            Ok(lines) => lines,
            Err(_) => {
                return upstream_failure(
                    app,
                    ctx,
                    &UpstreamError::Internal("batch re-parse failed".into()),
                    Some(parsed),
                );
            }
        }
    } else {
        Vec::new()
    };
    let started = Instant::now();

    let mut answers = Vec::new();
    for (index, message) in parsed.messages().iter().enumerate() {
        let line = if parsed.is_batch() {
            Bytes::from(lines[index].to_string())
        } else {
            bytes.clone()
        };
        let id = match message.kind {
            MessageKind::Request => Some(serde_json::to_value(&message.id).expect("ids serialize")),
            _ => None,
        };
        match child.call(line, id.as_ref(), timeout).await {
            Ok(Some(answer)) => answers.push(answer),
            Ok(None) => {}
            Err(error) => return upstream_failure(app, ctx, &error, Some(parsed)),
        }
    }
    app.metrics.observe_upstream_latency(started.elapsed());

    if answers.is_empty() {
        return reject::empty(StatusCode::ACCEPTED);
    }
    if parsed.is_batch() {
        reject::json_response(StatusCode::OK, &Value::Array(answers))
    } else {
        reject::json_response(StatusCode::OK, &answers.remove(0))
    }
}
