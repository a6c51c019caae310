//! Limiter decisions and the values they carry.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use ipnet::IpNet;
use shadowcat_core::SessionId;

/// The limits Shadowcat enforces, each with a fixed name used in headers, JSON-RPC error
/// data, metrics and audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// One bucket shared by all traffic.
    Global,
    /// One bucket per client IP or IPv6 prefix.
    Ip,
    /// One bucket per verified subject.
    Subject,
    /// One bucket per legacy session.
    Session,
    /// One bucket per HTTP method and normalized path.
    Route,
    /// One bucket per MCP method.
    McpMethod,
    /// One bucket per tool, prompt or resource.
    Tool,
    /// The per-IP rate checked before authentication.
    PreAuth,
    /// The per-IP budget of failed authentications.
    AuthFailure,
    /// Sessions created per IP.
    SessionCreateIp,
    /// Sessions created per subject.
    SessionCreateSubject,
    /// In-flight requests.
    InFlight,
    /// Open SSE streams.
    Streams,
}

impl Tier {
    /// Every tier, in index order.
    pub const ALL: [Tier; 13] = [
        Tier::Global,
        Tier::Ip,
        Tier::Subject,
        Tier::Session,
        Tier::Route,
        Tier::McpMethod,
        Tier::Tool,
        Tier::PreAuth,
        Tier::AuthFailure,
        Tier::SessionCreateIp,
        Tier::SessionCreateSubject,
        Tier::InFlight,
        Tier::Streams,
    ];

    /// Number of tiers.
    pub const COUNT: usize = Self::ALL.len();

    /// Returns the tier's name as written in config, headers and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Global => "global",
            Tier::Ip => "ip",
            Tier::Subject => "subject",
            Tier::Session => "session",
            Tier::Route => "route",
            Tier::McpMethod => "mcp_method",
            Tier::Tool => "tool",
            Tier::PreAuth => "pre_auth",
            Tier::AuthFailure => "auth_failure",
            Tier::SessionCreateIp => "session_create_ip",
            Tier::SessionCreateSubject => "session_create_subject",
            Tier::InFlight => "in_flight",
            Tier::Streams => "streams",
        }
    }

    /// Returns the tier's position in [`Tier::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tier's quota as reported to clients: `requests` per `per`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Requests admitted per `per`, on average.
    pub requests: NonZeroU32,
    /// The period of the rate.
    pub per: Duration,
    /// Requests a full bucket admits at once.
    pub burst: NonZeroU32,
}

/// The bucket a decision is about.
///
/// The `Display` form is safe for logs and audit records. IPs and subjects appear only as
/// a keyed 64-bit hash: SipHash-1-3 with a random key chosen when the limiter is built.
/// The same client has the same id for the life of one limiter, but ids cannot be
/// compared across restarts. Tool names and routes are client-supplied text and are
/// written with control characters escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The single global bucket.
    Global,
    /// A client address or IPv6 prefix.
    Ip {
        /// The address group, such as `192.0.2.7/32` or `2001:db8:1:2::/64`.
        net: IpNet,
        /// Keyed hash of the group, for audit records.
        hash: u64,
    },
    /// A verified subject, known only by its keyed hash.
    Subject {
        /// Keyed hash of the subject.
        hash: u64,
    },
    /// A legacy session.
    Session(SessionId),
    /// An HTTP method and normalized path.
    Route {
        /// The HTTP method, upper case.
        method: &'static str,
        /// The normalized path.
        path: Box<str>,
    },
    /// An MCP method.
    Method(Box<str>),
    /// A tool, prompt or resource, qualified by the method that targets it.
    Target {
        /// The MCP method, such as `tools/call`.
        method: Box<str>,
        /// The tool or prompt name or the resource URI.
        name: Box<str>,
    },
    /// The bucket shared by new keys once a tier tracks its maximum number of keys.
    Overflow,
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::Global => f.write_str("global"),
            LimitKey::Ip { hash, .. } => write!(f, "ip:{hash:016x}"),
            LimitKey::Subject { hash } => write!(f, "subject:{hash:016x}"),
            LimitKey::Session(id) => write!(f, "session:{id}"),
            LimitKey::Route { method, path } => write!(f, "route:{method} {}", path.escape_debug()),
            LimitKey::Method(method) => write!(f, "method:{}", method.escape_debug()),
            LimitKey::Target { method, name } => {
                write!(
                    f,
                    "target:{} {}",
                    method.escape_debug(),
                    name.escape_debug()
                )
            }
            LimitKey::Overflow => f.write_str("overflow"),
        }
    }
}

