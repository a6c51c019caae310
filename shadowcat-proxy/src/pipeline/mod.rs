//! The request pipeline for the MCP endpoint: `POST`, `GET` and `DELETE` on `/mcp`.
//!
//! Stages run in a fixed order so that no later stage reads unchecked input:
//! Host and Origin guard, body size limit, JSON-RPC parse, era classification,
//! mirrored-header validation (modern) or session lookup (legacy), then forwarding.

// A rejection is a response built once on a failure path, so returning it by value in
// `Err` costs nothing on the hot path.
#![allow(clippy::result_large_err)]

mod access;
mod audit;
mod forward;
mod guard;
pub mod limits;
mod post;
pub mod reject;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::any;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use shadowcat_audit::{AuditHandle, Outcome, RejectReason, UpstreamFailure};
use shadowcat_core::mcp::HeaderField;
use shadowcat_core::{CallContext, ClientAddrResolver, RequestId, SessionId, error_codes};
use tokio_util::sync::CancellationToken;

pub use guard::{GuardRejection, HostGuard};

use crate::metrics::{ProxyMetrics, method_label};
use crate::session::{Session, SessionTable};
use crate::upstream::{Routes, UpstreamError, UpstreamGroup};

/// Shared state of the MCP endpoint.
pub struct AppState {
    /// Host and Origin checks.
    pub guard: HostGuard,
    /// Client address resolution behind trusted proxies.
    pub resolver: ClientAddrResolver,
    /// Maximum request body size in bytes.
    pub max_body_bytes: usize,
    /// The endpoint paths and the upstream group behind each.
    pub routes: Routes,
    /// Live legacy sessions.
    pub sessions: SessionTable,
    /// The proxy's own metrics.
    pub metrics: ProxyMetrics,
    /// Cancelled when the proxy starts shutting down; ends open streams.
    pub shutdown: CancellationToken,
    /// The audit trail, when one is configured.
    pub audit: Option<AuditHandle>,
    /// Authentication, when an `[auth]` table is configured.
    pub authenticator: Option<crate::auth::Authenticator>,
    /// Authorization rules, when a `[policy]` table is configured.
    pub policy: Option<crate::policy::Policy>,
    /// Rate and concurrency limits, when configured.
    pub limits: Option<limits::Limits>,
}

/// Builds the router for the MCP endpoints: `server.path` and every `[[routes]]` path.
pub fn router(state: Arc<AppState>, path: &str) -> Router {
    let mut router = Router::new();
    for route in state.routes.paths() {
        router = router.route(route, any(handle));
    }
    if let Some(metadata) = state
        .authenticator
        .as_ref()
        .and_then(|auth| auth.resource_metadata())
    {
        let document = Arc::new(metadata.document().clone());
        let mut paths = metadata.paths().to_vec();
        let suffixed = format!("{}{path}", crate::auth::WELL_KNOWN_PATH);
        if !paths.contains(&suffixed) {
            paths.push(suffixed);
        }
        for metadata_path in &paths {
            let document = Arc::clone(&document);
            router = router.route(
                metadata_path,
                axum::routing::get(move || async move { axum::Json((*document).clone()) }),
            );
        }
    }
    router.with_state(state)
}

