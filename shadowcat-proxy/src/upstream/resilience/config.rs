//! The `[[upstreams]]` configuration table: replicas, balancing policy, breaker, health
//! checks and retry budget.
//!
//! ```toml
//! [[upstreams]]
//! name = "search"
//! policy = "p2c"
//! members = [
//!     { url = "http://127.0.0.1:9001/mcp", weight = 2 },
//!     { url = "http://127.0.0.1:9002/mcp", request_timeout = "10s" },
//! ]
//!
//! [upstreams.breaker]
//! failure_threshold = 5
//! window = "10s"
//! open_base = "5s"
//!
//! [upstreams.retry]
//! budget_ratio = 0.2
//! ```

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// One `[[upstreams]]` entry: a named group of replicas serving the same MCP server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The group's name, used in logs, metrics and audit records.
    pub name: String,
    /// How a replica is chosen for each request.
    #[serde(default)]
    pub policy: BalancePolicy,
    /// The replicas.
    pub members: Vec<MemberConfig>,
    /// The circuit breaker each replica gets.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Active health checks and passive outlier detection.
    #[serde(default)]
    pub health: HealthConfig,
    /// The retry budget shared by the group.
    #[serde(default)]
    pub retry: RetryConfig,
}

/// A balancing policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancePolicy {
    /// Power of two choices: sample two replicas, take the one with the lower
    /// latency EWMA times (in-flight + 1), divided by weight.
    #[default]
    P2c,
    /// Smooth weighted round robin.
    RoundRobin,
    /// The replica with the fewest in-flight requests per unit of weight.
    LeastRequests,
}

/// One replica of an upstream group.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// The replica's Streamable HTTP endpoint.
    pub url: String,
    /// The replica's share of traffic relative to the others; 1 by default.
    #[serde(default = "one")]
    pub weight: NonZeroU32,
    /// The limit on establishing a connection; 2s by default.
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// The limit on a whole request, excluding streamed responses; 30s by default.
    #[serde(default = "default_request_timeout", deserialize_with = "duration")]
    pub request_timeout: Duration,
}

/// Circuit breaker settings, per replica.
///
/// The breaker opens when, within `window`, at least `min_requests` outcomes were
/// recorded and at least `failure_threshold` of them were failures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Failures within `window` that open the breaker; 5 by default.
    pub failure_threshold: NonZeroU32,
    /// Outcomes within `window` needed before the breaker may open; 5 by default.
    pub min_requests: NonZeroU32,
    /// The rolling window over which outcomes are counted; 10s by default.
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    /// The open period after the first trip, doubled on every trip until the breaker
    /// closes again; 5s by default.
    #[serde(deserialize_with = "duration")]
    pub open_base: Duration,
    /// The longest open period; 60s by default.
    #[serde(deserialize_with = "duration")]
    pub open_max: Duration,
    /// The largest fraction, in `[0, 1)`, cut at random from an open period so replicas
    /// do not reopen in step; 0.2 by default.
    pub jitter: f64,
    /// Probe requests admitted while half-open; all must succeed to close; 1 by default.
    pub half_open_probes: NonZeroU32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: NonZeroU32::new(5).expect("5 is not zero"),
            min_requests: NonZeroU32::new(5).expect("5 is not zero"),
            window: Duration::from_secs(10),
            open_base: Duration::from_secs(5),
            open_max: Duration::from_secs(60),
            jitter: 0.2,
            half_open_probes: one(),
        }
    }
}

/// Active health checks and passive outlier detection, per replica.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Time between active checks; 10s by default.
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// The limit on one active check; 2s by default.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Consecutive passing checks that mark a replica healthy; 2 by default.
    pub healthy_threshold: NonZeroU32,
    /// Consecutive failing checks that mark a replica unhealthy; 3 by default.
    pub unhealthy_threshold: NonZeroU32,
    /// Consecutive failed requests that eject a replica; 5 by default.
    pub eject_after_failures: NonZeroU32,
    /// How long an ejected replica gets no traffic; 30s by default.
    #[serde(deserialize_with = "duration")]
    pub eject_for: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            healthy_threshold: NonZeroU32::new(2).expect("2 is not zero"),
            unhealthy_threshold: NonZeroU32::new(3).expect("3 is not zero"),
            eject_after_failures: NonZeroU32::new(5).expect("5 is not zero"),
            eject_for: Duration::from_secs(30),
        }
    }
}

