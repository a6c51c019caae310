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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The group's name, used in logs, metrics and audit records.
    pub name: String,
    /// The policy that chooses a replica for each request.
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

/// One replica of an upstream group: a Streamable HTTP endpoint or a stdio command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// The replica's Streamable HTTP endpoint. Exactly one of `url` and `command`.
    #[serde(default)]
    pub url: Option<String>,
    /// The replica's stdio command line, as a string or a list of arguments.
    #[serde(default)]
    pub command: Option<crate::config::CommandLine>,
    /// The replica's share of traffic relative to the others. Defaults to 1.
    #[serde(default = "one")]
    pub weight: NonZeroU32,
    /// The limit on establishing a connection. Defaults to 2s.
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// The limit on a whole request, excluding streamed responses. Defaults to 30s.
    #[serde(default = "default_request_timeout", deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// The credential the proxy presents to this replica. Defaults to none.
    #[serde(default)]
    pub auth: crate::auth::UpstreamCredentialConfig,
}

impl MemberConfig {
    /// Returns the replica's name in logs, metrics and audit records: its URL, or the
    /// program of its command.
    pub fn display_name(&self) -> String {
        match (&self.url, &self.command) {
            (Some(url), _) => url.clone(),
            (None, Some(command)) => command.argv().first().cloned().unwrap_or_default(),
            (None, None) => String::new(),
        }
    }
}

