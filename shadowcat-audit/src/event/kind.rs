use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use shadowcat_core::AuthMethod;

/// A free-form string field of an audit record: borrowed for names known at compile time,
/// owned otherwise.
///
/// The writer escapes every such field (see the crate docs), so a value may hold any text.
pub type Text = Cow<'static, str>;

/// The kind-specific part of an audit record, tagged by its `kind` field.
///
/// Optional fields are left out of the record when `None`. The crate docs list every kind
/// with its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
#[non_exhaustive]
pub enum EventKind {
    /// The proxy started serving.
    #[serde(rename = "proxy.started")]
    ProxyStarted {
        /// The proxy version, such as `0.1.0`.
        version: Text,
        /// The listen address, such as `127.0.0.1:8080`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        listen: Option<Text>,
    },
    /// The proxy stopped serving.
    #[serde(rename = "proxy.stopped")]
    ProxyStopped {
        /// The stop reason, such as `signal` or `shutdown`.
        reason: Text,
    },
    /// A configuration file was loaded at start-up.
    #[serde(rename = "config.loaded")]
    ConfigLoaded {
        /// The config file path.
        path: Text,
        /// The SHA-256 of the file contents, hex.
        digest: Text,
    },
    /// A configuration file was reloaded while running.
    #[serde(rename = "config.reloaded")]
    ConfigReloaded {
        /// The config file path.
        path: Text,
        /// The SHA-256 of the new file contents, hex.
        digest: Text,
    },
    /// A legacy-era session was created.
    #[serde(rename = "session.created")]
    SessionCreated {
        /// The negotiated MCP protocol version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol_version: Option<Text>,
        /// The client's `User-Agent` header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_agent: Option<Text>,
    },
    /// A legacy-era session ended.
    #[serde(rename = "session.closed")]
    SessionClosed {
        /// The reason the session ended.
        reason: SessionCloseReason,
    },
    /// A JSON-RPC request finished, successfully or not.
    #[serde(rename = "request.completed")]
    RequestCompleted {
        /// The JSON-RPC method, such as `tools/call`.
        method: Text,
        /// The tool, prompt or resource the call targeted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<Text>,
        /// The HTTP status returned to the client.
        status: u16,
        /// Time from accepting the request to the end of the response, in microseconds.
        latency_us: u64,
        /// The request's result.
        outcome: Outcome,
        /// The JSON-RPC error code returned to the client, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code: Option<i32>,
    },
    /// An upstream failed to serve a request.
    #[serde(rename = "upstream.error")]
    UpstreamError {
        /// The upstream's configured name.
        upstream: Text,
        /// The kind of failure.
        error: UpstreamFailure,
        /// The upstream's HTTP status, when it sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
    },
    /// The proxy rejected a request before it reached policy or an upstream.
    #[serde(rename = "request.rejected")]
    RequestRejected {
        /// The rejection reason.
        reason: RejectReason,
        /// The HTTP status returned to the client.
        status: u16,
        /// A short detail, such as the mismatched header name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Text>,
    },
    /// A caller authenticated.
    #[serde(rename = "auth.success")]
    AuthSuccess {
        /// The authentication method.
        method: AuthMethod,
    },
    /// A caller failed to authenticate.
    #[serde(rename = "auth.failure")]
    AuthFailure {
        /// The failure reason.
        reason: AuthFailureReason,
        /// The client's `User-Agent` header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_agent: Option<Text>,
    },
    /// A policy rule allowed a call.
    #[serde(rename = "authz.allow")]
    AuthzAllow {
        /// The id of the rule that decided.
        rule: Text,
        /// The JSON-RPC method.
        method: Text,
        /// The tool, prompt or resource the call targeted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<Text>,
    },
    /// A policy rule denied a call.
    #[serde(rename = "authz.deny")]
    AuthzDeny {
        /// The id of the rule that decided.
        rule: Text,
        /// The JSON-RPC method.
        method: Text,
        /// The tool, prompt or resource the call targeted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<Text>,
    },
    /// A rate or concurrency limit rejected one or more requests.
    #[serde(rename = "ratelimit.limited")]
    RatelimitLimited {
        /// The tier that rejected, such as `per_subject`.
        tier: Text,
        /// The limit key, hashed with [`Redactor::hash_field`](crate::Redactor::hash_field).
        key_hash: Text,
        /// How many rejected requests this record stands for (1 unless the caller
        /// coalesced repeats).
        hits: u64,
    },
    /// A limiter tier ran out of room for tracked keys.
    #[serde(rename = "ratelimit.overflow")]
    RatelimitOverflow {
        /// The tier whose key table is full.
        tier: Text,
        /// How many keys the tier tracks.
        tracked_keys: u64,
    },
    /// A circuit breaker opened: the upstream gets no traffic for a while.
    #[serde(rename = "circuit.opened")]
    CircuitOpened {
        /// The upstream's configured name.
        upstream: Text,
        /// Consecutive failures that opened the circuit.
        failures: u32,
    },
    /// A circuit breaker lets trial requests through.
    #[serde(rename = "circuit.half_open")]
    CircuitHalfOpen {
        /// The upstream's configured name.
        upstream: Text,
    },
    /// A circuit breaker closed: the upstream is healthy again.
    #[serde(rename = "circuit.closed")]
    CircuitClosed {
        /// The upstream's configured name.
        upstream: Text,
    },
    /// A security detector crossed its threshold. The record's `client_ip` or `subject`
    /// names the key.
    #[serde(rename = "security.alert")]
    SecurityAlert {
        /// The detector that fired.
        detector: Detector,
        /// Events counted in the window when it fired.
        count: u64,
        /// The configured threshold.
        threshold: u64,
        /// The window length, in milliseconds.
        window_ms: u64,
    },
    /// The writer dropped records (lossy mode, or `record` on a full queue).
    #[serde(rename = "audit.dropped")]
    AuditDropped {
        /// Records dropped since the previous `audit.dropped` record.
        count: u64,
    },
    /// A signature over the hash chain so far, written by the writer.
    #[serde(rename = "audit.checkpoint")]
    AuditCheckpoint {
        /// The first 8 bytes of SHA-256 over the raw public key, hex.
        key_id: Text,
        /// The Ed25519 signature, standard base64, over the checkpoint message described
        /// in the crate docs.
        signature: Text,
    },
}

