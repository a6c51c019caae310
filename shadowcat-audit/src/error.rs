use std::path::PathBuf;
use std::time::Duration;

/// Errors of the audit crate: configuration, key loading, file I/O and submission.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A configuration value is out of range or inconsistent with another one.
    #[error("invalid audit config: `{field}` = {value}: {reason}")]
    Config {
        /// The config key, such as `audit.queue_capacity`.
        field: &'static str,
        /// The rejected value as written in the config.
        value: String,
        /// The constraint the value breaks.
        reason: &'static str,
    },
    /// A signing key or salt file could not be read or parsed.
    #[error("could not load {what} from {}: {reason}", path.display())]
    Key {
        /// The secret involved: `signing key`, `verifying key` or `hash salt`.
        what: &'static str,
        /// The file that was read.
        path: PathBuf,
        /// The failure reason, without any key material.
        reason: String,
    },
    /// Reading or writing an audit file failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// The operation that failed, such as `write` or `create`.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The chain cannot be resumed from the existing audit files.
    #[error("could not resume the audit chain from {}: {reason}; move the file aside or run `verify` on it", path.display())]
    Resume {
        /// The newest audit file.
        path: PathBuf,
        /// The problem with the file.
        reason: &'static str,
    },
    /// The queue stayed full for the whole back-pressure timeout (lossless mode), so the
    /// caller should fail the request closed.
    #[error("audit trail unavailable: queue still full after {timeout:?}")]
    Unavailable {
        /// The configured back-pressure timeout that elapsed.
        timeout: Duration,
    },
    /// The writer has shut down or stopped, so no record can be accepted.
    #[error("audit trail unavailable: the writer has stopped")]
    Closed,
    /// Some records could not be written before shutdown gave up retrying.
    #[error("audit writer stopped with {lost} records unwritten: {reason}")]
    Lost {
        /// How many accepted records never reached every output.
        lost: u64,
        /// The last write error.
        reason: String,
    },
}
