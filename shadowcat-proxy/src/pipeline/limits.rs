//! The rate-limit and concurrency stages: the pre-authentication per-IP check, the
//! session creation budget, the multi-tier check of each JSON-RPC call, and the slots
//! that bound in-flight requests and open streams.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt;
use http::{HeaderMap, header};
use shadowcat_core::{CallContext, Message};
use shadowcat_ratelimit::{
    Allowed, Decision, Limited, MultiTierLimiter, Permit, RateLimitConfig, RateLimitError,
    RejectionRenderer, SlotKind, apply_rate_limit_headers,
};

use super::audit::Verdict;

/// The limiter and the renderer of its rejections.
pub struct Limits {
    /// The multi-tier limiter.
    pub limiter: Arc<MultiTierLimiter>,
    renderer: RejectionRenderer,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

impl Limits {
    /// Builds the limiter from the `[ratelimit]` section.
    ///
    /// # Errors
    ///
    /// Returns [`RateLimitError`] naming the bad field when the section is invalid.
    pub fn new(config: &RateLimitConfig) -> Result<Self, RateLimitError> {
        Ok(Self {
            limiter: Arc::new(MultiTierLimiter::new(config)?),
            renderer: RejectionRenderer::new(&config.response)?,
        })
    }

    /// Charges the pre-authentication per-IP budget.
    pub(super) fn pre_auth(&self, ctx: &CallContext, headers: &HeaderMap) -> Result<(), Response> {
        if !self.limiter.has_pre_auth() {
            return Ok(());
        }
        match self.limiter.check_pre_auth(ctx.client_ip) {
            Decision::Limited(limited) => Err(self.reject(&limited, &[], false, headers)),
            _ => Ok(()),
        }
    }

    /// Charges the budget for creating a legacy session.
    pub(super) fn session_creation(
        &self,
        ctx: &CallContext,
        messages: &[Message],
        headers: &HeaderMap,
    ) -> Result<(), Response> {
        match self
            .limiter
            .check_session_creation(ctx.client_ip, ctx.principal.as_deref())
        {
            Decision::Limited(limited) => Err(self.reject(&limited, messages, false, headers)),
            _ => Ok(()),
        }
    }

    /// Runs the multi-tier check of every call in the body and returns the values
    /// for the `RateLimit` headers of the response.
    pub(super) fn check(
        &self,
        ctx: &CallContext,
        batch: bool,
        headers: &HeaderMap,
    ) -> Result<Allowed, Response> {
        match self.limiter.check_request(ctx) {
            Decision::Allowed(allowed) => Ok(allowed),
            Decision::Limited(limited) => Err(self.reject(&limited, &ctx.messages, batch, headers)),
            Decision::CostTooHigh(rejection) => {
                let response = self.renderer.cost_too_high(
                    &rejection,
                    &ctx.messages,
                    batch,
                    user_agent(headers),
                );
                let mut response = into_axum(response);
                response.extensions_mut().insert(Verdict::Limited {
                    tier: rejection.tier.as_str(),
                    key: rejection.key.to_string(),
                    hits: Some(1),
                });
                Err(response)
            }
        }
    }

    /// Takes a concurrency slot for the request or stream.
    pub(super) fn acquire(
        &self,
        ctx: &CallContext,
        kind: SlotKind,
        batch: bool,
        headers: &HeaderMap,
    ) -> Result<Permit, Response> {
        self.limiter
            .try_acquire(kind, ctx.principal.as_deref())
            .map_err(|limited| self.reject(&limited, &ctx.messages, batch, headers))
    }

    fn reject(
        &self,
        limited: &Limited,
        messages: &[Message],
        batch: bool,
        headers: &HeaderMap,
    ) -> Response {
        let response = self
            .renderer
            .limited(limited, messages, batch, user_agent(headers));
        let mut response = into_axum(response);
        response.extensions_mut().insert(Verdict::Limited {
            tier: limited.tier.as_str(),
            key: limited.key.to_string(),
            hits: limited.audit.map(|hits| hits.suppressed + 1),
        });
        response
    }
}

/// Adds the `RateLimit` headers of the tightest tier to an allowed response.
pub(super) fn add_headers(response: &mut Response, allowed: &Allowed) {
    apply_rate_limit_headers(response.headers_mut(), allowed);
}

/// Keeps `permit` until the response body has been sent or dropped, so a slot covers
/// the whole of a streamed response.
pub(super) fn hold(response: Response, permit: Permit) -> Response {
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _slot = &permit;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
}

fn into_axum(response: http::Response<Vec<u8>>) -> Response {
    response.map(Body::from)
}
