//! Helpers shared by the integration tests: temp-dir configs, a gated output that
//! stalls the writer on demand, and log readers.

#![allow(dead_code, unreachable_pub)]

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shadowcat_audit::{
    AuditConfig, AuditEvent, AuditWriter, EventKind, Outcome, RejectReason, log_files,
};

/// Returns the default config with its files in `dir`.
pub fn config_in(dir: &Path) -> AuditConfig {
    AuditConfig {
        dir: dir.to_owned(),
        ..AuditConfig::default()
    }
}

/// Returns a fixed instant (2027-01-15 08:00:00 UTC) for fake-clock tests.
pub fn base_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// Builds a `request.completed` event carrying `n` as its latency, so records differ.
pub fn completed(n: u64) -> AuditEvent {
    AuditEvent::new(EventKind::RequestCompleted {
        method: "tools/call".into(),
        target: Some("search".into()),
        status: 200,
        latency_us: n,
        outcome: Outcome::Ok,
        error_code: None,
    })
    .with_client_ip("192.0.2.10".parse().unwrap())
}

/// Builds a `request.rejected` event.
pub fn rejected() -> AuditEvent {
    AuditEvent::new(EventKind::RequestRejected {
        reason: RejectReason::HeaderMismatch,
        status: 400,
        detail: Some("mcp-method".into()),
    })
}

/// Writes `count` `request.completed` records to `config`'s directory and shuts down.
pub fn write_log(config: AuditConfig, count: u64) -> Vec<PathBuf> {
    let dir = config.dir.clone();
    let prefix = config.prefix.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let audit = AuditWriter::new(config).spawn().unwrap();
        for n in 0..count {
            audit.submit(completed(n)).await.unwrap();
        }
        audit.shutdown().await.unwrap();
    });
    log_files(&dir, &prefix).unwrap()
}

/// Reads every line of every file, in order.
pub fn read_lines(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .flat_map(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Parses every line as JSON.
pub fn read_records(paths: &[PathBuf]) -> Vec<serde_json::Value> {
    read_lines(paths)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A line output that blocks every write until the gate opens, and keeps what it got.
#[derive(Clone, Default)]
pub struct GatedOutput {
    gate: Arc<(Mutex<bool>, Condvar)>,
    pub written: Arc<Mutex<Vec<u8>>>,
}

impl GatedOutput {
    pub fn open(&self) {
        let (open, changed) = &*self.gate;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }

    pub fn lines(&self) -> Vec<String> {
        String::from_utf8(self.written.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for GatedOutput {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let (open, changed) = &*self.gate;
        let mut is_open = open.lock().unwrap();
        while !*is_open {
            is_open = changed.wait(is_open).unwrap();
        }
        self.written.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
