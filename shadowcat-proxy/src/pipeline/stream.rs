//! `GET /mcp` (the legacy server-to-client event stream) and `DELETE /mcp` (ending a
//! legacy session).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Method, StatusCode, header};
use shadowcat_audit::RejectReason;
use shadowcat_core::{CallContext, error_codes};
use tokio_stream::wrappers::BroadcastStream;

use super::forward::{self, Outgoing};
use super::post::guard_rejection;
use super::{AppState, SessionLookupError, reject, relay_response};
use crate::session::{Session, SessionUpstream};
use crate::upstream::{UpstreamGroup, UpstreamKind};

/// Runs the guard and authentication, then finds the session a GET or DELETE names and
/// records its id in `ctx`.
async fn lookup(
    app: &AppState,
    group: &Arc<UpstreamGroup>,
    ctx: &mut CallContext,
    headers: &http::HeaderMap,
) -> Result<Arc<Session>, Response> {
    if let Err(rejection) = app.guard.check(headers) {
        return Err(guard_rejection(rejection));
    }
    super::access::authenticate(app, ctx, headers, None).await?;
    let session = app
        .session_for(group, headers)
        .map_err(|error| match error {
            SessionLookupError::Missing => reject::single(
                RejectReason::BadInput,
                StatusCode::BAD_REQUEST,
                None,
                error_codes::INVALID_REQUEST,
                "missing Mcp-Session-Id header: GET and DELETE need a legacy session",
                None,
            ),
            SessionLookupError::Unknown => reject::single(
                RejectReason::SessionNotFound,
                StatusCode::NOT_FOUND,
                None,
                error_codes::SESSION_NOT_FOUND,
                "session not found: it is unknown or has ended; send initialize to start a new one",
                None,
            ),
        })?;
    ctx.session_id = Some(session.id);
    Ok(session)
}

/// Opens the session's server-to-client event stream, passing `Last-Event-ID` through.
pub(super) async fn get(
    app: &Arc<AppState>,
    group: &Arc<UpstreamGroup>,
    mut ctx: CallContext,
    request: Request,
) -> (Response, CallContext) {
    let session = match lookup(app, group, &mut ctx, request.headers()).await {
        Ok(session) => session,
        Err(response) => return (response, ctx),
    };
    let permit = match &app.limits {
        Some(limits) => match limits.acquire(
            &ctx,
            shadowcat_ratelimit::SlotKind::Stream,
            false,
            request.headers(),
        ) {
            Ok(permit) => Some(permit),
            Err(response) => return (response, ctx),
        },
        None => None,
    };

    let response = match &session.upstream {
        SessionUpstream::Http { upstream_session } => {
            let outgoing = Outgoing {
                method: Method::GET,
                headers: request.headers(),
                session: upstream_session.as_ref(),
                body: Bytes::new(),
                initialize_id: None,
            };
            let sent = forward::send(
                app,
                &session.group,
                &ctx,
                None,
                Some(session.replica),
                outgoing,
            )
            .await;
            match sent {
                Ok(forwarded) => relay_response(forwarded.response, None, &app.shutdown),
                Err(response) => response,
            }
        }
        SessionUpstream::Stdio(child) => {
            // NOTE: stdio children keep no event history, so `Last-Event-ID` cannot
            // replay missed events; the stream starts from now.
            let session_for_ids = Arc::clone(&session);
            let shutdown = app.shutdown.clone();
            let events = BroadcastStream::new(child.subscribe())
                .filter_map(move |message| {
                    let session = Arc::clone(&session_for_ids);
                    async move {
                        let message = message.ok()?;
                        let event = format!(
                            "id: {}\ndata: {}\n\n",
                            session.next_event_id(),
                            String::from_utf8_lossy(&message)
                        );
                        Some(Ok::<_, Infallible>(Bytes::from(event)))
                    }
                })
                .take_until(async move { shutdown.cancelled_owned().await });
            let mut response = Response::new(Body::from_stream(events));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            response
        }
    };
    let response = match permit {
        Some(permit) => super::limits::hold(response, permit),
        None => response,
    };
    (response, ctx)
}

/// Ends a legacy session on both sides: the upstream gets a `DELETE` (or its stdio
/// child is stopped) and the proxy drops the id, so later requests get `404`.
pub(super) async fn delete(
    app: &Arc<AppState>,
    group: &Arc<UpstreamGroup>,
    mut ctx: CallContext,
    request: Request,
) -> (Response, CallContext) {
    let session = match lookup(app, group, &mut ctx, request.headers()).await {
        Ok(session) => session,
        Err(response) => return (response, ctx),
    };
    app.sessions.remove(&session.id);

    match &session.upstream {
        SessionUpstream::Http { upstream_session } => {
            // Ending a session bypasses the breaker: the replica holds state that
            // should be released whenever it can be reached.
            if let (UpstreamKind::Http(upstream), Some(upstream_session)) = (
                &session.group.member(session.replica).kind,
                upstream_session,
            ) {
                match upstream
                    .send(
                        Method::DELETE,
                        request.headers(),
                        Some(upstream_session),
                        Body::empty(),
                    )
                    .await
                {
                    Ok(response)
                        if response.status().is_success()
                            || response.status() == StatusCode::NOT_FOUND => {}
                    Ok(response) => tracing::warn!(
                        request_id = %ctx.request_id,
                        status = response.status().as_u16(),
                        "upstream did not end its session"
                    ),
                    Err(error) => {
                        tracing::warn!(request_id = %ctx.request_id, %error, "could not end the upstream session")
                    }
                }
            }
        }
        SessionUpstream::Stdio(_) => session.end_upstream(),
    }
    crate::server::record_session_closed(
        app,
        &session,
        shadowcat_audit::SessionCloseReason::ClientDelete,
    );
    tracing::info!(request_id = %ctx.request_id, session_id = %session.id, "session closed by client");
    (reject::empty(StatusCode::NO_CONTENT), ctx)
}
