//! The `[ratelimit]` section of the proxy configuration.
//!
//! Every type here deserializes with `deny_unknown_fields`. Values that make no sense fail
//! at parse time with a message that names the field and the value: a zero rate, a zero
//! burst, a sub-second period, or a prefix longer than 128 bits.

use std::collections::BTreeMap;
use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::decision::Policy;

/// Default IPv6 prefix length used to group client addresses.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
/// Default cap on tracked keys per tier.
pub const DEFAULT_MAX_KEYS_PER_TIER: usize = 100_000;
/// Default interval at which the proxy calls `evict_idle`.
pub const DEFAULT_EVICT_INTERVAL: Duration = Duration::from_secs(60);
/// Default window in which repeated rejections of one tier and key produce one audit record.
pub const DEFAULT_AUDIT_WINDOW: Duration = Duration::from_secs(60);

/// The whole `[ratelimit]` section.
///
/// Every tier is optional and off when absent, so `RateLimitConfig::default()` limits
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Rate tiers checked on every MCP request after authentication.
    #[serde(default)]
    pub tiers: TiersConfig,
    /// Per-IP rate checked by the pre-authentication tower layer, before any JWT work.
    #[serde(default)]
    pub pre_auth: Option<QuotaConfig>,
    /// Per-IP budget of failed authentications; an IP that exhausts it is rejected by the
    /// pre-authentication layer until the budget refills.
    #[serde(default)]
    pub auth_failures: Option<QuotaConfig>,
    /// Budget for creating legacy sessions (`initialize`).
    #[serde(default)]
    pub sessions: SessionBudgetConfig,
    /// In-flight request and open stream limits.
    #[serde(default)]
    pub concurrency: ConcurrencyConfig,
    /// Cost weights per MCP method and per tool.
    #[serde(default)]
    pub weights: WeightsConfig,
    /// Rendering options for rejections.
    #[serde(default)]
    pub response: ResponseConfig,
    /// IPv6 clients are grouped by this prefix length, so one host cannot escape the
    /// `ip` tier by rotating addresses inside its allocation. Default 64.
    #[serde(default)]
    pub ipv6_prefix: Ipv6Prefix,
    /// Cap on tracked keys per tier, unless the tier sets its own `max_keys`.
    /// Default 100000.
    #[serde(default = "default_max_keys")]
    pub max_keys_per_tier: NonZeroUsize,
    /// Handling of new keys once their tier tracks `max_keys` keys.
    #[serde(default)]
    pub overflow: OverflowMode,
    /// Interval at which the proxy calls `evict_idle`. Default 60 s. It is also the
    /// `Retry-After` given to keys rejected with `overflow = "reject"`.
    #[serde(default = "default_evict_interval", with = "duration_text")]
    pub evict_interval: Duration,
    /// Window in which repeated rejections for one tier and key yield one audit record.
    /// Default 60 s.
    #[serde(default = "default_audit_window", with = "duration_text")]
    pub audit_window: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            tiers: TiersConfig::default(),
            pre_auth: None,
            auth_failures: None,
            sessions: SessionBudgetConfig::default(),
            concurrency: ConcurrencyConfig::default(),
            weights: WeightsConfig::default(),
            response: ResponseConfig::default(),
            ipv6_prefix: Ipv6Prefix::default(),
            max_keys_per_tier: default_max_keys(),
            overflow: OverflowMode::default(),
            evict_interval: DEFAULT_EVICT_INTERVAL,
            audit_window: DEFAULT_AUDIT_WINDOW,
        }
    }
}

fn default_max_keys() -> NonZeroUsize {
    NonZeroUsize::new(DEFAULT_MAX_KEYS_PER_TIER).unwrap_or(NonZeroUsize::MIN)
}

fn default_evict_interval() -> Duration {
    DEFAULT_EVICT_INTERVAL
}

fn default_audit_window() -> Duration {
    DEFAULT_AUDIT_WINDOW
}

/// The rate tiers checked by [`MultiTierLimiter::check`](crate::MultiTierLimiter).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiersConfig {
    /// One bucket shared by all traffic.
    pub global: Option<QuotaConfig>,
    /// One bucket per client IP (IPv6 grouped by `ipv6_prefix`).
    pub ip: Option<KeyedTierConfig>,
    /// One bucket per verified subject, with overrides per subject (customer plans).
    pub subject: Option<KeyedTierConfig>,
    /// One bucket per legacy session.
    pub session: Option<KeyedTierConfig>,
    /// One bucket per HTTP method and normalized path.
    pub route: Option<KeyedTierConfig>,
    /// One bucket per MCP method, such as `tools/call`, shared by all callers.
    pub mcp_method: Option<KeyedTierConfig>,
    /// One bucket per tool, prompt or resource, shared by all callers, with overrides
    /// per name. Buckets are keyed by name alone, so a tool and a prompt with the same
    /// name share one.
    pub tool: Option<KeyedTierConfig>,
}

