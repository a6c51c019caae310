//! Rolling audit files: naming, rotation by time or size, and resuming the chain.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde::Deserialize;

use crate::chain::{ChainTip, split_line};
use crate::clock::Clock;
use crate::config::Rotation;
use crate::error::AuditError;

/// Digits of the first sequence number in a file name, enough for any `u64`, so names
/// sort in chain order.
const SEQ_DIGITS: usize = 20;

/// The file name extension of audit files.
const EXTENSION: &str = ".jsonl";

/// Lists the audit files of `prefix` in `dir`, oldest first (chain order).
///
/// Files are named `<prefix>-<first seq, 20 digits>-<UTC start time>.jsonl`, so sorting
/// by name sorts by position in the chain. Other files in the directory are ignored.
///
/// # Errors
///
/// Returns [`AuditError::Io`] when the directory cannot be read.
pub fn log_files(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, AuditError> {
    let entries = fs::read_dir(dir).map_err(|source| AuditError::Io {
        action: "read directory",
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let seq = first_seq_of(name.to_str()?, prefix)?;
            Some((seq, entry.path()))
        })
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

/// Returns the first sequence number encoded in an audit file name of `prefix`.
fn first_seq_of(name: &str, prefix: &str) -> Option<u64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let rest = rest.strip_suffix(EXTENSION)?;
    let (digits, _start_time) = rest.split_at_checked(SEQ_DIGITS)?;
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The chain position found in an existing directory.
#[derive(Debug)]
pub(crate) struct Resumed {
    pub(crate) tip: ChainTip,
    /// A file whose last line was cut short (the previous run crashed mid-write).
    pub(crate) truncated: Option<PathBuf>,
}

/// Finds the last complete record in the newest audit file and returns its sequence
/// number and hash, or the genesis tip when there is none.
///
/// # Errors
///
/// Returns [`AuditError::Io`] when a file cannot be read, and [`AuditError::Resume`] when
/// the last complete line is not an audit record, because continuing from it would break
/// the chain.
pub(crate) fn resume(dir: &Path, prefix: &str) -> Result<Resumed, AuditError> {
    let mut truncated = None;
    for path in log_files(dir, prefix)?.into_iter().rev() {
        let io_error = |source| AuditError::Io {
            action: "read",
            path: path.clone(),
            source,
        };
        let tail = last_line(&path).map_err(io_error)?;
        if tail.truncated && truncated.is_none() {
            truncated = Some(path.clone());
        }
        let Some(line) = tail.line else {
            continue;
        };
        let tip = parse_tip(&line).ok_or_else(|| AuditError::Resume {
            path: path.clone(),
            reason: "its last complete line is not an audit record",
        })?;
        return Ok(Resumed { tip, truncated });
    }
    Ok(Resumed {
        tip: ChainTip::genesis(),
        truncated,
    })
}

fn parse_tip(line: &[u8]) -> Option<ChainTip> {
    #[derive(Deserialize)]
    struct Tip<'a> {
        seq: u64,
        #[serde(borrow)]
        hash: &'a str,
    }
    split_line(line)?;
    let tip: Tip<'_> = serde_json::from_slice(line).ok()?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(tip.hash, &mut hash).ok()?;
    Some(ChainTip { seq: tip.seq, hash })
}

struct Tail {
    /// The last newline-terminated line, without its newline.
    line: Option<Vec<u8>>,
    /// Whether bytes follow the last newline.
    truncated: bool,
}

/// Reads the end of a file, growing the read window until it contains one whole line.
fn last_line(path: &Path) -> io::Result<Tail> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut data = Vec::with_capacity((len - start) as usize);
        Read::by_ref(&mut file)
            .take(len - start)
            .read_to_end(&mut data)?;

        let Some(last_newline) = data.iter().rposition(|byte| *byte == b'\n') else {
            if start == 0 {
                return Ok(Tail {
                    line: None,
                    truncated: !data.is_empty(),
                });
            }
            window *= 2;
            continue;
        };
        let truncated = last_newline + 1 < data.len();
        let complete = &data[..last_newline];
        match complete.iter().rposition(|byte| *byte == b'\n') {
            Some(previous) => {
                return Ok(Tail {
                    line: Some(complete[previous + 1..].to_vec()),
                    truncated,
                });
            }
            None if start == 0 => {
                return Ok(Tail {
                    line: Some(complete.to_vec()),
                    truncated,
                });
            }
            None => window *= 2,
        }
    }
}

