//! The hash chain: how a record's hash is computed and checked.
//!
//! `hash = SHA-256(prev || canonical)`, where `prev` is the previous record's hash as 32
//! raw bytes (32 zero bytes before the first record) and `canonical` is the record's line
//! with the final `,"hash":"…"` member and the newline removed. The writer always puts
//! `hash` last, so `canonical` is the line's first `len - 75` bytes followed by `}`.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::encode::Encoder;
use crate::event::AuditEvent;

/// The `prev` value of the first record of a chain.
pub(crate) const GENESIS: [u8; 32] = [0; 32];

/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// Domain separation prefix of the message a checkpoint signs.
const CHECKPOINT_DOMAIN: &[u8] = b"shadowcat-audit checkpoint v1\n";

/// Hashes one record: `body` is the canonical form without its closing brace.
pub(crate) fn record_hash(prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(body);
    hasher.update(b"}");
    hasher.finalize().into()
}

/// Splits a line (without newline) into its canonical body without the closing brace and
/// its hash hex, or `None` when the line does not end with a well-formed `hash` member.
pub(crate) fn split_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let body_len = line.len().checked_sub(HASH_SUFFIX_LEN)?;
    let (body, suffix) = line.split_at(body_len);
    let hash = suffix.strip_prefix(b",\"hash\":\"")?.strip_suffix(b"\"}")?;
    let lowercase_hex = hash
        .iter()
        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte));
    (hash.len() == 64 && lowercase_hex).then_some((body, hash))
}

/// Builds the message a checkpoint signs: a fixed domain string followed by the 32-byte
/// hash of the record before the checkpoint.
pub(crate) fn checkpoint_message(prev: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 32);
    message.extend_from_slice(CHECKPOINT_DOMAIN);
    message.extend_from_slice(prev);
    message
}

/// Returns the key id written in checkpoints: the first 8 bytes of SHA-256 over the raw
/// 32-byte public key, hex.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

/// Signs a checkpoint over `prev`.
pub(crate) fn sign_checkpoint(key: &SigningKey, prev: &[u8; 32]) -> Signature {
    key.sign(&checkpoint_message(prev))
}

/// Checks a checkpoint signature over `prev`.
pub(crate) fn verify_checkpoint(
    key: &VerifyingKey,
    prev: &[u8; 32],
    signature: &Signature,
) -> bool {
    key.verify(&checkpoint_message(prev), signature).is_ok()
}

/// The tip of the chain: the last sequence number written and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainTip {
    /// The last written sequence number, 0 before the first record.
    pub(crate) seq: u64,
    /// The last record's hash ([`GENESIS`] before the first record).
    pub(crate) hash: [u8; 32],
}

impl ChainTip {
    pub(crate) const fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS,
        }
    }
}

/// Appends records to a chain, one line each.
#[derive(Debug)]
pub(crate) struct Chain {
    tip: ChainTip,
    tip_hex: [u8; 64],
    encoder: Encoder,
}

impl Chain {
    pub(crate) fn new(tip: ChainTip, encoder: Encoder) -> Self {
        let mut tip_hex = [0u8; 64];
        hex::encode_to_slice(tip.hash, &mut tip_hex).expect("64 hex digits fit 32 bytes");
        Self {
            tip,
            tip_hex,
            encoder,
        }
    }

    /// Appends `event` as the next record, newline included, and returns its sequence
    /// number.
    pub(crate) fn append(&mut self, event: &mut AuditEvent, out: &mut Vec<u8>) -> u64 {
        let seq = self.tip.seq + 1;
        let start = out.len();
        self.encoder.write_body(event, seq, &self.tip_hex, out);
        let hash = record_hash(&self.tip.hash, &out[start..]);

        self.tip = ChainTip { seq, hash };
        hex::encode_to_slice(hash, &mut self.tip_hex).expect("64 hex digits fit 32 bytes");
        out.extend_from_slice(b",\"hash\":\"");
        out.extend_from_slice(&self.tip_hex);
        out.extend_from_slice(b"\"}\n");
        seq
    }

    pub(crate) fn tip(&self) -> ChainTip {
        self.tip
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::redact::Redactor;

    #[test]
    fn appended_line_verifies_against_its_hash() {
        let mut chain = Chain::new(ChainTip::genesis(), Encoder::new(Redactor::default()));
        let mut out = Vec::new();
        let mut event = AuditEvent::new(EventKind::AuditDropped { count: 3 });
        assert_eq!(chain.append(&mut event, &mut out), 1);

        let line = out.strip_suffix(b"\n").unwrap();
        let (body, hash_hex) = split_line(line).unwrap();
        assert_eq!(
            hex::encode(record_hash(&GENESIS, body)).as_bytes(),
            hash_hex
        );
        assert_eq!(chain.tip().seq, 1);
    }

    #[test]
    fn second_record_links_to_first() {
        let mut chain = Chain::new(ChainTip::genesis(), Encoder::new(Redactor::default()));
        let mut out = Vec::new();
        chain.append(
            &mut AuditEvent::new(EventKind::AuditDropped { count: 1 }),
            &mut out,
        );
        let first_hash = hex::encode(chain.tip().hash);
        chain.append(
            &mut AuditEvent::new(EventKind::AuditDropped { count: 2 }),
            &mut out,
        );

        let second = std::str::from_utf8(&out).unwrap().lines().nth(1).unwrap();
        let record: serde_json::Value = serde_json::from_str(second).unwrap();
        assert_eq!(record["prev"], first_hash.as_str());
        assert_eq!(record["seq"], 2);
    }

    #[test]
    fn split_line_rejects_uppercase_hash() {
        let line = format!("{{\"a\":1,\"hash\":\"{}\"}}", "A".repeat(64));
        assert!(split_line(line.as_bytes()).is_none());
    }

    #[test]
    fn checkpoint_signature_round_trip() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let prev = [9; 32];
        let signature = sign_checkpoint(&key, &prev);
        assert!(verify_checkpoint(&key.verifying_key(), &prev, &signature));
        assert!(!verify_checkpoint(
            &key.verifying_key(),
            &[8; 32],
            &signature
        ));
    }
}