/// Circuit breaker settings, per replica.
///
/// The breaker opens when, within `window`, at least `min_requests` outcomes were
/// recorded and at least `failure_threshold` of them were failures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Failures within `window` that open the breaker. Defaults to 5.
    pub failure_threshold: NonZeroU32,
    /// Outcomes within `window` needed before the breaker may open. Defaults to 5.
    pub min_requests: NonZeroU32,
    /// The rolling window over which outcomes are counted. Defaults to 10s.
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    /// The open period after the first trip, doubled on every trip until the breaker
    /// closes again. Defaults to 5s.
    #[serde(deserialize_with = "duration")]
    pub open_base: Duration,
    /// The maximum open period. Defaults to 60s.
    #[serde(deserialize_with = "duration")]
    pub open_max: Duration,
    /// The maximum fraction, in `[0, 1)`, cut at random from an open period so replicas
    /// do not reopen in step. Defaults to 0.2.
    pub jitter: f64,
    /// Probe requests admitted while half-open; all must succeed to close. Defaults to 1.
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
    /// Time between active checks. Defaults to 10s.
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// The limit on one active check. Defaults to 2s.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Consecutive passing checks that mark a replica healthy. Defaults to 2.
    pub healthy_threshold: NonZeroU32,
    /// Consecutive failing checks that mark a replica unhealthy. Defaults to 3.
    pub unhealthy_threshold: NonZeroU32,
    /// Consecutive failed requests that eject a replica. Defaults to 5.
    pub eject_after_failures: NonZeroU32,
    /// The time an ejected replica gets no traffic. Defaults to 30s.
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
    /// Retries allowed per request, in `[0, 1]`. Defaults to 0.2.
    pub budget_ratio: f64,
    /// Retries allowed per second regardless of traffic. Defaults to 1.
    pub min_per_second: u32,
    /// The rolling window over which requests and retries are counted. Defaults to 10s.
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
    /// The constraint the value breaks.
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
        match (&self.url, &self.command) {
            (Some(url), None) => {
                // The upstream client speaks plain HTTP only; TLS is not built in.
                if !url.starts_with("http://") || url.parse::<http::Uri>().is_err() {
                    return Err(invalid(
                        &format!("{prefix}.url"),
                        url,
                        "must be an http:// URL (TLS upstreams are not supported)",
                    ));
                }
            }
            (None, Some(command)) => {
                if command.argv().is_empty() {
                    return Err(invalid(
                        &format!("{prefix}.command"),
                        "\"\"",
                        "must name a program",
                    ));
                }
            }
            (Some(url), Some(_)) => {
                return Err(invalid(
                    &format!("{prefix}.command"),
                    url,
                    "set either url or command, not both",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    prefix,
                    "{}",
                    "set url (Streamable HTTP) or command (stdio)",
                ));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        upstreams: Vec<UpstreamConfig>,
    }

    fn parse(text: &str) -> Result<UpstreamConfig, toml::de::Error> {
        let mut file: File = toml::from_str(text)?;
        Ok(file.upstreams.remove(0))
    }

    const FULL: &str = r#"
        [[upstreams]]
        name = "search"
        policy = "least_requests"
        members = [
            { url = "http://127.0.0.1:9001/mcp", weight = 3, connect_timeout = "500ms" },
            { url = "http://127.0.0.1:9002/mcp", request_timeout = "1m" },
        ]

        [upstreams.breaker]
        failure_threshold = 3
        min_requests = 10
        window = "30s"
        open_base = "2s"
        open_max = "2m"
        jitter = 0.1
        half_open_probes = 2

        [upstreams.health]
        interval = "5s"
        timeout = "1s"
        healthy_threshold = 1
        unhealthy_threshold = 2

        [upstreams.retry]
        budget_ratio = 0.1
        min_per_second = 5
    "#;

    #[test]
    fn parses_full_table() {
        let upstream = parse(FULL).unwrap();
        upstream.validate().unwrap();

        assert_eq!(upstream.name, "search");
        assert_eq!(upstream.policy, BalancePolicy::LeastRequests);
        assert_eq!(upstream.members[0].weight.get(), 3);
        assert_eq!(
            upstream.members[0].connect_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(upstream.members[0].request_timeout, Duration::from_secs(30));
        assert_eq!(upstream.members[1].weight.get(), 1);
        assert_eq!(upstream.members[1].request_timeout, Duration::from_secs(60));
        assert_eq!(upstream.breaker.failure_threshold.get(), 3);
        assert_eq!(upstream.breaker.min_requests.get(), 10);
        assert_eq!(upstream.breaker.window, Duration::from_secs(30));
        assert_eq!(upstream.breaker.open_max, Duration::from_secs(120));
        assert_eq!(upstream.breaker.half_open_probes.get(), 2);
        assert_eq!(upstream.health.interval, Duration::from_secs(5));
        assert_eq!(upstream.health.eject_for, Duration::from_secs(30));
        assert_eq!(upstream.retry.min_per_second, 5);
        assert_eq!(upstream.retry.window, Duration::from_secs(10));
    }

    #[test]
    fn defaults_fill_missing_tables() {
        let upstream = parse(
            r#"
            [[upstreams]]
            name = "one"
            members = [{ url = "http://127.0.0.1:9001/mcp" }]
            "#,
        )
        .unwrap();
        upstream.validate().unwrap();
        assert_eq!(upstream.policy, BalancePolicy::P2c);
        assert_eq!(upstream.breaker, BreakerConfig::default());
        assert_eq!(upstream.health, HealthConfig::default());
        assert_eq!(upstream.retry, RetryConfig::default());
    }

    #[test]
    fn rejects_unknown_fields() {
        let error = parse(&FULL.replace("jitter = 0.1", "jiter = 0.1")).unwrap_err();
        assert!(error.to_string().contains("jiter"), "{error}");

        let error =
            parse(&FULL.replace("policy = \"least_requests\"", "policy = \"random\"")).unwrap_err();
        assert!(error.to_string().contains("random"), "{error}");
    }

    #[test]
    fn rejects_durations_without_unit() {
        let error = parse(&FULL.replace("window = \"30s\"", "window = \"30\"")).unwrap_err();
        assert!(
            error.to_string().contains("invalid duration \"30\""),
            "{error}"
        );
    }

    #[test]
    fn rejects_zero_counts() {
        let error =
            parse(&FULL.replace("half_open_probes = 2", "half_open_probes = 0")).unwrap_err();
        assert!(error.to_string().contains("half_open_probes"), "{error}");
    }

    #[test]
    fn validation_names_field_and_value() {
        let cases = [
            (
                "jitter = 0.1",
                "jitter = 1.5",
                "upstreams.search.breaker.jitter",
                "1.5",
            ),
            (
                "open_max = \"2m\"",
                "open_max = \"1s\"",
                "upstreams.search.breaker.open_max",
                "1s",
            ),
            (
                "min_requests = 10",
                "min_requests = 2",
                "upstreams.search.breaker.min_requests",
                "2",
            ),
            (
                "window = \"30s\"",
                "window = \"0s\"",
                "upstreams.search.breaker.window",
                "0s",
            ),
            (
                "timeout = \"1s\"",
                "timeout = \"6s\"",
                "upstreams.search.health.timeout",
                "6s",
            ),
            (
                "budget_ratio = 0.1",
                "budget_ratio = 2.0",
                "upstreams.search.retry.budget_ratio",
                "2",
            ),
            (
                "http://127.0.0.1:9002/mcp",
                "ftp://127.0.0.1:9002/mcp",
                "upstreams.search.members[1].url",
                "ftp://127.0.0.1:9002/mcp",
            ),
        ];
        for (from, to, field, value) in cases {
            let upstream = parse(&FULL.replace(from, to)).unwrap();
            let error = upstream.validate().unwrap_err();
            assert_eq!(error.field, field, "{to}");
            assert_eq!(error.value, value, "{to}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("invalid {field} = {value}: "))
            );
        }
    }

    #[test]
    fn validation_rejects_empty_members() {
        let upstream = parse(
            r#"
            [[upstreams]]
            name = "none"
            members = []
            "#,
        )
        .unwrap();
        let error = upstream.validate().unwrap_err();
        assert_eq!(error.field, "upstreams.none.members");
    }
}
