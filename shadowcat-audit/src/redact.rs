//! Hashing of identifying fields before they reach the log.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::event::EventKind;

/// A record field that the writer can replace by its hash (`audit.hashed_fields`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashedField {
    /// The authenticated subject.
    Subject,
    /// The client address.
    ClientIp,
    /// The proxy session id.
    SessionId,
    /// The tool, prompt or resource name of `request.completed`, `authz.allow` and
    /// `authz.deny`.
    Target,
    /// The client's `User-Agent` of `session.created` and `auth.failure`.
    UserAgent,
}

impl HashedField {
    const fn bit(self) -> u8 {
        match self {
            Self::Subject => 1,
            Self::ClientIp => 1 << 1,
            Self::SessionId => 1 << 2,
            Self::Target => 1 << 3,
            Self::UserAgent => 1 << 4,
        }
    }
}

/// Hashes values that must be correlatable in the log but not readable.
///
/// [`Redactor::hash_field`] returns `h:` followed by the first 16 bytes (32 hex digits) of
/// `SHA-256(salt || value)`. With no salt configured the hash is plain SHA-256, which
/// anyone can reverse for guessable values such as IP addresses, so set
/// `audit.hash_salt_file` in production. The salt never appears in `Debug` output.
#[derive(Clone, Default)]
pub struct Redactor {
    salt: Option<Arc<[u8]>>,
    fields: u8,
}

impl Redactor {
    /// Builds a redactor with an optional secret salt that hashes `fields` in every record.
    pub fn new(salt: Option<Vec<u8>>, fields: &[HashedField]) -> Self {
        Self {
            salt: salt.map(Arc::from),
            fields: fields.iter().fold(0, |bits, field| bits | field.bit()),
        }
    }

    /// Returns `h:` and 32 hex digits identifying `value` under this deployment's salt.
    pub fn hash_field(&self, value: &str) -> String {
        let mut hasher = Sha256::new();
        if let Some(salt) = &self.salt {
            hasher.update(salt);
        }
        hasher.update(value.as_bytes());
        let digest = hasher.finalize();
        let mut text = String::with_capacity(34);
        text.push_str("h:");
        text.push_str(&hex::encode(&digest[..16]));
        text
    }

    /// Returns true if the writer replaces `field` by its hash.
    pub fn hashes(&self, field: HashedField) -> bool {
        self.fields & field.bit() != 0
    }

    /// Replaces the hashed payload fields of `kind` in place.
    pub(crate) fn redact_kind(&self, kind: &mut EventKind) {
        if self.fields == 0 {
            return;
        }
        match kind {
            EventKind::RequestCompleted { target, .. }
            | EventKind::AuthzAllow { target, .. }
            | EventKind::AuthzDeny { target, .. } => {
                if self.hashes(HashedField::Target)
                    && let Some(value) = target
                {
                    *value = self.hash_field(value).into();
                }
            }
            EventKind::SessionCreated { user_agent, .. }
            | EventKind::AuthFailure { user_agent, .. } => {
                if self.hashes(HashedField::UserAgent)
                    && let Some(value) = user_agent
                {
                    *value = self.hash_field(value).into();
                }
            }
            _ => {}
        }
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("salted", &self.salt.is_some())
            .field("fields", &self.fields)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsalted_hash_is_sha256_prefix() {
        let redactor = Redactor::default();
        // SHA-256("abc") starts with ba7816bf8f01cfea414140de5dae2223.
        assert_eq!(
            redactor.hash_field("abc"),
            "h:ba7816bf8f01cfea414140de5dae2223"
        );
    }

    #[test]
    fn salt_changes_the_hash() {
        let plain = Redactor::default().hash_field("203.0.113.5");
        let salted = Redactor::new(Some(b"pepper".to_vec()), &[]).hash_field("203.0.113.5");
        assert_ne!(plain, salted);
        assert_eq!(salted.len(), 34);
    }

    #[test]
    fn debug_hides_salt() {
        let redactor = Redactor::new(Some(b"do-not-print".to_vec()), &[HashedField::Subject]);
        assert!(!format!("{redactor:?}").contains("do-not-print"));
    }

    #[test]
    fn redact_kind_hashes_only_configured_fields() {
        let redactor = Redactor::new(None, &[HashedField::Target]);
        let mut kind = EventKind::AuthzDeny {
            rule: "deny-shell".into(),
            method: "tools/call".into(),
            target: Some("run_shell".into()),
        };
        redactor.redact_kind(&mut kind);
        let EventKind::AuthzDeny { rule, target, .. } = kind else {
            unreachable!()
        };
        assert_eq!(rule, "deny-shell");
        assert_eq!(
            target.as_deref(),
            Some(redactor.hash_field("run_shell").as_str())
        );
    }
}
