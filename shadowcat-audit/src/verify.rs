//! Checking a hash chain across files: `shadowcat audit verify FILE...`.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;

use crate::chain::{GENESIS, key_id, record_hash, split_line, verify_checkpoint};
use crate::event::SCHEMA_VERSION;

/// The result of a successful [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Files checked.
    pub files: usize,
    /// Records checked.
    pub records: u64,
    /// Sequence number of the first record, if any. Older files may have been removed,
    /// so a chain need not start at 1.
    pub first_seq: Option<u64>,
    /// Sequence number of the last record, if any.
    pub last_seq: Option<u64>,
    /// Hash of the last record, hex. Keep it elsewhere to detect a later truncation.
    pub last_hash: Option<String>,
    /// Checkpoint signatures checked (0 when no key was given).
    pub checkpoints: u64,
    /// Records after the last verified checkpoint, which no signature covers yet (0 when
    /// no key was given).
    pub unsigned_tail: u64,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OK: {} records in {} files", self.records, self.files)?;
        if let (Some(first), Some(last)) = (self.first_seq, self.last_seq) {
            write!(f, ", seq {first}..={last}")?;
        }
        if self.checkpoints > 0 || self.unsigned_tail > 0 {
            write!(
                f,
                ", {} signed checkpoints, {} records after the last one",
                self.checkpoints, self.unsigned_tail
            )?;
        }
        Ok(())
    }
}

/// The first record that breaks the chain, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    /// The file containing the record.
    pub path: PathBuf,
    /// The line number in that file, starting at 1.
    pub line: u64,
    /// The record's sequence number, when the line could be parsed.
    pub seq: Option<u64>,
    /// The problem found.
    pub problem: Problem,
}

/// The reason a record fails verification.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The file could not be read.
    Unreadable(String),
    /// The last line has no newline: the file was cut or a write was interrupted.
    Truncated,
    /// The line is not an audit record.
    NotRecord(String),
    /// The record has a schema version this build does not know.
    UnsupportedVersion(u32),
    /// The line does not end with a well-formed `hash` member.
    MissingHash,
    /// The hash does not match the record's content: the record was edited.
    HashMismatch,
    /// The sequence number is not the next one: records were deleted, reordered or
    /// duplicated.
    SeqGap {
        /// The sequence number the chain needs here.
        expected: u64,
        /// The sequence number found.
        found: u64,
    },
    /// `prev` does not match the previous record's hash.
    BrokenLink,
    /// The record claims to start the chain (seq 1) but its `prev` is not all zeros.
    BadChainStart,
    /// A checkpoint signature does not verify with the given key.
    BadSignature,
    /// A checkpoint was signed by a key other than the given one.
    OtherSigner {
        /// The key id written in the checkpoint.
        key_id: String,
    },
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.path.display(), self.line)?;
        let seq = self
            .seq
            .map_or_else(|| "?".to_owned(), |seq| seq.to_string());
        match &self.problem {
            Problem::Unreadable(error) => write!(f, "could not read the file: {error}"),
            Problem::Truncated => write!(
                f,
                "last line is cut short: the file was truncated or a write was interrupted"
            ),
            Problem::NotRecord(error) => write!(f, "not an audit record: {error}"),
            Problem::UnsupportedVersion(version) => write!(
                f,
                "record seq {seq} has schema version {version}; this build reads version {SCHEMA_VERSION}"
            ),
            Problem::MissingHash => write!(
                f,
                "record seq {seq} does not end with a lowercase hex `hash` member: it was edited"
            ),
            Problem::HashMismatch => write!(
                f,
                "record seq {seq} was edited: its hash does not match its content"
            ),
            Problem::SeqGap { expected, found } if found > expected => write!(
                f,
                "expected seq {expected}, found {found}: records {expected} to {} are missing (deleted or moved)",
                found - 1
            ),
            Problem::SeqGap { expected, found } => write!(
                f,
                "expected seq {expected}, found {found}: records were reordered or duplicated"
            ),
            Problem::BrokenLink => write!(
                f,
                "record seq {seq} does not link to the record before it: its prev is not that record's hash, so one of them was altered"
            ),
            Problem::BadChainStart => {
                write!(f, "record seq 1 must start the chain with an all-zero prev")
            }
            Problem::BadSignature => write!(
                f,
                "checkpoint seq {seq} has an invalid signature: the chain before it was altered or the signature forged"
            ),
            Problem::OtherSigner { key_id } => write!(
                f,
                "checkpoint seq {seq} was signed by key {key_id}, not by the given key"
            ),
        }
    }
}

impl std::error::Error for VerifyFailure {}

/// The fields verification reads; the hash covers everything else.
#[derive(Deserialize)]
struct Fields<'a> {
    v: u32,
    seq: u64,
    #[serde(borrow)]
    kind: &'a str,
    #[serde(borrow)]
    prev: &'a str,
    #[serde(borrow)]
    hash: &'a str,
    #[serde(borrow, default)]
    key_id: Option<&'a str>,
    #[serde(borrow, default)]
    signature: Option<&'a str>,
}