/// A rate: `requests` per `per`, with up to `burst` at once.
///
/// A full bucket admits `burst` requests immediately, then one request every
/// `per / requests`. An idle bucket refills at that same pace until it is full, with room
/// for `burst` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Requests admitted per `per`, on average.
    pub requests: NonZeroU32,
    /// The period of the rate, written as `"30s"`, `"1m"` or `"1h"`.
    pub per: Period,
    /// Requests a full bucket admits at once.
    pub burst: NonZeroU32,
}

impl QuotaConfig {
    /// Builds a quota from its three numbers.
    pub fn new(requests: NonZeroU32, per: Period, burst: NonZeroU32) -> Self {
        Self {
            requests,
            per,
            burst,
        }
    }

    /// Returns the policy reported in `RateLimit-Policy` headers.
    pub fn policy(&self) -> Policy {
        Policy {
            requests: self.requests,
            per: self.per.get(),
            burst: self.burst,
        }
    }

    /// Returns the time one request's worth of budget takes to refill: `per / requests`.
    pub fn interval(&self) -> Duration {
        self.per.get() / self.requests.get()
    }
}

/// A keyed tier: a default quota, optional overrides per key, and an optional key cap.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyedTierConfig {
    /// Requests admitted per `per`, on average.
    pub requests: NonZeroU32,
    /// The period of the rate, written as `"30s"`, `"1m"` or `"1h"`.
    pub per: Period,
    /// Requests a full bucket admits at once.
    pub burst: NonZeroU32,
    /// Quotas for named keys: subjects for the `subject` tier, tool, prompt or resource
    /// names for the `tool` tier, method names for `mcp_method`. Overridden keys have
    /// their own bucket that is never evicted and never counts toward `max_keys`.
    #[serde(default)]
    pub overrides: BTreeMap<String, QuotaConfig>,
    /// Cap on tracked keys for this tier; defaults to `max_keys_per_tier`.
    #[serde(default)]
    pub max_keys: Option<NonZeroUsize>,
}

impl KeyedTierConfig {
    /// Builds a tier config with no overrides and the default key cap.
    pub fn new(quota: QuotaConfig) -> Self {
        Self {
            requests: quota.requests,
            per: quota.per,
            burst: quota.burst,
            overrides: BTreeMap::new(),
            max_keys: None,
        }
    }

    /// Returns the tier's default quota.
    pub fn quota(&self) -> QuotaConfig {
        QuotaConfig::new(self.requests, self.per, self.burst)
    }
}

/// Budget for creating legacy sessions, so clients cannot mint sessions to escape
/// per-session limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionBudgetConfig {
    /// Sessions created per client IP.
    pub ip: Option<QuotaConfig>,
    /// Sessions created per verified subject.
    pub subject: Option<QuotaConfig>,
}

/// Limits on work in progress rather than on rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyConfig {
    /// In-flight requests across all callers.
    pub in_flight_total: Option<NonZeroU32>,
    /// In-flight requests per verified subject.
    pub in_flight_per_subject: Option<NonZeroU32>,
    /// Open SSE streams (`subscriptions/listen`, legacy GET) across all callers.
    pub streams_total: Option<NonZeroU32>,
    /// Open SSE streams per verified subject.
    pub streams_per_subject: Option<NonZeroU32>,
}

/// Cost weights. A request costs the weight of its tool, prompt or resource if one is
/// configured, else the weight of its method if one is configured, else 1.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsConfig {
    /// Weight per MCP method, such as `"tools/list" = 1`.
    #[serde(default)]
    pub methods: BTreeMap<String, NonZeroU32>,
    /// Weight per tool, prompt or resource name, such as `"expensive_search" = 10`.
    #[serde(default)]
    pub tools: BTreeMap<String, NonZeroU32>,
}

/// Rendering options for rejections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseConfig {
    /// Clients whose `User-Agent` contains one of these substrings get rejections with
    /// HTTP status 200, because they drop the body of any non-2xx response. The
    /// JSON-RPC error and the headers are the same as with 429.
    #[serde(default)]
    pub ok_status_user_agents: Vec<String>,
}

/// Handling of new keys once a tier tracks `max_keys` keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowMode {
    /// New keys share one overflow bucket with the tier's quota until eviction frees room.
    #[default]
    Shared,
    /// New keys are rejected until eviction frees room.
    Reject,
}

/// The period of a rate: a whole number of seconds, at least one.
///
/// Deserializes from text such as `"30s"`, `"1m"`, `"1h"` or `"1h30m"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period(Duration);

impl Period {
    /// Builds a period of whole seconds; returns `None` for zero.
    pub const fn from_secs(secs: u64) -> Option<Self> {
        if secs == 0 {
            None
        } else {
            Some(Self(Duration::from_secs(secs)))
        }
    }

    /// Returns the period as a duration.
    pub const fn get(self) -> Duration {
        self.0
    }