/// The file output: one open file at a time, replaced on rotation.
#[derive(Debug)]
pub(crate) struct RollingFiles {
    dir: PathBuf,
    prefix: String,
    rotation: Rotation,
    max_bytes: u64,
    sync_dir: bool,
    clock: Arc<dyn Clock>,
    current: Option<OpenFile>,
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    path: PathBuf,
    unsynced: bool,
}

impl RollingFiles {
    pub(crate) fn new(
        dir: PathBuf,
        prefix: String,
        rotation: Rotation,
        max_bytes: u64,
        sync_dir: bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            dir,
            prefix,
            rotation,
            max_bytes,
            sync_dir,
            clock,
            current: None,
        }
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Returns the rotation period the clock is in now: the UTC hour or day, or 0 for
    /// size-only rotation.
    pub(crate) fn current_period(&self) -> u64 {
        let seconds = self
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        match self.rotation {
            Rotation::Hourly => seconds / 3600,
            Rotation::Daily => seconds / 86_400,
            Rotation::Size => 0,
        }
    }

    /// Syncs and closes the current file, then creates the file whose first record is
    /// `first_seq`.
    pub(crate) fn open_next(&mut self, first_seq: u64) -> Result<(), AuditError> {
        if let Some(current) = &mut self.current {
            sync_file(current)?;
        }
        self.current = None;

        let start_time = time::OffsetDateTime::from(self.clock.now());
        let name = format!(
            "{}-{first_seq:0width$}-{:04}{:02}{:02}T{:02}{:02}{:02}Z{EXTENSION}",
            self.prefix,
            start_time.year(),
            u8::from(start_time.month()),
            start_time.day(),
            start_time.hour(),
            start_time.minute(),
            start_time.second(),
            width = SEQ_DIGITS,
        );
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|source| AuditError::Io {
                action: "create",
                path: path.clone(),
                source,
            })?;
        if self.sync_dir {
            File::open(&self.dir)
                .and_then(|dir| dir.sync_all())
                .map_err(|source| AuditError::Io {
                    action: "sync directory",
                    path: self.dir.clone(),
                    source,
                })?;
        }
        tracing::debug!(path = %path.display(), first_seq, "opened audit file");
        self.current = Some(OpenFile {
            file,
            path,
            unsynced: false,
        });
        Ok(())
    }

    /// Writes some of `bytes` to the current file with one `write` call and returns how
    /// many were written.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<usize, AuditError> {
        let current = self
            .current
            .as_mut()
            .expect("the writer opens a file before writing");
        loop {
            match current.file.write(bytes) {
                Ok(0) if !bytes.is_empty() => {
                    return Err(AuditError::Io {
                        action: "write",
                        path: current.path.clone(),
                        source: io::ErrorKind::WriteZero.into(),
                    });
                }
                Ok(written) => {
                    current.unsynced = true;
                    return Ok(written);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(AuditError::Io {
                        action: "write",
                        path: current.path.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Returns true if written data has not been synced yet.
    pub(crate) fn unsynced(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|current| current.unsynced)
    }

    /// Calls `fdatasync` on the current file.
    pub(crate) fn sync(&mut self) -> Result<(), AuditError> {
        match &mut self.current {
            Some(current) => sync_file(current),
            None => Ok(()),
        }
    }
}

fn sync_file(current: &mut OpenFile) -> Result<(), AuditError> {
    if !current.unsynced {
        return Ok(());
    }
    current.file.sync_data().map_err(|source| AuditError::Io {
        action: "sync",
        path: current.path.clone(),
        source,
    })?;
    current.unsynced = false;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_parse_back() {
        let name = format!("audit-{:020}-20261204T200450Z.jsonl", 42);
        assert_eq!(first_seq_of(&name, "audit"), Some(42));
        assert_eq!(first_seq_of(&name, "other"), None);
        assert_eq!(first_seq_of("audit-12-x.jsonl", "audit"), None);
        assert_eq!(first_seq_of("audit-notes.txt", "audit"), None);
    }

    #[test]
    fn last_line_handles_long_lines_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let long = "x".repeat(200_000);
        fs::write(&path, format!("first\n{long}\npartial")).unwrap();
        let tail = last_line(&path).unwrap();
        assert_eq!(tail.line.as_deref(), Some(long.as_bytes()));
        assert!(tail.truncated);

        fs::write(&path, "only\n").unwrap();
        let tail = last_line(&path).unwrap();
        assert_eq!(tail.line.as_deref(), Some(&b"only"[..]));
        assert!(!tail.truncated);

        fs::write(&path, "").unwrap();
        let tail = last_line(&path).unwrap();
        assert!(tail.line.is_none());
        assert!(!tail.truncated);
    }
}