/// The cause of a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    /// The bucket does not hold enough budget yet.
    Rate,
    /// The tier tracks its maximum number of keys and is configured with
    /// `overflow = "reject"`.
    KeyCapacity,
    /// A concurrency limit is reached.
    Concurrency,
}

/// Tells the caller to write one audit record for a rejection.
///
/// Only the first rejection for a tier and key in each audit window carries this value,
/// so a flood of rejections produces one record per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalescedHits {
    /// Rejections of the same tier and key that carried no audit record since the
    /// previous one that did.
    pub suppressed: u64,
}

/// Tells the caller that new keys went to a tier's overflow bucket.
///
/// Carried by the first such event per tier in each audit window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverflowNotice {
    /// The tier that is at its key cap.
    pub tier: Tier,
    /// Overflow events for this tier that carried no notice since the previous one.
    pub suppressed: u64,
}

/// The state of one tier's bucket after an allowed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierStatus {
    /// The tier.
    pub tier: Tier,
    /// The tier's quota for the key that was charged.
    pub policy: Policy,
    /// Whole requests the bucket admits right now.
    pub remaining: u32,
    /// Time until the bucket is full again.
    pub reset: Duration,
}

/// A request that passed every tier and was charged to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// The tier with the least remaining budget, for `RateLimit` headers; `None` when no
    /// tier applied.
    pub tightest: Option<TierStatus>,
    /// Set when a new key was sent to an overflow bucket and the caller should write an
    /// audit record about it.
    pub overflow: Option<OverflowNotice>,
}

/// A request rejected for now; retrying after `retry_after` succeeds if no other traffic
/// uses the same buckets in the meantime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// The binding tier: among the tiers that rejected, the one with the longest wait.
    pub tier: Tier,
    /// The bucket that rejected.
    pub key: LimitKey,
    /// The quota of that bucket; `None` for concurrency limits.
    pub policy: Option<Policy>,
    /// The exact wait until the same request would pass every rate tier.
    pub retry_after: Duration,
    /// The cause of the rejection.
    pub reason: LimitReason,
    /// Set when the caller should write an audit record for this rejection.
    pub audit: Option<CoalescedHits>,
}

impl Limited {
    /// Returns the wait in whole seconds for `Retry-After`: rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        whole_secs_up(self.retry_after).max(1)
    }
}

/// A request that can never pass as sent, because its cost exceeds a tier's burst.
///
/// Retrying does not help; the client has to split the batch or the operator has to
/// raise the burst.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostTooHigh {
    /// The tier whose burst is too small.
    pub tier: Tier,
    /// The bucket that was asked for the cost.
    pub key: LimitKey,
    /// The tier's quota for that bucket.
    pub policy: Policy,
    /// The cost of the request on that tier.
    pub cost: u32,
}

/// The outcome of one limiter check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every tier admitted the request and was charged.
    Allowed(Allowed),
    /// A tier rejected the request; no tier was charged.
    Limited(Limited),
    /// The request can never pass; no tier was charged.
    CostTooHigh(CostTooHigh),
}

impl Decision {
    /// Returns true for [`Decision::Allowed`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed(_))
    }
}

/// Rounds a duration up to whole seconds.
pub(crate) fn whole_secs_up(duration: Duration) -> u64 {
    let secs = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}
