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

/// Ready once a probe has reached the upstream and learned which eras it serves.
async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    if app.eras.is_known() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream not reachable yet\n",
        )
            .into_response()
    }
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
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
