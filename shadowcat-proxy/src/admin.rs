//! The admin listener: `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};

use shadowcat_ratelimit::RateLimiter;

use crate::pipeline::AppState;

/// Builds the admin router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when every upstream group can serve a request: a single `[upstream]` once a
/// check has reached it, an `[[upstreams]]` group while one replica is healthy, not
/// ejected and not behind an open breaker. The body names each group's state.
async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let mut body = String::new();
    let mut ready = true;
    for group in app.routes.groups() {
        let group_ready = group.is_ready();
        ready &= group_ready;
        let state = if group_ready { "ready" } else { "unavailable" };
        body.push_str(&format!("{}: {state}\n", group.name));
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let mut out = String::with_capacity(4096);
    app.metrics.render(app.sessions.len(), &mut out);
    if let Some(audit) = &app.audit {
        audit.render_prometheus(&mut out);
    }
    if let Some(limits) = &app.limits {
        limits.limiter.snapshot().render_prometheus(&mut out);
    }
    for group in app.routes.groups() {
        group.render_prometheus(&mut out);
    }
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
