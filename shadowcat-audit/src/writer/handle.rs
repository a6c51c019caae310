use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};

use super::worker::{Command, StopStatus};
use crate::config::Mode;
use crate::error::AuditError;
use crate::event::AuditEvent;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::redact::Redactor;
use crate::sink::AuditSink;

/// A cloneable handle to a running audit writer.
///
/// Every clone feeds the same queue and writer thread. Dropping the last handle lets the
/// writer drain the queue and stop; call [`AuditHandle::shutdown`] to wait for that.
#[derive(Debug, Clone)]
pub struct AuditHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    sender: mpsc::Sender<Command>,
    mode: Mode,
    backpressure_timeout: Duration,
    metrics: Arc<Metrics>,
    redactor: Redactor,
    stopped: watch::Receiver<Option<StopStatus>>,
    shutdown_requested: Arc<AtomicBool>,
}

impl AuditHandle {
    pub(crate) fn new(
        sender: mpsc::Sender<Command>,
        mode: Mode,
        backpressure_timeout: Duration,
        metrics: Arc<Metrics>,
        redactor: Redactor,
        stopped: watch::Receiver<Option<StopStatus>>,
        shutdown_requested: Arc<AtomicBool>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                sender,
                mode,
                backpressure_timeout,
                metrics,
                redactor,
                stopped,
                shutdown_requested,
            }),
        }
    }

    /// Queues `event` without waiting, in either mode.
    ///
    /// When the queue is full or the writer has stopped, the event is dropped, counted,
    /// and reported in the next `audit.dropped` record. Use [`AuditHandle::submit`] where
    /// a lost record must fail the request.
    #[inline]
    pub fn record(&self, event: AuditEvent) {
        if self.shared.sender.try_send(Command::Event(event)).is_err() {
            self.shared.metrics.record_drop();
        }
    }

    /// Queues `event` according to the configured mode.
    ///
    /// Lossless mode waits up to `backpressure_timeout` for queue space. Lossy mode never
    /// waits: a full queue drops and counts the event, like [`AuditHandle::record`].
    ///
    /// # Errors
    ///
    /// In lossless mode, [`AuditError::Unavailable`] when the timeout elapses, and in both
    /// modes [`AuditError::Closed`] when the writer has stopped. Lossless failures also
    /// increment the `audit_unavailable` counter; the caller should fail the request
    /// closed (JSON-RPC error `-32013`).
    ///
    /// # Panics
    ///
    /// Panics in lossless mode when called outside a Tokio runtime with the time driver
    /// enabled and the queue is full.
    pub async fn submit(&self, event: AuditEvent) -> Result<(), AuditError> {
        let shared = &self.shared;
        let command = match shared.sender.try_send(Command::Event(event)) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => {
                shared.metrics.record_drop();
                if shared.mode == Mode::Lossless {
                    shared.metrics.record_unavailable();
                }
                return Err(AuditError::Closed);
            }
            Err(TrySendError::Full(command)) => command,
        };
        if shared.mode == Mode::Lossy {
            shared.metrics.record_drop();
            return Ok(());
        }

        let timeout = shared.backpressure_timeout;
        match tokio::time::timeout(timeout, shared.sender.send(command)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_closed)) => {
                shared.metrics.record_unavailable();
                Err(AuditError::Closed)
            }
            Err(_elapsed) => {
                shared.metrics.record_unavailable();
                Err(AuditError::Unavailable { timeout })
            }
        }
    }

    /// Waits until every record queued before this call is written to every output and,
    /// unless `fsync = "never"`, synced.
    ///
    /// While an output keeps failing, the writer retries with a back-off of up to 1.6 s
    /// and this call keeps waiting. Wrap it in a timeout where that matters.
    ///
    /// # Errors
    ///
    /// Returns [`AuditError::Closed`] when the writer has stopped.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (reply, done) = oneshot::channel();
        self.shared
            .sender
            .send(Command::Flush(reply))
            .await
            .map_err(|_| AuditError::Closed)?;
        done.await.map_err(|_| AuditError::Closed)?
    }

    /// Stops accepting records, writes everything already queued, writes a final signed
    /// checkpoint when signing is on, syncs, and waits for the writer thread to finish.
    ///
    /// Calling it again, from any clone, waits for the same stop.
    ///
    /// # Errors
    ///
    /// Returns [`AuditError::Lost`] when the writer gave up on records it could not write,
    /// and [`AuditError::Closed`] when the writer thread died without reporting.
    pub async fn shutdown(&self) -> Result<(), AuditError> {
        let shared = &self.shared;
        if !shared.shutdown_requested.swap(true, Ordering::SeqCst) {
            // A send error means the writer already stopped, and its status gives the reason.
            let _ = shared.sender.send(Command::Shutdown).await;
        }
        let mut stopped = shared.stopped.clone();
        let status = stopped
            .wait_for(Option::is_some)
            .await
            .map_err(|_| AuditError::Closed)?
            .clone();
        match status {
            Some(StopStatus::Lost { lost, reason }) => Err(AuditError::Lost { lost, reason }),
            Some(StopStatus::Clean) | None => Ok(()),
        }
    }

    /// Returns a copy of the writer's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        let sender = &self.shared.sender;
        let capacity = sender.max_capacity();
        self.shared
            .metrics
            .snapshot(capacity - sender.capacity(), capacity)
    }

    /// Appends the writer's counters to `out` in the Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        self.metrics().render_prometheus(out);
    }

    /// Returns the redactor configured for this writer, for hashing values such as rate
    /// limit keys before they go into an event.
    pub fn redactor(&self) -> &Redactor {
        &self.shared.redactor
    }

    /// Returns the configured mode.
    pub fn mode(&self) -> Mode {
        self.shared.mode
    }
}

impl AuditSink for AuditHandle {
    #[inline]
    fn record(&self, event: AuditEvent) {
        AuditHandle::record(self, event);
    }
}
