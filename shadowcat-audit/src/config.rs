//! The `[audit]` section of the proxy's configuration.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::AuditError;
use crate::redact::HashedField;

/// Largest accepted `queue_capacity`, so a typo cannot reserve gigabytes of queue.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 24;

/// Settings of the audit writer, read from the `[audit]` TOML section.
///
/// Every key is optional; the defaults are listed per field. Unknown keys are rejected.
/// The section with every default written out:
///
/// ```toml
/// [audit]
/// file = true
/// dir = "audit"
/// prefix = "audit"
/// rotation = "daily"            # "hourly", "daily" or "size"
/// max_file_bytes = 67108864
/// stdout = false
/// mode = "lossless"             # or "lossy"
/// queue_capacity = 8192
/// backpressure_timeout = "5s"
/// fsync = "1s"                  # "always", "never" or an interval
/// hashed_fields = []            # "subject", "client_ip", "session_id", "target", "user_agent"
/// # hash_salt_file = "/etc/shadowcat/audit-salt"
/// # signing_key = "/etc/shadowcat/audit-signing.pem"
/// checkpoint_every = 10000
///
/// [audit.detectors]
/// max_tracked_keys = 10000
/// auth_failures_per_ip = { enabled = true, threshold = 20, window = "1m" }
/// rejections_per_subject = { enabled = true, threshold = 100, window = "1m" }
/// ```
///
/// ```
/// use shadowcat_audit::{AuditConfig, Fsync, Mode};
///
/// let config: AuditConfig = serde_json::from_str(
///     r#"{"dir": "/var/log/shadowcat", "mode": "lossy", "fsync": "200ms"}"#,
/// )
/// .unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.mode, Mode::Lossy);
/// assert_eq!(config.fsync, Fsync::Interval(std::time::Duration::from_millis(200)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Write records to rolling files in `dir`. Default `true`.
    pub file: bool,
    /// Directory of the audit files, created if missing. Default `audit`.
    pub dir: PathBuf,
    /// File name prefix: files are named `<prefix>-<first seq, 20 digits>-<UTC start
    /// time>.jsonl`. Letters, digits, `_`, `-` and `.` only. Default `audit`.
    pub prefix: String,
    /// When to start a new file: `hourly`, `daily` (UTC) or `size`. Default `daily`.
    pub rotation: Rotation,
    /// Size at which a file is closed and a new one started, in bytes, in every rotation
    /// mode. A single record larger than this gets a file of its own. Default 64 MiB.
    pub max_file_bytes: NonZeroU64,
    /// Also write every record to standard output. Default `false`.
    pub stdout: bool,
    /// `lossless` (back-pressure, then fail closed) or `lossy` (drop and count).
    /// Default `lossless`.
    pub mode: Mode,
    /// Records the queue between callers and the writer thread holds, at most
    /// [`MAX_QUEUE_CAPACITY`]. Default 8192.
    pub queue_capacity: NonZeroUsize,
    /// How long a lossless `submit` waits for queue space before it fails, as a
    /// humantime string such as `"5s"` or `"250ms"`. Default `"5s"`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub backpressure_timeout: Duration,
    /// `"always"` (sync after every write), `"never"` (leave it to the OS) or an interval
    /// such as `"1s"`. Default `"1s"`.
    pub fsync: Fsync,
    /// Fields replaced by their salted hash in every record. Default none.
    pub hashed_fields: Vec<HashedField>,
    /// File whose bytes (trailing whitespace removed) salt every hash. Default none,
    /// which makes hashes plain SHA-256.
    pub hash_salt_file: Option<PathBuf>,
    /// Ed25519 private key (PKCS#8 PEM file) for signed checkpoints. Default none, which
    /// turns checkpoints off.
    pub signing_key: Option<PathBuf>,
    /// Records between signed checkpoints. A final checkpoint is written at shutdown.
    /// Default 10000.
    pub checkpoint_every: NonZeroU64,
    /// Security detectors.
    pub detectors: DetectorsConfig,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            file: true,
            dir: PathBuf::from("audit"),
            prefix: "audit".to_owned(),
            rotation: Rotation::Daily,
            max_file_bytes: NonZeroU64::new(64 << 20).expect("non-zero"),
            stdout: false,
            mode: Mode::Lossless,
            queue_capacity: NonZeroUsize::new(8192).expect("non-zero"),
            backpressure_timeout: Duration::from_secs(5),
            fsync: Fsync::Interval(Duration::from_secs(1)),
            hashed_fields: Vec::new(),
            hash_salt_file: None,
            signing_key: None,
            checkpoint_every: NonZeroU64::new(10_000).expect("non-zero"),
            detectors: DetectorsConfig::default(),
        }
    }
}

