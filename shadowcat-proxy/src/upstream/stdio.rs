//! Stdio upstreams: MCP servers run as child processes that speak newline-delimited
//! JSON-RPC on stdin and stdout.
//!
//! Legacy sessions get one child each, so the child's state is the session's state.
//! Modern stateless requests share a small pool of children. The proxy rewrites each
//! request id to one of its own before writing it, so two clients that both use id 1
//! can never receive each other's results.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::UpstreamError;

/// Capacity of the channel carrying server-initiated messages to a legacy GET stream.
const SERVER_MESSAGE_CAPACITY: usize = 256;
/// Capacity of the queue of lines waiting to be written to a child's stdin.
const WRITE_QUEUE_CAPACITY: usize = 1024;
/// Maximum length of one stdout line from a child: 16 MiB.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Callback run once when a child exits, with a short reason.
pub type ExitCallback = Box<dyn Fn(&str) + Send + Sync>;

/// One running stdio MCP server.
pub struct StdioChild {
    writer: mpsc::Sender<Bytes>,
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    server_messages: broadcast::Sender<Bytes>,
    alive: AtomicBool,
    process: Mutex<Option<Child>>,
    pid: Option<u32>,
}

impl std::fmt::Debug for StdioChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioChild")
            .field("pid", &self.pid)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl StdioChild {
    /// Starts `argv` as a child process and the tasks that read and write its pipes.
    ///
    /// `on_exit` runs once when the child's stdout closes, with a short reason.
    ///
    /// # Errors
    ///
    /// Returns [`UpstreamError::Unreachable`] when the program cannot be started.
    pub fn spawn(argv: &[String], on_exit: ExitCallback) -> Result<Arc<Self>, UpstreamError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| UpstreamError::Unreachable("the stdio command is empty".to_owned()))?;
        let mut process = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                UpstreamError::Unreachable(format!("could not start {program}: {error}"))
            })?;
        let stdin = process.stdin.take().expect("stdin is piped");
        let stdout = process.stdout.take().expect("stdout is piped");
        let pid = process.id();

        let (writer, mut lines) = mpsc::channel::<Bytes>(WRITE_QUEUE_CAPACITY);
        let (server_messages, _) = broadcast::channel(SERVER_MESSAGE_CAPACITY);
        let child = Arc::new(Self {
            writer,
            pending: Mutex::new(HashMap::new()),
            server_messages,
            alive: AtomicBool::new(true),
            process: Mutex::new(Some(process)),
            pid,
        });

        tokio::spawn(async move {
            let mut stdin = stdin;
            while let Some(line) = lines.recv().await {
                let written = async {
                    stdin.write_all(&line).await?;
                    stdin.write_all(b"\n").await?;
                    stdin.flush().await
                };
                if written.await.is_err() {
                    break;
                }
            }
        });

        let reader_child = Arc::clone(&child);
        tokio::spawn(async move {
            let reason = reader_child.read_stdout(stdout).await;
            reader_child.mark_dead();
            tracing::warn!(pid = ?reader_child.pid, reason, "stdio upstream exited");
            on_exit(reason);
        });

        tracing::info!(pid = ?pid, program = %program, "started stdio upstream");
        Ok(child)
    }

    async fn read_stdout(&self, stdout: tokio::process::ChildStdout) -> &'static str {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) => return "stdout closed",
                Ok(_) if line.len() > MAX_LINE_BYTES => return "line over the size limit",
                Ok(_) => self.dispatch(&line),
                Err(_) => return "stdout read failed",
            }
        }
    }

    /// Routes one line from the child: a response goes to the request waiting for its
    /// id, anything else to the server-message channel.
    fn dispatch(&self, line: &[u8]) {
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            return;
        }
        let Ok(message) = serde_json::from_slice::<Value>(trimmed) else {
            tracing::warn!(pid = ?self.pid, "stdio upstream wrote a line that is not JSON");
            return;
        };
        let is_response = message.get("method").is_none()
            && (message.get("result").is_some() || message.get("error").is_some());
        if is_response && let Some(id) = message.get("id") {
            let waiter = self.pending.lock().remove(&id_key(id));
            match waiter {
                Some(waiter) => {
                    let _ = waiter.send(message);
                }
                None => {
                    tracing::debug!(pid = ?self.pid, "stdio upstream sent a response with an unknown id")
                }
            }
            return;
        }
        if self
            .server_messages
            .send(Bytes::copy_from_slice(trimmed))
            .is_err()
        {
            // NOTE: with no open GET stream there is nowhere to deliver a server-initiated
            // message, so it is logged and dropped.
            tracing::debug!(pid = ?self.pid, "no stream open for a stdio server message");
        }
    }

    fn mark_dead(&self) {
        self.alive.store(false, Ordering::Release);
        // Dropping the senders wakes every waiter with an error.
        self.pending.lock().clear();
    }

    /// Returns true until the child's stdout closes.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Returns the operating-system process id.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Writes one message and, when it has an `id`, waits for the response with that id.
    ///
    /// # Errors
    ///
    /// Returns [`UpstreamError::Failed`] when the child is dead or dies before it
    /// responds, and [`UpstreamError::Timeout`] when no response arrives in `timeout`.
    pub async fn call(
        &self,
        message: Bytes,
        id: Option<&Value>,
        timeout: Duration,
    ) -> Result<Option<Value>, UpstreamError> {
        if !self.is_alive() {
            return Err(UpstreamError::Failed(
                "the stdio upstream has exited".to_owned(),
            ));
        }
        let Some(id) = id else {
            self.write(message).await?;
            return Ok(None);
        };

        let key = id_key(id);
        let (sender, receiver) = oneshot::channel();
        self.pending.lock().insert(key.clone(), sender);
        let guard = PendingGuard {
            child: self,
            key: Some(key),
        };
        self.write(message).await?;

        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(response)) => {
                guard.disarm();
                Ok(Some(response))
            }
            Ok(Err(_)) => Err(UpstreamError::Failed(
                "the stdio upstream exited before it responded".to_owned(),
            )),
            Err(_) => Err(UpstreamError::Timeout),
        }
    }

    async fn write(&self, message: Bytes) -> Result<(), UpstreamError> {
        self.writer
            .send(message)
            .await
            .map_err(|_| UpstreamError::Failed("the stdio upstream's stdin is closed".to_owned()))
    }

    /// Subscribes to messages the server sends on its own: notifications and requests.
    pub fn subscribe(&self) -> broadcast::Receiver<Bytes> {
        self.server_messages.subscribe()
    }

    /// Kills the child process. Safe to call more than once.
    pub fn kill(&self) {
        if let Some(mut process) = self.process.lock().take() {
            let _ = process.start_kill();
            tokio::spawn(async move {
                let _ = process.wait().await;
            });
        }
        self.mark_dead();
    }
}

