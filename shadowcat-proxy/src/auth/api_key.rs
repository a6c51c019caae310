//! API keys, configured as SHA-256 hashes and compared in constant time.

use std::sync::Arc;

use http::HeaderName;
use sha2::{Digest, Sha256};
use shadowcat_core::{AuthMethod, Principal};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::config::{ApiKeyConfig, AuthConfigError};

struct ApiKey {
    hash: [u8; 32],
    header: HeaderName,
    principal: Arc<Principal>,
}

/// The configured API keys.
pub(crate) struct ApiKeys {
    keys: Vec<ApiKey>,
    /// Distinct headers that carry keys, in configuration order.
    headers: Vec<HeaderName>,
}

impl ApiKeys {
    pub(crate) fn new(configs: &[ApiKeyConfig]) -> Result<Self, AuthConfigError> {
        let mut keys: Vec<ApiKey> = Vec::with_capacity(configs.len());
        let mut headers: Vec<HeaderName> = Vec::new();
        for (index, config) in configs.iter().enumerate() {
            let field = format!("auth.api_keys[{index}]");
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&config.sha256, &mut hash).map_err(|_| {
                AuthConfigError::invalid(
                    format!("{field}.sha256"),
                    &config.sha256,
                    "must be 64 hex digits",
                )
            })?;
            if keys.iter().any(|key| key.hash == hash) {
                return Err(AuthConfigError::invalid(
                    format!("{field}.sha256"),
                    &config.sha256,
                    "the same key hash is listed twice",
                ));
            }
            let header = HeaderName::from_bytes(config.header.as_bytes()).map_err(|_| {
                AuthConfigError::invalid(
                    format!("{field}.header"),
                    &config.header,
                    "must be a valid HTTP header name",
                )
            })?;
            if !headers.contains(&header) {
                headers.push(header.clone());
            }
            let mut scopes = config.scopes.clone();
            scopes.sort_unstable();
            scopes.dedup();
            let principal = Principal {
                subject: config.subject.clone(),
                issuer: None,
                client_id: None,
                scopes,
                method: AuthMethod::ApiKey,
            };
            keys.push(ApiKey {
                hash,
                header,
                principal: Arc::new(principal),
            });
        }
        Ok(Self { keys, headers })
    }

    /// Headers that carry API keys.
    pub(crate) fn headers(&self) -> &[HeaderName] {
        &self.headers
    }

    /// Returns true if no API key is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Finds the key sent in `header`, or in `Authorization: Bearer` when `header` is
    /// `None`, which matches every configured key.
    ///
    /// Every candidate key is compared, in constant time, whatever matches, so response
    /// timing does not reveal how close a guess was.
    pub(crate) fn find(
        &self,
        header: Option<&HeaderName>,
        presented: &[u8],
    ) -> Option<Arc<Principal>> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (position, key) in self.keys.iter().enumerate() {
            if header.is_some_and(|header| key.header != *header) {
                continue;
            }
            let hit = digest.ct_eq(&key.hash);
            index = u64::conditional_select(&index, &(position as u64), hit);
            found |= hit;
        }
        if bool::from(found) {
            let position = usize::try_from(index).ok()?;
            return Some(Arc::clone(&self.keys[position].principal));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(key: &str, subject: &str, header: &str) -> ApiKeyConfig {
        ApiKeyConfig {
            sha256: hex::encode(Sha256::digest(key.as_bytes())),
            subject: subject.to_owned(),
            scopes: vec!["b".to_owned(), "a".to_owned()],
            header: header.to_owned(),
        }
    }

    #[test]
    fn key_maps_to_its_subject() {
        let keys = ApiKeys::new(&[
            config("one", "first", "x-api-key"),
            config("two", "second", "x-api-key"),
        ])
        .unwrap();
        let header = HeaderName::from_static("x-api-key");
        let principal = keys.find(Some(&header), b"two").unwrap();
        assert_eq!(principal.subject, "second");
        assert_eq!(principal.scopes, ["a", "b"]);
        assert_eq!(principal.method, AuthMethod::ApiKey);
        assert!(keys.find(Some(&header), b"three").is_none());
    }

    #[test]
    fn key_only_matches_in_its_header() {
        let keys = ApiKeys::new(&[config("one", "first", "x-other-key")]).unwrap();
        assert!(
            keys.find(Some(&HeaderName::from_static("x-api-key")), b"one")
                .is_none()
        );
        assert!(
            keys.find(Some(&HeaderName::from_static("x-other-key")), b"one")
                .is_some()
        );
    }

    #[test]
    fn duplicate_hash_is_rejected() {
        let error = ApiKeys::new(&[
            config("one", "a", "x-api-key"),
            config("one", "b", "x-api-key"),
        ])
        .err()
        .unwrap();
        assert!(
            error.to_string().contains("auth.api_keys[1].sha256"),
            "{error}"
        );
    }
}