impl AuditConfig {
    /// Checks the values serde cannot check alone.
    ///
    /// # Errors
    ///
    /// Returns [`AuditError::Config`] naming the first invalid key and its value.
    pub fn validate(&self) -> Result<(), AuditError> {
        self.validate_with_outputs(false)
    }

    /// Validates, counting a caller-provided line output as an output.
    pub(crate) fn validate_with_outputs(&self, custom_output: bool) -> Result<(), AuditError> {
        if !self.file && !self.stdout && !custom_output {
            return Err(config_error(
                "audit.file",
                "false",
                "no output left: enable `file` or `stdout`",
            ));
        }
        let prefix_ok = !self.prefix.is_empty()
            && !self.prefix.starts_with('.')
            && self
                .prefix
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'));
        if !prefix_ok {
            return Err(config_error(
                "audit.prefix",
                &format!("{:?}", self.prefix),
                "must be non-empty, not start with `.`, and use only letters, digits, `_`, `-` and `.`",
            ));
        }
        if self.queue_capacity.get() > MAX_QUEUE_CAPACITY {
            return Err(config_error(
                "audit.queue_capacity",
                &self.queue_capacity.to_string(),
                "must be at most 16777216",
            ));
        }
        if self.fsync == Fsync::Interval(Duration::ZERO) {
            return Err(config_error(
                "audit.fsync",
                "\"0s\"",
                "use \"always\" instead of a zero interval",
            ));
        }
        for (field, detector) in [
            (
                "audit.detectors.auth_failures_per_ip.window",
                &self.detectors.auth_failures_per_ip,
            ),
            (
                "audit.detectors.rejections_per_subject.window",
                &self.detectors.rejections_per_subject,
            ),
        ] {
            if detector.window < MIN_DETECTOR_WINDOW {
                return Err(config_error(
                    field,
                    &format!(
                        "{:?}",
                        humantime::format_duration(detector.window).to_string()
                    ),
                    "must be at least 16ms",
                ));
            }
        }
        Ok(())
    }
}

fn config_error(field: &'static str, value: &str, reason: &'static str) -> AuditError {
    AuditError::Config {
        field,
        value: value.to_owned(),
        reason,
    }
}

/// When the writer starts a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    /// At the start of every UTC hour, and at `max_file_bytes`.
    Hourly,
    /// At the start of every UTC day, and at `max_file_bytes`.
    Daily,
    /// Only at `max_file_bytes`.
    Size,
}

/// The policy for a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `submit` waits up to `backpressure_timeout` for space, then fails so the caller
    /// can fail the request closed.
    Lossless,
    /// `submit` never waits: a record that does not fit is dropped, counted, and
    /// reported later in one `audit.dropped` record.
    Lossy,
}

/// When the writer calls `fdatasync` on the current file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every write. The writer writes the records it has queued in one call, so
    /// this is once per batch, and a record is on disk before the next batch starts.
    Always,
    /// At most this long after a record is written.
    Interval(Duration),
    /// Never explicitly; the operating system decides. Rotation and shutdown still sync.
    Never,
}

impl<'de> Deserialize<'de> for Fsync {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            interval => humantime::parse_duration(interval)
                .map(Self::Interval)
                .map_err(|error| {
                    serde::de::Error::custom(format!(
                        "invalid fsync value {interval:?}: expected \"always\", \"never\" or an interval such as \"1s\" ({error})"
                    ))
                }),
        }
    }
}

/// Smallest detector window: the window is kept in 16 buckets of at least 1 ms.
const MIN_DETECTOR_WINDOW: Duration = Duration::from_millis(16);