impl Drop for StdioChild {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.get_mut().take() {
            let _ = process.start_kill();
        }
    }
}

/// Removes a waiter whose caller went away (timeout or client disconnect) and asks the
/// child to stop working on that request.
struct PendingGuard<'a> {
    child: &'a StdioChild,
    key: Option<String>,
}

impl PendingGuard<'_> {
    fn disarm(mut self) {
        self.key = None;
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        if self.child.pending.lock().remove(&key).is_none() {
            return;
        }
        let Ok(id) = serde_json::from_str::<Value>(&key) else {
            return;
        };
        let cancel = serde_json::json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": { "requestId": id, "reason": "the client went away" }
        });
        let _ = self.child.writer.try_send(Bytes::from(cancel.to_string()));
    }
}

/// Returns the lookup key of a JSON-RPC id: its canonical JSON text, so `1` and `"1"` differ.
fn id_key(id: &Value) -> String {
    id.to_string()
}

/// A pool of stdio children for modern stateless requests.
pub struct StdioPool {
    argv: Vec<String>,
    slots: Vec<Mutex<Option<Arc<StdioChild>>>>,
    next_slot: AtomicUsize,
    next_id: AtomicU64,
}

impl std::fmt::Debug for StdioPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioPool")
            .field("size", &self.slots.len())
            .finish()
    }
}

impl StdioPool {
    /// Builds a pool of `size` children of `argv`, started on first use.
    pub fn new(argv: Vec<String>, size: usize) -> Arc<Self> {
        Arc::new(Self {
            argv,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next_slot: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        })
    }

    /// Returns a live child, starting or replacing one as needed, round robin.
    fn child(self: &Arc<Self>) -> Result<Arc<StdioChild>, UpstreamError> {
        let index = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock();
        if let Some(child) = slot.as_ref()
            && child.is_alive()
        {
            return Ok(Arc::clone(child));
        }
        let child = StdioChild::spawn(
            &self.argv,
            Box::new(move |reason| {
                tracing::warn!(
                    slot = index,
                    reason,
                    "stdio pool child exited; it is replaced on next use"
                );
            }),
        )?;
        *slot = Some(Arc::clone(&child));
        Ok(child)
    }

    /// Sends one modern-era message through the pool and returns the response with the
    /// client's own id restored.
    ///
    /// # Errors
    ///
    /// Returns an [`UpstreamError`] when no child can be started, the child dies, or the
    /// response does not arrive in `timeout`.
    pub async fn call(
        self: &Arc<Self>,
        mut message: Value,
        timeout: Duration,
    ) -> Result<Option<Value>, UpstreamError> {
        let child = self.child()?;
        let client_id = message.get("id").cloned();
        let proxy_id = client_id.as_ref().map(|_| {
            Value::String(format!(
                "shadowcat-{}",
                self.next_id.fetch_add(1, Ordering::Relaxed)
            ))
        });
        if let Some(proxy_id) = &proxy_id {
            message["id"] = proxy_id.clone();
        }
        let line = Bytes::from(
            serde_json::to_vec(&message)
                .map_err(|error| UpstreamError::Internal(error.to_string()))?,
        );

        let response = child.call(line, proxy_id.as_ref(), timeout).await?;
        Ok(response.map(|mut response| {
            if let Some(client_id) = client_id {
                response["id"] = client_id;
            }
            response
        }))
    }

    /// Probes the servers' protocol versions with `server/discover`.
    ///
    /// # Errors
    ///
    /// Returns an [`UpstreamError`] when the child cannot be started or does not respond.
    pub async fn discover(self: &Arc<Self>, timeout: Duration) -> Result<Value, UpstreamError> {
        let request = super::discover_request();
        self.call(request, timeout)
            .await?
            .ok_or_else(|| UpstreamError::Failed("no response to server/discover".to_owned()))
    }

    /// Kills every child of the pool.
    pub fn shutdown(&self) {
        for slot in &self.slots {
            if let Some(child) = slot.lock().take() {
                child.kill();
            }
        }
    }
}