/// The retry budget of an upstream group.
///
/// Within `window`, retries may reach `budget_ratio` times the requests plus
/// `min_per_second` times the window length in seconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries allowed per request, in `[0, 1]`; 0.2 by default.
    pub budget_ratio: f64,
    /// Retries allowed per second regardless of traffic; 1 by default.
    pub min_per_second: u32,
    /// The rolling window over which requests and retries are counted; 10s by default.
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            budget_ratio: 0.2,
            min_per_second: 1,
            window: Duration::from_secs(10),
        }
    }
}

/// An invalid value in an `[[upstreams]]` table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} = {value}: {reason}")]
pub struct ConfigError {
    /// The dotted path of the field, such as `upstreams.search.breaker.jitter`.
    pub field: String,
    /// The rejected value as written.
    pub value: String,
    /// What the value must be instead.
    pub reason: &'static str,
}

impl UpstreamConfig {
    /// Checks the values serde cannot: ranges, ordering and non-empty lists.
    ///
    /// # Errors
    ///
    /// Returns the first invalid field with its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let prefix = format!("upstreams.{}", self.name);
        if self.name.trim().is_empty() {
            return Err(invalid("upstreams.name", &self.name, "must not be empty"));
        }
        if self.members.is_empty() {
            return Err(invalid(
                &format!("{prefix}.members"),
                "[]",
                "must list at least one replica",
            ));
        }
        for (index, member) in self.members.iter().enumerate() {
            member.validate(&format!("{prefix}.members[{index}]"))?;
        }
        self.breaker.validate(&format!("{prefix}.breaker"))?;
        self.health.validate(&format!("{prefix}.health"))?;
        self.retry.validate(&format!("{prefix}.retry"))
    }
}

impl MemberConfig {
    fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let scheme_ok = self.url.starts_with("http://") || self.url.starts_with("https://");
        if !scheme_ok || self.url.parse::<http::Uri>().is_err() {
            return Err(invalid(
                &format!("{prefix}.url"),
                &self.url,
                "must be an http:// or https:// URL",
            ));
        }
        non_zero_duration(&format!("{prefix}.connect_timeout"), self.connect_timeout)?;
        non_zero_duration(&format!("{prefix}.request_timeout"), self.request_timeout)
    }
}

impl BreakerConfig {
    /// Checks ranges and ordering; `prefix` names the table in errors.
    ///
    /// # Errors
    ///
    /// Returns the first invalid field with its value.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        non_zero_duration(&format!("{prefix}.window"), self.window)?;
        non_zero_duration(&format!("{prefix}.open_base"), self.open_base)?;
        if self.open_max < self.open_base {
            return Err(invalid(
                &format!("{prefix}.open_max"),
                &humantime::format_duration(self.open_max).to_string(),
                "must be at least open_base",
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(invalid(
                &format!("{prefix}.jitter"),
                &self.jitter.to_string(),
                "must be at least 0 and below 1",
            ));
        }
        if self.min_requests < self.failure_threshold {
            return Err(invalid(
                &format!("{prefix}.min_requests"),
                &self.min_requests.to_string(),
                "must be at least failure_threshold",
            ));
        }
        Ok(())
    }
}

impl HealthConfig {
    fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        non_zero_duration(&format!("{prefix}.interval"), self.interval)?;
        non_zero_duration(&format!("{prefix}.timeout"), self.timeout)?;
        if self.timeout > self.interval {
            return Err(invalid(
                &format!("{prefix}.timeout"),
                &humantime::format_duration(self.timeout).to_string(),
                "must not exceed interval",
            ));
        }
        non_zero_duration(&format!("{prefix}.eject_for"), self.eject_for)
    }
}

impl RetryConfig {
    /// Checks ranges; `prefix` names the table in errors.
    ///
    /// # Errors
    ///
    /// Returns the first invalid field with its value.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.budget_ratio) {
            return Err(invalid(
                &format!("{prefix}.budget_ratio"),
                &self.budget_ratio.to_string(),
                "must be between 0 and 1",
            ));
        }
        if self.window < Duration::from_secs(1) {
            return Err(invalid(
                &format!("{prefix}.window"),
                &humantime::format_duration(self.window).to_string(),
                "must be at least 1s",
            ));
        }
        Ok(())
    }
}

fn invalid(field: &str, value: &str, reason: &'static str) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        value: value.to_owned(),
        reason,
    }
}

fn non_zero_duration(field: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(invalid(field, "0s", "must be greater than zero"));
    }
    Ok(())
}

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Reads a duration written as `"500ms"`, `"30s"` or `"1m"`.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(text.trim()).map_err(|error| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {error}; write e.g. \"500ms\", \"30s\", \"1m\""
        ))
    })
}
