//! Upstream groups: the replicas behind one route, the balancer and breakers that choose
//! among them, their active health checks, and the retry budget they share.
//!
//! The `[upstream]` table becomes a group of one replica with no breaker, so a single
//! upstream behaves as before: every request is tried. An `[[upstreams]]` entry gets the
//! full set: a balancing policy, a breaker per replica, passive outlier ejection, health
//! checks that mark replicas out of rotation, and retries within a budget.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use futures_util::future::join_all;
use http::{HeaderMap, HeaderValue, Method, header};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::Value;
use shadowcat_audit::{AuditEvent, AuditHandle, EventKind};

use super::resilience::{
    Balancer, BalancerConfig, BreakerState, HealthConfig, NoReplica, ReplicaGuard, ReplicaSpec,
    ReplicaTransitionListener, RetryBudget, SharedClock, Transition, UpstreamConfig,
    UpstreamOutcome,
};
use super::{EraSupport, UpstreamError, UpstreamKind};

/// How often a single `[upstream]` is probed for the eras it serves.
const SINGLE_PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// One replica of a group.
#[derive(Debug)]
pub struct Member {
    /// The replica's name in logs, metrics and audit records: its URL or its program.
    pub name: Arc<str>,
    /// The replica's transport.
    pub kind: UpstreamKind,
    /// Time allowed for a stdio replica to respond to one request.
    pub request_timeout: Duration,
    health: Mutex<HealthCount>,
    /// Breaker transitions into open, half-open and closed.
    transitions: [AtomicU64; 3],
}

/// Consecutive active check results of one replica.
#[derive(Debug)]
struct HealthCount {
    passes: u32,
    failures: u32,
    healthy: bool,
}

impl Member {
    /// Builds a replica record for `kind`.
    pub fn new(name: impl Into<Arc<str>>, kind: UpstreamKind, request_timeout: Duration) -> Self {
        Self {
            name: name.into(),
            kind,
            request_timeout,
            health: Mutex::new(HealthCount {
                passes: 0,
                failures: 0,
                healthy: true,
            }),
            transitions: Default::default(),
        }
    }

    /// Returns whether the last active checks found the replica healthy.
    pub fn is_healthy(&self) -> bool {
        self.health.lock().healthy
    }
}

/// The resilience parts of an `[[upstreams]]` group.
struct Resilience {
    balancer: Balancer<SharedClock>,
    retry: RetryBudget<SharedClock>,
    health: HealthConfig,
}

/// The replicas behind one route.
pub struct UpstreamGroup {
    /// The group's name: the `[[upstreams]]` name, or `default` for `[upstream]`.
    pub name: Arc<str>,
    members: Vec<Member>,
    resilience: Option<Resilience>,
    /// The eras the group serves, learned from the replicas' checks.
    pub eras: EraSupport,
    retries: AtomicU64,
    unavailable: AtomicU64,
}

/// One request admitted to a replica. Call [`Attempt::finish`] with the outcome;
/// dropping it records nothing, as for a cancelled request.
#[derive(Debug)]
pub struct Attempt {
    index: usize,
    guard: Option<ReplicaGuard<SharedClock>>,
}

impl Attempt {
    /// Returns the index of the chosen replica.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Records the outcome and the time to the response headers in the replica's
    /// latency average, breaker and outlier count.
    pub fn finish(self, outcome: &UpstreamOutcome, latency: Duration) {
        if let Some(guard) = self.guard {
            guard.observe(latency);
            guard.record(outcome);
        }
    }
}

impl UpstreamGroup {
    /// Builds the group of the `[upstream]` table: one replica, always tried.
    pub fn single(member: Member) -> Arc<Self> {
        Arc::new(Self {
            name: Arc::from(crate::config::SINGLE_GROUP_NAME),
            members: vec![member],
            resilience: None,
            eras: EraSupport::default(),
            retries: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
        })
    }