async fn handle(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let http_method: &'static str = match *request.method() {
        Method::POST => "POST",
        Method::GET => "GET",
        Method::DELETE => "DELETE",
        _ => {
            let mut response = audit::rejected(
                reject::empty(StatusCode::METHOD_NOT_ALLOWED),
                RejectReason::MethodNotAllowed,
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            return response;
        }
    };
    let Some(group) = app.routes.for_path(request.uri().path()).cloned() else {
        return reject::empty(StatusCode::NOT_FOUND);
    };
    let ctx = app.context(&request, peer, http_method);
    let accepted = Instant::now();
    let pre_auth = match &app.limits {
        Some(limits) => limits.pre_auth(&ctx, request.headers()),
        None => Ok(()),
    };
    let (response, ctx) = match (pre_auth, http_method) {
        (Err(response), _) => (response, ctx),
        (Ok(()), "POST") => post::handle(&app, &group, ctx, request).await,
        (Ok(()), "GET") => stream::get(&app, &group, ctx, request).await,
        (Ok(()), _) => stream::delete(&app, &group, ctx, request).await,
    };

    // NOTE: for a streamed response the recorded latency is the time to the response
    // headers, because the record is written before the stream ends.
    let response = match &app.audit {
        Some(audit_handle) => {
            let upstream_name = response
                .extensions()
                .get::<forward::UpstreamName>()
                .map_or_else(|| Arc::clone(&group.name), |name| Arc::clone(&name.0));
            let events = audit::records(&ctx, &response, accepted.elapsed(), &upstream_name);
            audit::write(audit_handle, events, response, &ctx).await
        }
        None => response,
    };

    let method = ctx
        .messages
        .first()
        .and_then(|message| message.method.as_deref());
    app.metrics.count_request(
        http_method,
        method_label(method),
        response.status().as_u16(),
    );
    tracing::debug!(
        request_id = %ctx.request_id,
        http_method,
        method = method_label(method),
        status = response.status().as_u16(),
        "request answered"
    );
    response
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("routes", &self.routes)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl AppState {
    fn context(
        &self,
        request: &Request,
        peer: SocketAddr,
        http_method: &'static str,
    ) -> CallContext {
        let headers = request.headers();
        let header_texts = |name: &'static str| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
        };
        let client_ip = self.resolver.resolve(
            peer.ip(),
            header_texts("x-forwarded-for"),
            header_texts("forwarded"),
        );
        CallContext::new(
            RequestId::next(),
            client_ip,
            http_method,
            Arc::from(request.uri().path()),
        )
    }

    /// Looks up the legacy session a request names. A session belongs to the route that
    /// created it, so its id is unknown on any other route.
    ///
    /// # Errors
    ///
    /// Returns the rejection to send: `400` when the header is missing or repeated,
    /// `404` when the id is unknown or the session has ended.
    fn session_for(
        &self,
        group: &Arc<UpstreamGroup>,
        headers: &HeaderMap,
    ) -> Result<Arc<Session>, SessionLookupError> {
        let field = HeaderField::from_values(
            headers
                .get_all(shadowcat_core::mcp::HEADER_SESSION_ID)
                .iter()
                .map(HeaderValue::as_bytes),
        );
        let text = match field {
            HeaderField::Missing => return Err(SessionLookupError::Missing),
            HeaderField::Invalid => return Err(SessionLookupError::Unknown),
            HeaderField::Value(text) => text,
        };
        text.parse::<SessionId>()
            .ok()
            .and_then(|id| self.sessions.get(&id))
            .filter(|session| Arc::ptr_eq(&session.group, group))
            .ok_or(SessionLookupError::Unknown)
    }
}

/// The reason a legacy request has no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionLookupError {
    /// No `Mcp-Session-Id` header.
    Missing,
    /// The id is malformed, unknown, or its session has ended.
    Unknown,
}

/// Maps an upstream failure to the client's response. The upstream's own error text
/// goes to the log, never to the client.
fn upstream_failure(
    app: &AppState,
    ctx: &CallContext,
    error: &UpstreamError,
    body: Option<&shadowcat_core::JsonRpcBody>,
) -> Response {
    app.metrics.count_upstream_error();
    tracing::warn!(request_id = %ctx.request_id, %error, "upstream request failed");
    let (status, code, message, outcome, failure) = match error {
        UpstreamError::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            error_codes::UPSTREAM_TIMEOUT,
            "the upstream MCP server did not respond in time",
            Outcome::Timeout,
            UpstreamFailure::Timeout,
        ),
        UpstreamError::Unreachable(_) => (
            StatusCode::BAD_GATEWAY,
            error_codes::UPSTREAM_ERROR,
            "the upstream MCP server is unavailable",
            Outcome::UpstreamError,
            UpstreamFailure::Connect,
        ),
        UpstreamError::Failed(_) | UpstreamError::Internal(_) => (
            StatusCode::BAD_GATEWAY,
            error_codes::UPSTREAM_ERROR,
            "the upstream MCP server is unavailable",
            Outcome::UpstreamError,
            UpstreamFailure::Closed,
        ),
    };
    let mut response = match body {
        Some(body) => reject::errors_for_body(status, body, code, message, None),
        None => reject::error(status, None, code, message, None),
    };
    response
        .extensions_mut()
        .insert(audit::Verdict::UpstreamFailed {
            outcome,
            failure,
            code,
        });
    response
}

/// Turns an upstream HTTP response into the client's response: filtered headers, the
/// body streamed as it arrives, and event streams ended when the proxy shuts down.
fn relay_response(
    upstream: Response<Body>,
    session: Option<&SessionId>,
    shutdown: &CancellationToken,
) -> Response {
    let (parts, body) = upstream.into_parts();
    let headers = crate::upstream::http::client_response_headers(&parts.headers);
    let is_stream = headers.contains_key("x-accel-buffering");
    let body = if is_stream {
        let shutdown = shutdown.clone();
        let stream = body
            .into_data_stream()
            .take_until(async move { shutdown.cancelled_owned().await });
        Body::from_stream(stream)
    } else {
        body
    };
    let mut response = Response::new(body);
    *response.status_mut() = parts.status;
    *response.headers_mut() = headers;
    if let Some(session) = session {
        set_session_header(&mut response, session);
    }
    response
}

fn set_session_header(response: &mut Response, session: &SessionId) {
    let value = HeaderValue::from_str(&session.to_string()).expect("hex is a valid header value");
    response.headers_mut().insert(
        HeaderName::from_static(shadowcat_core::mcp::HEADER_SESSION_ID),
        value,
    );
}