impl EventKind {
    /// Returns the value of the record's `kind` field, such as `auth.failure`.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::ProxyStarted { .. } => "proxy.started",
            Self::ProxyStopped { .. } => "proxy.stopped",
            Self::ConfigLoaded { .. } => "config.loaded",
            Self::ConfigReloaded { .. } => "config.reloaded",
            Self::SessionCreated { .. } => "session.created",
            Self::SessionClosed { .. } => "session.closed",
            Self::RequestCompleted { .. } => "request.completed",
            Self::UpstreamError { .. } => "upstream.error",
            Self::RequestRejected { .. } => "request.rejected",
            Self::AuthSuccess { .. } => "auth.success",
            Self::AuthFailure { .. } => "auth.failure",
            Self::AuthzAllow { .. } => "authz.allow",
            Self::AuthzDeny { .. } => "authz.deny",
            Self::RatelimitLimited { .. } => "ratelimit.limited",
            Self::RatelimitOverflow { .. } => "ratelimit.overflow",
            Self::CircuitOpened { .. } => "circuit.opened",
            Self::CircuitHalfOpen { .. } => "circuit.half_open",
            Self::CircuitClosed { .. } => "circuit.closed",
            Self::SecurityAlert { .. } => "security.alert",
            Self::AuditDropped { .. } => "audit.dropped",
            Self::AuditCheckpoint { .. } => "audit.checkpoint",
        }
    }
}

/// Declares a closed set of reasons that serialize as snake_case names.
macro_rules! reason_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Returns the name written in audit records and metric labels.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