    /// Builds an `[[upstreams]]` group over `members`, in the order of `config.members`.
    /// Breaker transitions become `circuit.*` audit records when `audit` is set.
    pub fn balanced(
        config: &UpstreamConfig,
        members: Vec<Member>,
        clock: SharedClock,
        audit: Option<AuditHandle>,
    ) -> Arc<Self> {
        let specs = config
            .members
            .iter()
            .map(|member| ReplicaSpec::new(member.weight))
            .collect();
        Arc::new_cyclic(|weak: &std::sync::Weak<Self>| {
            let weak = weak.clone();
            let listener: ReplicaTransitionListener = Arc::new(move |index, transition| {
                if let Some(group) = weak.upgrade() {
                    group.on_transition(index, transition, audit.as_ref());
                }
            });
            let balancer = Balancer::with_clock(
                BalancerConfig::from_upstream(config),
                config.breaker.clone(),
                specs,
                clock.clone(),
                rand::random(),
                Some(listener),
            );
            Self {
                name: Arc::from(config.name.as_str()),
                members,
                resilience: Some(Resilience {
                    balancer,
                    retry: RetryBudget::with_clock(config.retry.clone(), clock),
                    health: config.health.clone(),
                }),
                eras: EraSupport::default(),
                retries: AtomicU64::new(0),
                unavailable: AtomicU64::new(0),
            }
        })
    }

    /// Returns the replicas.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Returns replica `index`.
    ///
    /// # Panics
    ///
    /// Panics when `index` is out of range.
    pub fn member(&self, index: usize) -> &Member {
        &self.members[index]
    }

    /// Returns whether the group comes from `[[upstreams]]`, with a balancer, breakers
    /// and health thresholds.
    pub fn is_balanced(&self) -> bool {
        self.resilience.is_some()
    }

    /// Returns the time between active checks.
    pub fn check_interval(&self) -> Duration {
        self.resilience
            .as_ref()
            .map_or(SINGLE_PROBE_INTERVAL, |resilience| {
                resilience.health.interval
            })
    }

    /// Returns the state of replica `index`'s breaker; a single `[upstream]` is always
    /// closed.
    pub fn breaker_state(&self, index: usize) -> BreakerState {
        self.resilience
            .as_ref()
            .map_or(BreakerState::Closed, |resilience| {
                resilience.balancer.breaker(index).state()
            })
    }

    /// Chooses a replica for a request that may go anywhere, skipping `exclude`. A call
    /// without `exclude` counts as a new request in the retry budget; a retry passes the
    /// replica it leaves.
    ///
    /// # Errors
    ///
    /// Returns [`NoReplica`] when every replica is open, ejected, unhealthy or excluded.
    pub fn pick(&self, exclude: Option<usize>) -> Result<Attempt, NoReplica> {
        let Some(resilience) = &self.resilience else {
            return Ok(Attempt {
                index: 0,
                guard: None,
            });
        };
        if exclude.is_none() {
            resilience.retry.record_request();
        }
        self.admitted(resilience.balancer.pick(exclude))
    }

    /// Admits a request bound to replica `index`, such as one of a legacy session.
    ///
    /// # Errors
    ///
    /// Returns [`NoReplica`] while the replica's breaker rejects requests.
    pub fn acquire(&self, index: usize) -> Result<Attempt, NoReplica> {
        let Some(resilience) = &self.resilience else {
            return Ok(Attempt { index, guard: None });
        };
        self.admitted(resilience.balancer.acquire(index))
    }