    /// Parses text such as `"30s"`, `"1m"` or `"1h"`.
    ///
    /// # Errors
    ///
    /// Returns [`RateLimitError::InvalidConfig`](crate::RateLimitError) naming `per` when
    /// the text is not a duration, or is not a whole number of seconds of at least one.
    pub fn parse(text: &str) -> Result<Self, crate::RateLimitError> {
        let invalid = |reason| crate::RateLimitError::InvalidConfig {
            field: "per".to_owned(),
            value: format!("{text:?}"),
            reason,
        };
        let duration = humantime::parse_duration(text)
            .map_err(|_| invalid("expected a duration such as \"30s\", \"1m\" or \"1h\""))?;
        if duration.subsec_nanos() != 0 || duration.is_zero() {
            return Err(invalid(
                "expected a whole number of seconds, at least \"1s\"",
            ));
        }
        Ok(Self(duration))
    }
}

impl fmt::Debug for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Period::parse(&text).map_err(de::Error::custom)
    }
}

/// The IPv6 prefix length used to group client addresses: 1 to 128, default 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Prefix(u8);

impl Ipv6Prefix {
    /// Builds a prefix length; returns `None` outside 1 to 128.
    pub const fn new(bits: u8) -> Option<Self> {
        if bits >= 1 && bits <= 128 {
            Some(Self(bits))
        } else {
            None
        }
    }

    /// Returns the prefix length in bits.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl Default for Ipv6Prefix {
    fn default() -> Self {
        Self(DEFAULT_IPV6_PREFIX)
    }
}

impl<'de> Deserialize<'de> for Ipv6Prefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bits = u64::deserialize(deserializer)?;
        u8::try_from(bits)
            .ok()
            .and_then(Ipv6Prefix::new)
            .ok_or_else(|| {
                de::Error::custom(crate::RateLimitError::InvalidConfig {
                    field: "ipv6_prefix".to_owned(),
                    value: bits.to_string(),
                    reason: "expected a prefix length from 1 to 128",
                })
            })
    }
}

/// Serde adapter for durations written as text, such as `"60s"`.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        let duration = humantime::parse_duration(&text).map_err(|_| {
            de::Error::custom(format!(
                "invalid duration {text:?}: expected text such as \"30s\" or \"1m\""
            ))
        })?;
        if duration.is_zero() {
            return Err(de::Error::custom(format!(
                "invalid duration {text:?}: must be longer than zero"
            )));
        }
        Ok(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RateLimitConfig, serde_json::Error> {
        // TOML is the proxy's format, but the shapes are identical in JSON and this crate
        // does not depend on a TOML parser.
        serde_json::from_str(text)
    }

    #[test]
    fn example_section_parses() {
        let config = parse(
            r#"{
                "tiers": {
                    "ip": {"requests": 100, "per": "1m", "burst": 20},
                    "tool": {"requests": 30, "per": "1m", "burst": 5,
                        "overrides": {"expensive_search": {"requests": 5, "per": "1m", "burst": 1}}}
                }
            }"#,
        )
        .unwrap();
        let ip = config.tiers.ip.unwrap();
        assert_eq!(ip.requests.get(), 100);
        assert_eq!(ip.per.get(), Duration::from_secs(60));
        assert_eq!(ip.burst.get(), 20);
        let tool = config.tiers.tool.unwrap();
        assert_eq!(tool.overrides["expensive_search"].burst.get(), 1);
        assert_eq!(config.ipv6_prefix.get(), 64);
        assert_eq!(config.overflow, OverflowMode::Shared);
    }

    #[test]
    fn period_units_parse() {
        for (text, secs) in [("30s", 30), ("1m", 60), ("1h", 3600), ("1h30m", 5400)] {
            assert_eq!(Period::parse(text).unwrap().get().as_secs(), secs, "{text}");
        }
    }

    #[test]
    fn period_rejects_bad_text() {
        for text in ["0s", "500ms", "1.5s", "soon", ""] {
            let error = Period::parse(text).unwrap_err().to_string();
            assert!(error.contains("per"), "{error}");
            assert!(error.contains(&format!("{text:?}")), "{error}");
        }
    }

    #[test]
    fn zero_requests_is_rejected() {
        let error = parse(r#"{"tiers":{"global":{"requests":0,"per":"1s","burst":1}}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("nonzero") || error.contains("zero"),
            "{error}"
        );
    }

    #[test]
    fn unknown_field_is_rejected() {
        let error = parse(r#"{"tiers":{"global":{"requests":1,"per":"1s","burst":1,"burts":2}}}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("burts"), "{error}");
    }

    #[test]
    fn bad_prefix_names_field() {
        let error = parse(r#"{"ipv6_prefix": 129}"#).unwrap_err().to_string();
        assert!(error.contains("ipv6_prefix"), "{error}");
        assert!(error.contains("129"), "{error}");
    }

    #[test]
    fn overflow_modes_parse() {
        assert_eq!(
            parse(r#"{"overflow":"reject"}"#).unwrap().overflow,
            OverflowMode::Reject
        );
        assert!(parse(r#"{"overflow":"drop"}"#).is_err());
    }

    #[test]
    fn interval_is_per_over_requests() {
        let quota = QuotaConfig::new(
            NonZeroU32::new(100).unwrap(),
            Period::from_secs(60).unwrap(),
            NonZeroU32::new(20).unwrap(),
        );
        assert_eq!(quota.interval(), Duration::from_millis(600));
    }
}
