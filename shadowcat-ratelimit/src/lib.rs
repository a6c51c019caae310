//! Multi-tier GCRA rate limiting for MCP traffic.
//!
//! [`MultiTierLimiter`] checks one request against every configured tier at once:
//! `global`, `ip` (IPv6 grouped by prefix), `subject` (verified principals only),
//! `session`, `route`, `mcp_method` and `tool`. Either every tier admits the request and
//! is charged, or none is charged and the [`Decision`] names the binding tier and the
//! exact wait. Beside the rate tiers it provides concurrency limits with RAII [`Permit`]s, a
//! pre-authentication per-IP budget served by the tower [`PreAuthLayer`], a budget of
//! failed authentications per IP, and a budget for creating legacy sessions.
//!
//! # Reading a quota
//!
//! A quota is "`requests` per `per`, with up to `burst` at once". A full bucket admits
//! `burst` requests immediately. After that it admits one request every
//! `per / requests`, and an idle bucket refills at that same pace up to `burst`.
//!
//! ```toml
//! [ratelimit.tiers.ip]
//! requests = 100
//! per = "1m"
//! burst = 20
//! ```
//!
//! Here a new client may send 20 requests at once. The 21st is rejected with
//! `Retry-After: 1` because one request's worth refills every 60 s / 100 = 0.6 s. A
//! client that sends steadily gets 100 requests per minute. It takes 20 × 0.6 s = 12 s
//! of silence to earn a full burst of 20 again. `burst` is not a per-minute allowance on
//! top of `requests`: over any span of `d` seconds a client gets at most
//! `burst + d / 0.6` requests.
//!
//! # Costs
//!
//! A JSON-RPC request costs its weight (1 unless configured); a batch costs the sum, per
//! key on the `mcp_method` and `tool` tiers. Notifications and responses cost 0 on the
//! per-call tiers and 1 on `ip` and `global`. See [`Cost`].
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use shadowcat_core::{CallContext, JsonRpcBody, RequestId};
//! use shadowcat_ratelimit::{
//!     Decision, FakeRelativeClock, MultiTierLimiter, RateLimitConfig, RateLimiter,
//!     RejectionRenderer,
//! };
//!
//! let config: RateLimitConfig = serde_json::from_str(
//!     r#"{"tiers": {"ip": {"requests": 60, "per": "1m", "burst": 2}}}"#,
//! )
//! .unwrap();
//! let clock = FakeRelativeClock::default();
//! let limiter = MultiTierLimiter::with_clock(&config, clock.clone()).unwrap();
//!
//! let body = JsonRpcBody::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
//! let mut ctx = CallContext::new(RequestId::next(), "192.0.2.7".parse().unwrap(), "POST", Arc::from("/mcp"));
//! ctx.messages = Arc::from(body.messages().to_vec());
//!
//! let cost = limiter.cost(&ctx);
//! assert!(limiter.check(&ctx, &cost).is_allowed());
//! assert!(limiter.check(&ctx, &cost).is_allowed());
//!
//! // The burst of 2 is used up; one request refills every second.
//! let Decision::Limited(limited) = limiter.check(&ctx, &cost) else { panic!() };
//! assert_eq!(limited.retry_after, Duration::from_secs(1));
//! let response = RejectionRenderer::default().limited(&limited, body.messages(), false, None);
//! assert_eq!(response.status(), 429);
//! assert_eq!(response.headers()["retry-after"], "1");
//!
//! clock.advance(Duration::from_secs(1));
//! assert!(limiter.check(&ctx, &cost).is_allowed());
//! ```

mod clock;
mod coalesce;
mod concurrency;
mod config;
mod decision;
mod error;
mod layer;
mod limiter;
mod metrics;
mod response;
mod store;
mod tier;

pub use clock::{Clock, DefaultClock, FakeRelativeClock, QuantaClock};
pub use concurrency::{Permit, SlotKind};
pub use config::{
    ConcurrencyConfig, DEFAULT_AUDIT_WINDOW, DEFAULT_EVICT_INTERVAL, DEFAULT_IPV6_PREFIX,
    DEFAULT_MAX_KEYS_PER_TIER, Ipv6Prefix, KeyedTierConfig, OverflowMode, Period, QuotaConfig,
    RateLimitConfig, ResponseConfig, SessionBudgetConfig, TiersConfig, WeightsConfig,
};
pub use decision::{
    Allowed, CoalescedHits, CostTooHigh, Decision, LimitKey, LimitReason, Limited, OverflowNotice,
    Policy, Tier, TierStatus,
};
pub use error::RateLimitError;
pub use layer::{ClientIp, PreAuthLayer, PreAuthRejection, PreAuthService};
pub use limiter::{MultiTierLimiter, RateLimiter};
pub use metrics::{MetricsSnapshot, TierMetrics};
pub use response::{
    RATELIMIT, RATELIMIT_POLICY, RejectionRenderer, apply_rate_limit_headers, policy_value,
    remaining_value,
};
pub use store::{InMemoryStore, KeyedStore, Peek};
pub use tier::Cost;
