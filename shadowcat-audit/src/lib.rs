//! Tamper-evident, non-blocking security audit trail for MCP traffic.
//!
//! A service builds [`AuditEvent`]s on the request path and hands them to an
//! [`AuditHandle`] (or any [`AuditSink`]). A dedicated writer thread stamps each one with
//! a sequence number and a hash that chains it to the record before, runs the security
//! detectors, and writes one JSON object per line to rolling files, standard output, or
//! both. [`verify`] checks a chain across files.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shadowcat_audit::{AuditConfig, AuditEvent, AuditWriter, EventKind, Outcome, log_files, verify};
//!
//! let dir = tempfile::tempdir()?;
//! let config = AuditConfig { dir: dir.path().to_owned(), ..AuditConfig::default() };
//! let audit = AuditWriter::new(config).spawn()?;
//!
//! // On the request path: `submit` applies back-pressure in lossless mode,
//! // `record` never waits.
//! audit
//!     .submit(AuditEvent::new(EventKind::RequestCompleted {
//!         method: "tools/call".into(),
//!         target: Some("search".into()),
//!         status: 200,
//!         latency_us: 1840,
//!         outcome: Outcome::Ok,
//!         error_code: None,
//!     }))
//!     .await?;
//! audit.shutdown().await?;
//!
//! let report = verify(&log_files(dir.path(), "audit")?, None)?;
//! assert_eq!(report.records, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Record schema (version 1)
//!
//! Every line is one JSON object, written compactly with members in this order:
//!
//! | member | type | present |
//! |---|---|---|
//! | `v` | integer, `1` | always |
//! | `seq` | integer, 1 for the first record, then +1 per record | always |
//! | `ts` | RFC 3339 UTC with microseconds, `2026-12-04T20:04:50.123456Z`: when the event was built | always |
//! | `kind` | string, see below | always |
//! | kind fields | see below | per kind |
//! | `request_id` | 16 hex digits | when known |
//! | `session_id` | 32 hex digits (or `h:` hash) | when known |
//! | `client_ip` | address text (or `h:` hash) | when known |
//! | `subject` | string (or `h:` hash) | when known |
//! | `prev` | 64 hex digits: the previous record's `hash` | always |
//! | `hash` | 64 hex digits, see *Hash chain* | always, last |
//!
//! `seq` gives the order of the log. `ts` is taken when the event is built, so two
//! events built on different threads may appear with `ts` slightly out of order.
//!
//! Kinds and their fields (`?` marks a field left out when unknown):
//!
//! | `kind` | fields |
//! |---|---|
//! | `proxy.started` | `version`, `listen?` |
//! | `proxy.stopped` | `reason` |
//! | `config.loaded`, `config.reloaded` | `path`, `digest` (SHA-256 of the file, hex) |
//! | `session.created` | `protocol_version?`, `user_agent?` |
//! | `session.closed` | `reason`: `client_delete`, `expired`, `upstream_closed`, `shutdown`, `evicted` |
//! | `request.completed` | `method`, `target?` (tool, prompt or resource), `status` (HTTP), `latency_us`, `outcome`: `ok`, `error`, `rejected`, `limited`, `upstream_error`, `timeout`, `cancelled`; `error_code?` (JSON-RPC) |
//! | `upstream.error` | `upstream`, `error`: `connect`, `timeout`, `status`, `protocol`, `closed`; `status?` |
//! | `request.rejected` | `reason`: `header_mismatch`, `bad_input`, `origin`, `host`, `body_too_large`, `unsupported_version`, `session_not_found`, `method_not_allowed`, `not_supported`, `session_budget`, `media_type`, `upstream_unavailable`; `status`, `detail?` |
//! | `auth.success` | `method`: `jwt`, `api_key`, `anonymous` |
//! | `auth.failure` | `reason`: `missing_credentials`, `multiple_credentials`, `unsupported_scheme`, `malformed`, `bad_algorithm`, `missing_exp`, `missing_subject`, `insufficient_scope`, `invalid_signature`, `expired`, `not_yet_valid`, `wrong_issuer`, `wrong_audience`, `unknown_key`, `unknown_api_key`, `keys_unavailable`; `user_agent?` |
//! | `authz.allow`, `authz.deny` | `rule` (rule id), `method`, `target?` |
//! | `ratelimit.limited` | `tier`, `key_hash` (from [`Redactor::hash_field`]), `hits` (rejections this record stands for) |
//! | `ratelimit.overflow` | `tier`, `tracked_keys` |
//! | `circuit.opened` | `upstream`, `failures` |
//! | `circuit.half_open`, `circuit.closed` | `upstream` |
//! | `security.alert` | `detector`: `auth_failures_per_ip` (the record's `client_ip` is the key), `rejections_per_subject` (`subject` is the key); `count`, `threshold`, `window_ms` |
//! | `audit.dropped` | `count`: records dropped since the last such record |
//! | `audit.checkpoint` | `key_id`, `signature` |
//!
//! The schema has no field for tokens, API keys, cookies, `Authorization` values or tool
//! arguments, so none of them can be logged by mistake. Fields listed in
//! `audit.hashed_fields` are replaced by `h:` and 32 hex digits from
//! [`Redactor::hash_field`].
//!
//! # Escaping
//!
//! Strings are JSON-escaped by serde_json, which escapes `"`, `\` and U+0000 to U+001F,
//! so a record is always exactly one line. On top of that, ESC (U+001B) and the C1
//! controls U+0080 to U+009F become U+FFFD, so a decoded field can never drive a
//! terminal; DEL, U+2028, U+2029 and the bidirectional controls U+202A to U+202E and
//! U+2066 to U+2069 are written as `\uXXXX` escapes.
//!
//! # Hash chain
//!
//! `hash = hex(SHA-256(prev_raw || canonical))`, where
//!
//! - `prev_raw` is the 32 raw bytes of the previous record's hash (32 zero bytes for
//!   `seq` 1, whose `prev` is 64 zeros), and
//! - `canonical` is the exact bytes of the record's line with the final
//!   `,"hash":"<64 hex>"` member and the newline removed, so it ends with `…"prev":"<64
//!   hex>"}`. The writer always writes `hash` last, so a checker takes the line, drops
//!   its last 75 bytes (`,"hash":"…"}`) and appends `}`.
//!
//! Because the canonical form is the written bytes, any edited byte, including
//! whitespace or member order, breaks the hash. The chain continues across rotated files
//! and restarts: on start the writer reads the last complete record of the newest file
//! in `audit.dir` and continues from its `seq` and `hash` in a new file.
//!
//! Files are named `<prefix>-<first seq, 20 digits>-<UTC start time>.jsonl`, so listing
//! them by name (see [`log_files`]) gives chain order.
//!
//! # Checkpoints
//!
//! With `audit.signing_key` set, the writer appends an `audit.checkpoint` record every
//! `audit.checkpoint_every` records and at shutdown. Its `signature` is the Ed25519
//! signature (standard base64) of the bytes `shadowcat-audit checkpoint v1\n` followed by
//! the 32 raw bytes of the checkpoint's `prev`, that is the hash of the record before it.
//! `key_id` is the first 8 bytes of SHA-256 over the raw public key, hex. [`verify`]
//! checks every checkpoint when given the public key.
//!
//! # Modes
//!
//! Lossless (the default): [`AuditHandle::submit`] waits up to
//! `audit.backpressure_timeout` for queue space, then returns
//! [`AuditError::Unavailable`] so the caller can fail the request closed. Lossy:
//! `submit` never waits; dropped records are counted and reported in one `audit.dropped`
//! record. [`AuditHandle::record`] never waits in either mode.

mod chain;
mod clock;
mod config;
mod encode;
mod error;
mod event;
mod metrics;
mod monitor;
mod redact;
mod sink;
mod verify;
mod writer;

pub use chain::key_id;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    AuditConfig, DetectorConfig, DetectorsConfig, Fsync, MAX_QUEUE_CAPACITY, Mode, Rotation,
};
pub use error::AuditError;
pub use event::{
    AuditEvent, AuditRecord, AuthFailureReason, Detector, EventKind, Outcome, RejectReason,
    SCHEMA_VERSION, SessionCloseReason, Text, UpstreamFailure,
};
pub use metrics::{LatencyHistogram, MetricsSnapshot, WRITE_LATENCY_BOUNDS};
pub use redact::{HashedField, Redactor};
pub use sink::AuditSink;
pub use verify::{Problem, VerifyFailure, VerifyReport, verify};
pub use writer::{AuditHandle, AuditWriter, load_verifying_key, log_files};