reason_enum! {
    /// The reason the proxy rejected a request before policy and upstream selection.
    pub enum RejectReason {
        /// A mirrored `Mcp-*` header is missing or contradicts the body (`-32020`).
        HeaderMismatch => "header_mismatch",
        /// The body is not valid JSON or JSON-RPC.
        BadInput => "bad_input",
        /// The `Origin` header is not allowed.
        Origin => "origin",
        /// The `Host` header is not allowed.
        Host => "host",
        /// The body exceeds the configured size limit.
        BodyTooLarge => "body_too_large",
        /// The requested protocol version is not supported (`-32022`).
        UnsupportedVersion => "unsupported_version",
        /// The session id is unknown or the session has ended.
        SessionNotFound => "session_not_found",
        /// The HTTP method is not allowed on the route.
        MethodNotAllowed => "method_not_allowed",
        /// The request is valid MCP that this proxy cannot serve.
        NotSupported => "not_supported",
        /// The session-creation budget is exhausted.
        SessionBudget => "session_budget",
        /// The `Content-Type` or `Accept` header is unacceptable.
        MediaType => "media_type",
        /// Every replica of the upstream group was open, ejected or unhealthy.
        UpstreamUnavailable => "upstream_unavailable",
    }
}

reason_enum! {
    /// The reason authentication failed.
    pub enum AuthFailureReason {
        /// No credentials on a route that requires them.
        MissingCredentials => "missing_credentials",
        /// More than one credential was sent, such as two `Authorization` headers.
        MultipleCredentials => "multiple_credentials",
        /// The `Authorization` scheme is not `Bearer`.
        UnsupportedScheme => "unsupported_scheme",
        /// The `Authorization` header or token is malformed.
        Malformed => "malformed",
        /// The token's algorithm is not one the key configuration allows.
        BadAlgorithm => "bad_algorithm",
        /// The token has no `exp` claim.
        MissingExp => "missing_exp",
        /// The token has no `sub` claim.
        MissingSubject => "missing_subject",
        /// The token lacks a scope the route requires.
        InsufficientScope => "insufficient_scope",
        /// The token signature does not verify.
        InvalidSignature => "invalid_signature",
        /// The token has expired.
        Expired => "expired",
        /// The token is not valid yet.
        NotYetValid => "not_yet_valid",
        /// The token's issuer is not accepted.
        WrongIssuer => "wrong_issuer",
        /// The token's audience does not include this resource.
        WrongAudience => "wrong_audience",
        /// The token names a signing key that is not known.
        UnknownKey => "unknown_key",
        /// The API key matches no configured key.
        UnknownApiKey => "unknown_api_key",
        /// The key set could not be fetched, so no token can be checked.
        KeysUnavailable => "keys_unavailable",
    }
}

reason_enum! {
    /// The result of a request.
    pub enum Outcome {
        /// The upstream returned a result.
        Ok => "ok",
        /// The upstream returned a JSON-RPC error.
        Error => "error",
        /// The proxy rejected the request.
        Rejected => "rejected",
        /// A rate or concurrency limit rejected the request.
        Limited => "limited",
        /// The upstream failed.
        UpstreamError => "upstream_error",
        /// The upstream did not respond in time.
        Timeout => "timeout",
        /// The client went away before the response ended.
        Cancelled => "cancelled",
    }
}

reason_enum! {
    /// The reason a session ended.
    pub enum SessionCloseReason {
        /// The client sent `DELETE`.
        ClientDelete => "client_delete",
        /// The session was idle for too long.
        Expired => "expired",
        /// The upstream ended its side of the session.
        UpstreamClosed => "upstream_closed",
        /// The proxy is shutting down.
        Shutdown => "shutdown",
        /// The session table was full and this session was the oldest.
        Evicted => "evicted",
    }
}

reason_enum! {
    /// The kind of upstream failure.
    pub enum UpstreamFailure {
        /// The connection could not be made.
        Connect => "connect",
        /// The upstream did not respond in time.
        Timeout => "timeout",
        /// The upstream responded with an error status.
        Status => "status",
        /// The upstream's response is not valid MCP.
        Protocol => "protocol",
        /// The upstream closed the connection or stream early.
        Closed => "closed",
    }
}

reason_enum! {
    /// A security detector.
    pub enum Detector {
        /// Authentication failures per client IP.
        AuthFailuresPerIp => "auth_failures_per_ip",
        /// Rejections (`request.rejected`, `authz.deny`, `ratelimit.limited`) per subject.
        RejectionsPerSubject => "rejections_per_subject",
    }
}
