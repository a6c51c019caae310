//! Tamper evidence: every kind of edit is caught at the first bad record.

mod common;

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine;
use common::{config_in, read_records, write_log};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use shadowcat_audit::{AuditConfig, Problem, Rotation, load_verifying_key, verify};

/// Writes 20 records rotated over several small files.
fn rotated_log(dir: &Path) -> Vec<PathBuf> {
    let config = AuditConfig {
        rotation: Rotation::Size,
        max_file_bytes: NonZeroU64::new(2_000).unwrap(),
        ..config_in(dir)
    };
    let files = write_log(config, 20);
    assert!(
        files.len() >= 3,
        "expected rotation, got {} files",
        files.len()
    );
    files
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

#[test]
fn intact_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let files = rotated_log(dir.path());
    let report = verify(&files, None).unwrap();
    assert_eq!(report.records, 20);
    assert_eq!(report.first_seq, Some(1));
    assert_eq!(report.last_seq, Some(20));
    let last = read_records(&files).pop().unwrap();
    assert_eq!(report.last_hash.as_deref(), last["hash"].as_str());
    assert_eq!(
        report.to_string(),
        format!("OK: 20 records in {} files, seq 1..=20", files.len())
    );
}

#[test]
fn edited_byte_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let files = rotated_log(dir.path());
    let mut lines = lines_of(&files[1]);
    lines[1] = lines[1].replace("\"status\":200", "\"status\":201");
    write_lines(&files[1], &lines);

    let failure = verify(&files, None).unwrap_err();
    assert_eq!(failure.path, files[1]);
    assert_eq!(failure.line, 2);
    assert_eq!(failure.problem, Problem::HashMismatch);
    let message = failure.to_string();
    assert!(
        message.starts_with(&format!("{}:2: record seq ", files[1].display())),
        "{message}"
    );
    assert!(message.contains("was edited"), "{message}");
}

#[test]
fn deleted_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let files = rotated_log(dir.path());
    let mut lines = lines_of(&files[1]);
    let expected: u64 = serde_json::from_str::<serde_json::Value>(&lines[1]).unwrap()["seq"]
        .as_u64()
        .unwrap();
    lines.remove(1);
    write_lines(&files[1], &lines);

    let failure = verify(&files, None).unwrap_err();
    assert_eq!(failure.path, files[1]);
    assert_eq!(failure.line, 2);
    assert_eq!(
        failure.problem,
        Problem::SeqGap {
            expected,
            found: expected + 1
        }
    );
    assert!(failure.to_string().contains("missing"), "{failure}");
}

#[test]
fn swapped_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let files = rotated_log(dir.path());
    let mut lines = lines_of(&files[0]);
    lines.swap(2, 3);
    write_lines(&files[0], &lines);

    let failure = verify(&files, None).unwrap_err();
    assert_eq!(failure.path, files[0]);
    assert_eq!(failure.line, 3);
    assert_eq!(
        failure.problem,
        Problem::SeqGap {
            expected: 3,
            found: 4
        }
    );
}

#[test]
fn truncated_tail_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let files = rotated_log(dir.path());
    let last = files.last().unwrap();
    let bytes = std::fs::read(last).unwrap();
    std::fs::write(last, &bytes[..bytes.len() - 10]).unwrap();
    let line_count = lines_of(last).len() as u64;

    let failure = verify(&files, None).unwrap_err();
    assert_eq!(&failure.path, last);
    assert_eq!(failure.line, line_count);
    assert_eq!(failure.problem, Problem::Truncated);
}

#[test]
fn missing_middle_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = rotated_log(dir.path());
    files.remove(1);

    let failure = verify(&files, None).unwrap_err();
    assert_eq!(failure.path, files[1]);
    assert_eq!(failure.line, 1);
    assert!(
        matches!(failure.problem, Problem::SeqGap { .. }),
        "{failure}"
    );
}

#[test]
fn rehashed_edit_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_log(config_in(dir.path()), 5);
    let mut lines = lines_of(&files[0]);
    lines[2] = rehash(&lines[2].replace("\"status\":200", "\"status\":500"));
    write_lines(&files[0], &lines);

    let failure = verify(&files, None).unwrap_err();
    assert_eq!(failure.line, 4);
    assert_eq!(failure.problem, Problem::BrokenLink);
}

/// Recomputes a line's hash from its own `prev`, as a forger without the next record
/// would.
fn rehash(line: &str) -> String {
    let body = &line[..line.len() - 75];
    let record: serde_json::Value = serde_json::from_str(line).unwrap();
    let prev = hex::decode(record["prev"].as_str().unwrap()).unwrap();
    let mut hasher = Sha256::new();
    hasher.update(&prev);
    hasher.update(body.as_bytes());
    hasher.update(b"}");
    format!("{body},\"hash\":\"{}\"}}", hex::encode(hasher.finalize()))
}

