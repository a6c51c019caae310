//! Child processes of a bench run: the example server and the proxy. They start with
//! their output in a log file, and the run waits until their port accepts connections.
//! A child is killed when its handle is dropped, so a run that fails part way still
//! stops it.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// Maximum wait for a started child to accept TCP connections.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Interval between readiness probes.
const READY_POLL: Duration = Duration::from_millis(50);

/// Bytes of a child's log shown when it fails to start.
const LOG_TAIL_BYTES: usize = 2_000;

/// A running child process that is killed when dropped.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl ChildProcess {
    /// Starts `program` with `args`, writing its stdout and stderr to `LOG_DIR/NAME.log`.
    ///
    /// # Errors
    ///
    /// Fails when the log file cannot be created or the program cannot be started.
    pub(crate) fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let log_path = log_dir.join(format!("{name}.log"));
        let log = File::create(&log_path)
            .with_context(|| format!("could not create {}", log_path.display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("could not start {}", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log_path,
        })
    }

    /// Polls `addr` until it accepts a TCP connection, for at most `timeout`.
    ///
    /// # Errors
    ///
    /// Fails with the end of the child's log when the child exits first or the timeout
    /// passes.
    pub(crate) async fn wait_ready(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let give_up_at = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} before accepting connections on {addr}; log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= give_up_at {
                bail!(
                    "{} did not accept connections on {addr} within {} s; log:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Kills the child and waits for it to exit.
    pub(crate) async fn stop(mut self) {
        // An error here means the child has already exited, which is the goal.
        let _ = self.child.kill().await;
    }

    /// Returns the last lines of the child's log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let mut start = text.len().saturating_sub(LOG_TAIL_BYTES);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].trim_end().to_owned()
    }
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before the child binds it, so another process could take it in
/// between. The child then fails to start and the run reports that.
///
/// # Errors
///
/// Fails when no port can be bound.
pub(crate) fn free_local_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("could not bind a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_ready_reports_early_exit_with_log() {
        let dir = tempfile::tempdir().unwrap();
        let args = vec!["-c".to_owned(), "echo boom >&2; exit 3".to_owned()];
        let mut child = ChildProcess::spawn("failing", Path::new("sh"), &args, dir.path()).unwrap();
        // Nothing listens on a port that was just released, so only the exit ends the wait.
        let addr = free_local_port().unwrap();
        let error = child
            .wait_ready(addr, Duration::from_secs(60))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("failing exited"), "{message}");
        assert!(message.contains("boom"), "{message}");
    }

    #[tokio::test]
    async fn wait_ready_returns_once_port_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let args = vec!["-c".to_owned(), "exec sleep 60".to_owned()];
        let mut child = ChildProcess::spawn("idle", Path::new("sh"), &args, dir.path()).unwrap();
        child
            .wait_ready(addr, Duration::from_secs(60))
            .await
            .unwrap();
        child.stop().await;
    }

    #[test]
    fn free_port_is_on_loopback() {
        let addr = free_local_port().unwrap();
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
    }
}