/// The security detectors, each a sliding window over event time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorsConfig {
    /// `auth.failure` records per client IP. Default 20 in 1 minute.
    pub auth_failures_per_ip: DetectorConfig,
    /// `request.rejected`, `authz.deny` and `ratelimit.limited` hits per subject.
    /// Default 100 in 1 minute.
    pub rejections_per_subject: DetectorConfig,
    /// Keys each detector tracks at most; past it, new keys are not counted until idle
    /// keys expire. Default 10000.
    pub max_tracked_keys: NonZeroUsize,
}

impl Default for DetectorsConfig {
    fn default() -> Self {
        Self {
            auth_failures_per_ip: DetectorConfig {
                enabled: true,
                threshold: NonZeroU64::new(20).expect("non-zero"),
                window: Duration::from_secs(60),
            },
            rejections_per_subject: DetectorConfig {
                enabled: true,
                threshold: NonZeroU64::new(100).expect("non-zero"),
                window: Duration::from_secs(60),
            },
            max_tracked_keys: NonZeroUsize::new(10_000).expect("non-zero"),
        }
    }
}

/// One sliding-window detector.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Whether the detector runs. Default `true`.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Events within one window that raise an alert.
    pub threshold: NonZeroU64,
    /// Window length as a humantime string such as `"1m"`, at least 16 ms. At most one
    /// alert per key is raised per window.
    #[serde(deserialize_with = "deserialize_duration")]
    pub window: Duration,
}

fn enabled_by_default() -> bool {
    true
}

fn deserialize_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|error| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {error} (expected a value such as \"5s\" or \"250ms\")"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<AuditConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn defaults_validate() {
        let config = parse("{}").unwrap();
        assert_eq!(config, AuditConfig::default());
        config.validate().unwrap();
    }

    #[test]
    fn unknown_key_is_rejected() {
        let error = parse(r#"{"queue_size": 10}"#).unwrap_err().to_string();
        assert!(error.contains("queue_size"), "{error}");
    }

    #[test]
    fn bad_duration_names_the_value() {
        let error = parse(r#"{"backpressure_timeout": "5 parsecs"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"5 parsecs\""), "{error}");
    }

    #[test]
    fn fsync_forms_parse() {
        assert_eq!(
            parse(r#"{"fsync": "always"}"#).unwrap().fsync,
            Fsync::Always
        );
        assert_eq!(parse(r#"{"fsync": "never"}"#).unwrap().fsync, Fsync::Never);
        assert_eq!(
            parse(r#"{"fsync": "250ms"}"#).unwrap().fsync,
            Fsync::Interval(Duration::from_millis(250))
        );
        assert!(parse(r#"{"fsync": "sometimes"}"#).is_err());
    }

    #[test]
    fn zero_capacity_is_rejected() {
        assert!(parse(r#"{"queue_capacity": 0}"#).is_err());
    }

    #[test]
    fn validation_names_field_and_value() {
        let cases = [
            (r#"{"file": false}"#, "audit.file"),
            (r#"{"prefix": "../x"}"#, "audit.prefix"),
            (r#"{"queue_capacity": 99999999}"#, "audit.queue_capacity"),
            (r#"{"fsync": "0s"}"#, "audit.fsync"),
            (
                r#"{"detectors": {"auth_failures_per_ip": {"threshold": 3, "window": "1ms"}}}"#,
                "audit.detectors.auth_failures_per_ip.window",
            ),
        ];
        for (json, field) in cases {
            let error = parse(json).unwrap().validate().unwrap_err();
            let AuditError::Config { field: named, .. } = &error else {
                panic!("{json}: unexpected error {error}");
            };
            assert_eq!(*named, field, "{json}");
        }
        let message = parse(r#"{"prefix": "../x"}"#)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"../x\""), "{message}");
    }

    #[test]
    fn hashed_fields_parse() {
        let config = parse(r#"{"hashed_fields": ["subject", "client_ip"]}"#).unwrap();
        assert_eq!(
            config.hashed_fields,
            [HashedField::Subject, HashedField::ClientIp]
        );
        assert!(parse(r#"{"hashed_fields": ["password"]}"#).is_err());
    }
}