    /// Wraps the balancer's admission in an [`Attempt`], counting a rejection.
    fn admitted(
        &self,
        admission: Result<ReplicaGuard<SharedClock>, NoReplica>,
    ) -> Result<Attempt, NoReplica> {
        match admission {
            Ok(guard) => Ok(Attempt {
                index: guard.index(),
                guard: Some(guard),
            }),
            Err(error) => {
                self.unavailable.fetch_add(1, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    /// Takes a retry from the group's budget, or returns `false` when the group has one
    /// replica or the budget is spent.
    pub fn try_retry(&self) -> bool {
        let allowed = self.members.len() > 1
            && self
                .resilience
                .as_ref()
                .is_some_and(|resilience| resilience.retry.try_retry());
        if allowed {
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    /// Returns whether a request could be served now: a single `[upstream]` once its
    /// eras are known, a balanced group while one replica is available.
    pub fn is_ready(&self) -> bool {
        match &self.resilience {
            None => self.eras.is_known(),
            Some(resilience) => {
                (0..self.members.len()).any(|index| resilience.balancer.is_available(index))
            }
        }
    }

    /// Checks every replica once, concurrently: updates the group's eras from what the
    /// replicas report together, and for a balanced group counts passes and failures
    /// against the health thresholds.
    pub async fn check_health(&self) {
        let timeout = self
            .resilience
            .as_ref()
            .map_or(super::PROBE_TIMEOUT, |resilience| resilience.health.timeout);
        let results = join_all(
            self.members
                .iter()
                .map(|member| check(&member.kind, timeout)),
        )
        .await;
        // Replicas serve the same MCP server, so one that rejects the probe with a 4xx
        // does not hide the eras another one lists.
        let mut reported: Option<(bool, bool)> = None;
        for (index, result) in results.into_iter().enumerate() {
            let member = &self.members[index];
            let passed = match result {
                Ok((modern, legacy)) => {
                    let (any_modern, any_legacy) = reported.unwrap_or_default();
                    reported = Some((any_modern || modern, any_legacy || legacy));
                    true
                }
                Err(error) => {
                    tracing::warn!(group = %self.name, upstream = %member.name, %error, "upstream check failed");
                    false
                }
            };
            if let Some(resilience) = &self.resilience {
                self.count_check(index, passed, resilience);
            }
        }
        if let Some((modern, legacy)) = reported {
            if !self.eras.is_known() {
                tracing::info!(group = %self.name, modern, legacy, "upstream probed");
            }
            self.eras.set(modern, legacy);
        }
    }

    fn count_check(&self, index: usize, passed: bool, resilience: &Resilience) {
        let member = &self.members[index];
        let mut health = member.health.lock();
        if passed {
            health.passes += 1;
            health.failures = 0;
        } else {
            health.failures += 1;
            health.passes = 0;
        }
        let flip = if health.healthy {
            health.failures >= resilience.health.unhealthy_threshold.get()
        } else {
            health.passes >= resilience.health.healthy_threshold.get()
        };
        if flip {
            health.healthy = !health.healthy;
            resilience.balancer.set_healthy(index, health.healthy);
            tracing::warn!(
                group = %self.name,
                upstream = %member.name,
                healthy = health.healthy,
                "upstream health changed"
            );
        }
    }

    fn on_transition(&self, index: usize, transition: Transition, audit: Option<&AuditHandle>) {
        let member = &self.members[index];
        let (slot, kind) = match transition.to {
            BreakerState::Open => (
                0,
                EventKind::CircuitOpened {
                    upstream: member.name.to_string().into(),
                    failures: transition.failures,
                },
            ),
            BreakerState::HalfOpen => (
                1,
                EventKind::CircuitHalfOpen {
                    upstream: member.name.to_string().into(),
                },
            ),
            BreakerState::Closed => (
                2,
                EventKind::CircuitClosed {
                    upstream: member.name.to_string().into(),
                },
            ),
        };
        member.transitions[slot].fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            group = %self.name,
            upstream = %member.name,
            from = %transition.from,
            to = %transition.to,
            open_for = ?transition.open_for,
            "circuit breaker changed state"
        );
        if let Some(audit) = audit {
            audit.record(AuditEvent::new(kind));
        }
    }

    /// Stops the stdio children of every replica.
    pub fn shutdown(&self) {
        for member in &self.members {
            if let UpstreamKind::Stdio { pool, .. } = &member.kind {
                pool.shutdown();
            }
        }
    }

    /// Appends the group's metrics in the Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        let group = escape_label(&self.name);
        for (index, member) in self.members.iter().enumerate() {
            let upstream = escape_label(&member.name);
            let labels = format!("group=\"{group}\",upstream=\"{upstream}\"");
            let state = match self.breaker_state(index) {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
            };
            let _ = writeln!(
                out,
                "shadowcat_upstream_healthy{{{labels}}} {}",
                u8::from(member.is_healthy())
            );
            let _ = writeln!(out, "shadowcat_circuit_state{{{labels}}} {state}");
            for (slot, to) in ["open", "half_open", "closed"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "shadowcat_circuit_transitions_total{{{labels},to=\"{to}\"}} {}",
                    member.transitions[slot].load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "shadowcat_upstream_retries_total{{group=\"{group}\"}} {}",
            self.retries.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "shadowcat_upstream_unavailable_total{{group=\"{group}\"}} {}",
            self.unavailable.load(Ordering::Relaxed)
        );
    }
}

impl std::fmt::Debug for UpstreamGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamGroup")
            .field("name", &self.name)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

/// The endpoint paths and the group that serves each.
#[derive(Debug, Default)]
pub struct Routes {
    paths: Vec<(String, Arc<UpstreamGroup>)>,
    groups: Vec<Arc<UpstreamGroup>>,
}

impl Routes {
    /// Builds the table from `(path, group)` pairs; `groups` lists every group once.
    pub fn new(paths: Vec<(String, Arc<UpstreamGroup>)>, groups: Vec<Arc<UpstreamGroup>>) -> Self {
        Self { paths, groups }
    }

    /// Returns the group serving `path`.
    pub fn for_path(&self, path: &str) -> Option<&Arc<UpstreamGroup>> {
        self.paths
            .iter()
            .find(|(route, _)| route == path)
            .map(|(_, group)| group)
    }

    /// Returns the endpoint paths.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(|(path, _)| path.as_str())
    }

    /// Returns every group once.
    pub fn groups(&self) -> &[Arc<UpstreamGroup>] {
        &self.groups
    }
}

/// Maps the result of one upstream call to what the breaker counts.
pub fn outcome_of(result: Result<http::StatusCode, &UpstreamError>) -> UpstreamOutcome {
    match result {
        Ok(status) => UpstreamOutcome::Status(status.as_u16()),
        Err(UpstreamError::Unreachable(_)) => UpstreamOutcome::ConnectError,
        Err(UpstreamError::Timeout) => UpstreamOutcome::Timeout,
        Err(UpstreamError::Failed(_) | UpstreamError::Internal(_)) => UpstreamOutcome::Reset,
    }
}

/// Sends one MCP-level check to a replica, a `server/discover` request, and returns the
/// eras it reports.
///
/// The same request checks servers of both eras. A legacy server that rejects the
/// method or the version with a 4xx status is up and serves the legacy era only. A
/// sessionless `ping` would prove no more, because stateful legacy servers reject it
/// too.
///
/// # Errors
///
/// Returns an [`UpstreamError`] when the replica cannot be reached, times out, or
/// responds with a 5xx status.
pub async fn check(
    upstream: &UpstreamKind,
    timeout: Duration,
) -> Result<(bool, bool), UpstreamError> {
    let http = match upstream {
        UpstreamKind::Stdio { pool, .. } => {
            let response = pool.discover(timeout).await?;
            return Ok(super::eras_from_discover(&response));
        }
        UpstreamKind::Http(http) => http,
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    headers.insert(
        shadowcat_core::mcp::HEADER_PROTOCOL_VERSION,
        HeaderValue::from_static(shadowcat_core::mcp::MODERN_VERSIONS[0]),
    );
    headers.insert(
        shadowcat_core::mcp::HEADER_METHOD,
        HeaderValue::from_static("server/discover"),
    );
    let request = super::discover_request();

    let exchange = async {
        let response = http
            .send(
                Method::POST,
                &headers,
                None,
                Body::from(request.to_string()),
            )
            .await?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|error| UpstreamError::Failed(error.to_string()))?
            .to_bytes();
        Ok::<_, UpstreamError>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| UpstreamError::Timeout)??;

    if status.is_server_error() {
        return Err(UpstreamError::Failed(format!(
            "health check returned HTTP {status}"
        )));
    }
    if !status.is_success() {
        return Ok((false, true));
    }
    Ok(super::eras_from_discover(&parse_check_body(&bytes)))
}

/// Reads a check response that is either JSON or a short event stream.
fn parse_check_body(bytes: &[u8]) -> Value {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return value;
    }
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|value| value.get("id").is_some())
        .unwrap_or_default()
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_breaker_rules() {
        assert_eq!(
            outcome_of(Ok(http::StatusCode::TOO_MANY_REQUESTS)),
            UpstreamOutcome::Status(429)
        );
        let unreachable = UpstreamError::Unreachable("connection refused".into());
        assert_eq!(outcome_of(Err(&unreachable)), UpstreamOutcome::ConnectError);
        assert_eq!(
            outcome_of(Err(&UpstreamError::Timeout)),
            UpstreamOutcome::Timeout
        );
    }

    #[test]
    fn event_stream_check_body_is_read() {
        let body = b"event: message\ndata: {\"id\":\"x\",\"result\":{\"supportedVersions\":[\"2026-07-28\"]}}\n\n";
        let value = parse_check_body(body);
        assert_eq!(super::super::eras_from_discover(&value), (true, false));
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