/// Rewrites a whole chain after an edit, as a forger with write access but no key would.
fn rehash_chain(lines: &mut [String]) {
    let mut prev = String::new();
    for line in lines.iter_mut() {
        if !prev.is_empty() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let old_prev = record["prev"].as_str().unwrap().to_owned();
            *line = line.replace(&old_prev, &prev);
        }
        *line = rehash(line);
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        prev = record["hash"].as_str().unwrap().to_owned();
    }
}

fn write_key(dir: &Path, seed: u8) -> (PathBuf, PathBuf) {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let private = dir.join(format!("signing-{seed}.pem"));
    let public = dir.join(format!("public-{seed}.pem"));
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(
        &public,
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    (private, public)
}

fn signed_log(dir: &Path, keys: &Path, count: u64) -> Vec<PathBuf> {
    let (private, _) = write_key(keys, 1);
    let config = AuditConfig {
        signing_key: Some(private),
        checkpoint_every: NonZeroU64::new(5).unwrap(),
        ..config_in(dir)
    };
    write_log(config, count)
}

#[test]
fn checkpoints_verify_with_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let files = signed_log(dir.path(), keys.path(), 12);
    let (_, public) = write_key(keys.path(), 1);
    let key = load_verifying_key(&public).unwrap();

    let records = read_records(&files);
    let checkpoints: Vec<u64> = records
        .iter()
        .filter(|record| record["kind"] == "audit.checkpoint")
        .map(|record| record["seq"].as_u64().unwrap())
        .collect();
    // After records 1-5, 7-11 and, at shutdown, the last two.
    assert_eq!(checkpoints, [6, 12, 15]);

    let report = verify(&files, Some(&key)).unwrap();
    assert_eq!(report.records, 15);
    assert_eq!(report.checkpoints, 3);
    assert_eq!(report.unsigned_tail, 0);

    let signature = records[5]["signature"].as_str().unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(signature)
            .unwrap()
            .len(),
        64
    );
}

#[test]
fn private_key_file_also_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let files = signed_log(dir.path(), keys.path(), 3);
    let (private, _) = write_key(keys.path(), 1);
    let key = load_verifying_key(&private).unwrap();
    assert_eq!(verify(&files, Some(&key)).unwrap().checkpoints, 1);
}

#[test]
fn other_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let files = signed_log(dir.path(), keys.path(), 7);
    let (_, other) = write_key(keys.path(), 2);
    let key = load_verifying_key(&other).unwrap();

    let failure = verify(&files, Some(&key)).unwrap_err();
    assert_eq!(failure.line, 6);
    assert!(
        matches!(failure.problem, Problem::OtherSigner { .. }),
        "{failure}"
    );
}

#[test]
fn rewritten_chain_fails_the_signature() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let files = signed_log(dir.path(), keys.path(), 8);
    let (_, public) = write_key(keys.path(), 1);
    let key = load_verifying_key(&public).unwrap();

    let mut lines = lines_of(&files[0]);
    lines[1] = lines[1].replace("\"status\":200", "\"status\":403");
    rehash_chain(&mut lines);
    write_lines(&files[0], &lines);

    // Without the key the forged chain is consistent; the signature gives it away.
    assert_eq!(verify(&files, None).unwrap().records, 10);
    let failure = verify(&files, Some(&key)).unwrap_err();
    assert_eq!(failure.line, 6);
    assert_eq!(failure.problem, Problem::BadSignature);
}

#[test]
fn bad_key_file_is_reported() {
    let keys = tempfile::tempdir().unwrap();
    let path = keys.path().join("junk.pem");
    std::fs::write(&path, "not a key").unwrap();
    let error = load_verifying_key(&path).unwrap_err().to_string();
    assert!(error.contains("junk.pem"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let config = AuditConfig {
        signing_key: Some(path),
        ..config_in(dir.path())
    };
    let error = shadowcat_audit::AuditWriter::new(config)
        .spawn()
        .unwrap_err();
    assert!(error.to_string().contains("signing key"), "{error}");
}

/// Returns a ten-record log, written once for all property cases.
fn small_log() -> &'static [u8] {
    static LOG: OnceLock<Vec<u8>> = OnceLock::new();
    LOG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig {
            queue_capacity: NonZeroUsize::new(64).unwrap(),
            ..config_in(dir.path())
        };
        let files = write_log(config, 10);
        std::fs::read(&files[0]).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_changed_byte_fails_at_its_line(position in any::<prop::sample::Index>(), replacement in any::<u8>()) {
        let original = small_log();
        let index = position.index(original.len());
        prop_assume!(original[index] != replacement);

        let mut edited = original.to_vec();
        edited[index] = replacement;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edited.jsonl");
        std::fs::write(&path, &edited).unwrap();

        let failure = verify(&[path], None);
        prop_assert!(failure.is_err(), "edit at byte {} went unnoticed", index);
        let expected_line = original[..index].iter().filter(|byte| **byte == b'\n').count() as u64 + 1;
        prop_assert_eq!(failure.unwrap_err().line, expected_line);
    }
}