/// Checks the hash chain through `paths`, read in the given order as one chain.
///
/// Each record must hash correctly, carry the next sequence number and link to the
/// previous record's hash, across file boundaries. With `key`, every `audit.checkpoint`
/// signature is checked too. The first record may start mid-chain, because older files
/// may have been rotated away.
///
/// Removing whole records from the end of the last file leaves a valid shorter chain.
/// Compare [`VerifyReport::last_hash`] with a copy kept elsewhere, or check that the log
/// ends with a signed checkpoint, to detect that. A file the writer is still appending
/// to may end in a partly written line, which is reported as truncated.
///
/// # Errors
///
/// Returns the first record that fails, with its file and line.
pub fn verify(
    paths: &[PathBuf],
    key: Option<&VerifyingKey>,
) -> Result<VerifyReport, VerifyFailure> {
    let mut state = ChainState {
        key,
        expected_key_id: key.map(key_id),
        last: None,
        report: VerifyReport {
            files: paths.len(),
            records: 0,
            first_seq: None,
            last_seq: None,
            last_hash: None,
            checkpoints: 0,
            unsigned_tail: 0,
        },
    };
    for path in paths {
        state.verify_file(path)?;
    }
    if let Some((_, hash)) = state.last {
        state.report.last_hash = Some(hex::encode(hash));
    }
    Ok(state.report)
}

struct ChainState<'k> {
    key: Option<&'k VerifyingKey>,
    expected_key_id: Option<String>,
    /// Sequence number and hash of the last verified record.
    last: Option<(u64, [u8; 32])>,
    report: VerifyReport,
}

impl ChainState<'_> {
    fn verify_file(&mut self, path: &Path) -> Result<(), VerifyFailure> {
        let fail = |line: u64, seq: Option<u64>, problem: Problem| VerifyFailure {
            path: path.to_owned(),
            line,
            seq,
            problem,
        };
        let file = File::open(path)
            .map_err(|error| fail(0, None, Problem::Unreadable(error.to_string())))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut buffer = Vec::with_capacity(1024);
        let mut line_number = 0;
        loop {
            buffer.clear();
            let read = reader.read_until(b'\n', &mut buffer).map_err(|error| {
                fail(
                    line_number + 1,
                    None,
                    Problem::Unreadable(error.to_string()),
                )
            })?;
            if read == 0 {
                return Ok(());
            }
            line_number += 1;
            let Some(line) = buffer.strip_suffix(b"\n") else {
                return Err(fail(line_number, None, Problem::Truncated));
            };
            self.verify_line(line)
                .map_err(|(seq, problem)| fail(line_number, seq, problem))?;
        }
    }

    fn verify_line(&mut self, line: &[u8]) -> Result<(), (Option<u64>, Problem)> {
        let fields: Fields<'_> = serde_json::from_slice(line)
            .map_err(|error| (None, Problem::NotRecord(error.to_string())))?;
        let seq = fields.seq;
        let problem = |problem| (Some(seq), problem);
        if fields.v != SCHEMA_VERSION {
            return Err(problem(Problem::UnsupportedVersion(fields.v)));
        }

        let (body, hash_hex) = split_line(line).ok_or(problem(Problem::MissingHash))?;
        if hash_hex != fields.hash.as_bytes() {
            return Err(problem(Problem::MissingHash));
        }
        let mut prev = [0u8; 32];
        hex::decode_to_slice(fields.prev, &mut prev)
            .map_err(|_| problem(Problem::NotRecord("prev is not 64 hex digits".to_owned())))?;
        let hash = record_hash(&prev, body);
        if hex::encode(hash).as_bytes() != hash_hex {
            return Err(problem(Problem::HashMismatch));
        }

        match self.last {
            None => {
                if seq == 1 && prev != GENESIS {
                    return Err(problem(Problem::BadChainStart));
                }
                self.report.first_seq = Some(seq);
            }
            Some((last_seq, last_hash)) => {
                let expected = last_seq + 1;
                if seq != expected {
                    return Err(problem(Problem::SeqGap {
                        expected,
                        found: seq,
                    }));
                }
                if prev != last_hash {
                    return Err(problem(Problem::BrokenLink));
                }
            }
        }

        if fields.kind == "audit.checkpoint"
            && let Some(key) = self.key
        {
            self.check_signature(key, &fields, &prev).map_err(problem)?;
            self.report.checkpoints += 1;
            self.report.unsigned_tail = 0;
        } else if self.key.is_some() {
            self.report.unsigned_tail += 1;
        }

        self.last = Some((seq, hash));
        self.report.records += 1;
        self.report.last_seq = Some(seq);
        Ok(())
    }

    fn check_signature(
        &self,
        key: &VerifyingKey,
        fields: &Fields<'_>,
        prev: &[u8; 32],
    ) -> Result<(), Problem> {
        let written_id = fields.key_id.unwrap_or_default();
        if Some(written_id) != self.expected_key_id.as_deref() {
            return Err(Problem::OtherSigner {
                key_id: written_id.to_owned(),
            });
        }
        let signature = fields
            .signature
            .and_then(|text| BASE64.decode(text).ok())
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or(Problem::BadSignature)?;
        if verify_checkpoint(key, prev, &signature) {
            Ok(())
        } else {
            Err(Problem::BadSignature)
        }
    }
}
