//! The background writer: a bounded queue, a dedicated thread, and its outputs.
//!
//! Files are written by this crate rather than through `tracing-appender`'s
//! `RollingFileAppender` (0.2). That appender rotates only by time, gives no access to
//! the open file for `fdatasync`, prints rotation errors to stderr instead of returning
//! them, and reads the system clock directly, so tests cannot drive rotation.

mod handle;
mod rolling;
mod worker;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use tokio::sync::{mpsc, watch};

pub use handle::AuditHandle;
pub use rolling::log_files;

use crate::chain::{Chain, ChainTip, key_id};
use crate::clock::{Clock, SystemClock};
use crate::config::{AuditConfig, Fsync};
use crate::encode::Encoder;
use crate::error::AuditError;
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::redact::Redactor;
use rolling::RollingFiles;
use worker::{CheckpointSigner, Worker};

/// Builds and starts an audit writer.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shadowcat_audit::{AuditConfig, AuditEvent, AuditWriter, EventKind};
///
/// let dir = tempfile::tempdir()?;
/// let config = AuditConfig { dir: dir.path().to_owned(), ..AuditConfig::default() };
/// let audit = AuditWriter::new(config).spawn()?;
/// audit.submit(AuditEvent::new(EventKind::ProxyStarted { version: "0.1.0".into(), listen: None })).await?;
/// audit.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub struct AuditWriter {
    config: AuditConfig,
    clock: Arc<dyn Clock>,
    line_output: Option<Box<dyn Write + Send>>,
}

impl AuditWriter {
    /// Starts building a writer for `config`.
    pub fn new(config: AuditConfig) -> Self {
        Self {
            config,
            clock: Arc::new(SystemClock),
            line_output: None,
        }
    }

    /// Replaces the clock that decides hourly and daily rotation and names files.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sends the line output to `output` instead of standard output, and turns it on
    /// even when `stdout = false`.
    pub fn line_output(mut self, output: Box<dyn Write + Send>) -> Self {
        self.line_output = Some(output);
        self
    }

    /// Validates the config, loads the salt and signing key, resumes the chain from the
    /// newest file in `dir`, and starts the writer thread.
    ///
    /// # Errors
    ///
    /// Returns [`AuditError::Config`] for invalid settings, [`AuditError::Key`] when the
    /// salt or key file cannot be used, [`AuditError::Io`] when the directory cannot be
    /// created or read, and [`AuditError::Resume`] when the newest file does not end in
    /// an audit record.
    pub fn spawn(self) -> Result<AuditHandle, AuditError> {
        let config = &self.config;
        config.validate_with_outputs(self.line_output.is_some())?;

        let salt = config
            .hash_salt_file
            .as_deref()
            .map(load_salt)
            .transpose()?;
        let redactor = Redactor::new(salt, &config.hashed_fields);
        let signer = config
            .signing_key
            .as_deref()
            .map(load_signing_key)
            .transpose()?
            .map(|key| CheckpointSigner {
                key_id: key_id(&key.verifying_key()),
                key,
                every: config.checkpoint_every.get(),
                since_last: 0,
            });

        let (files, tip) = if config.file {
            fs::create_dir_all(&config.dir).map_err(|source| AuditError::Io {
                action: "create directory",
                path: config.dir.clone(),
                source,
            })?;
            let resumed = rolling::resume(&config.dir, &config.prefix)?;
            if let Some(path) = &resumed.truncated {
                tracing::warn!(
                    path = %path.display(),
                    "audit file ends in a partial record; resuming after the last complete one"
                );
            }
            let files = RollingFiles::new(
                config.dir.clone(),
                config.prefix.clone(),
                config.rotation,
                config.max_file_bytes.get(),
                config.fsync != Fsync::Never,
                Arc::clone(&self.clock),
            );
            (Some(files), resumed.tip)
        } else {
            (None, ChainTip::genesis())
        };

        let line_output = match self.line_output {
            Some(output) => Some(output),
            None if config.stdout => Some(Box::new(std::io::stdout()) as Box<dyn Write + Send>),
            None => None,
        };

        let (sender, receiver) = mpsc::channel(config.queue_capacity.get());
        let (stopped_sender, stopped) = watch::channel(None);
        let metrics = Arc::new(Metrics::default());
        let shutdown_requested = Arc::new(AtomicBool::new(false));
        let worker = Worker::new(
            receiver,
            Chain::new(tip, Encoder::new(redactor.clone())),
            Monitor::new(&config.detectors),
            signer,
            files,
            line_output,
            config.fsync,
            Arc::clone(&metrics),
            stopped_sender,
            Arc::clone(&shutdown_requested),
        );

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|source| AuditError::Io {
                action: "start the writer runtime for",
                path: config.dir.clone(),
                source,
            })?;
        std::thread::Builder::new()
            .name("shadowcat-audit".to_owned())
            .spawn(move || runtime.block_on(worker.run()))
            .map_err(|source| AuditError::Io {
                action: "start the writer thread for",
                path: config.dir.clone(),
                source,
            })?;

        tracing::info!(
            dir = %config.dir.display(),
            file = config.file,
            stdout = config.stdout,
            mode = ?config.mode,
            resume_seq = tip.seq,
            "audit writer started"
        );
        Ok(AuditHandle::new(
            sender,
            config.mode,
            config.backpressure_timeout,
            metrics,
            redactor,
            stopped,
            shutdown_requested,
        ))
    }
}

fn load_salt(path: &Path) -> Result<Vec<u8>, AuditError> {
    let key_error = |reason: String| AuditError::Key {
        what: "hash salt",
        path: path.to_owned(),
        reason,
    };
    let mut salt = fs::read(path).map_err(|error| key_error(error.to_string()))?;
    while salt.last().is_some_and(u8::is_ascii_whitespace) {
        salt.pop();
    }
    if salt.len() < 16 {
        return Err(key_error(format!(
            "the salt is {} bytes; use at least 16 random bytes",
            salt.len()
        )));
    }
    Ok(salt)
}

fn load_signing_key(path: &Path) -> Result<SigningKey, AuditError> {
    let key_error = |reason: String| AuditError::Key {
        what: "signing key",
        path: path.to_owned(),
        reason,
    };
    let pem = fs::read_to_string(path).map_err(|error| key_error(error.to_string()))?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|error| key_error(format!("not an Ed25519 PKCS#8 PEM private key ({error})")))
}

/// Loads the public key that checks checkpoint signatures from a PEM file containing
/// either the public key (SPKI, `BEGIN PUBLIC KEY`) or the PKCS#8 private key.
///
/// # Errors
///
/// Returns [`AuditError::Key`] when the file cannot be read or contains neither form.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, AuditError> {
    let key_error = |reason: String| AuditError::Key {
        what: "verifying key",
        path: path.to_owned(),
        reason,
    };
    let pem = fs::read_to_string(path).map_err(|error| key_error(error.to_string()))?;
    if let Ok(key) = VerifyingKey::from_public_key_pem(&pem) {
        return Ok(key);
    }
    SigningKey::from_pkcs8_pem(&pem)
        .map(|key| key.verifying_key())
        .map_err(|_| key_error("not an Ed25519 public key or PKCS#8 private key in PEM".to_owned()))
}
