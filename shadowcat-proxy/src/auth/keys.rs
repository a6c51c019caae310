//! Verification keys: static PEM files, a local JWKS file, and a remote JWKS with a
//! TTL, a refetch cooldown and single-flight fetching.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use parking_lot::RwLock;

use super::clock::Clock;
use super::config::{AuthConfigError, PublicKeyConfig, parse_algorithm};

/// Largest JWKS document accepted from the network: 1 MiB.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The algorithm a key verifies, taken from configuration and never from a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyAlgorithm {
    /// The key names one algorithm (static keys, JWKs with `alg`, EC and OKP curves).
    Exact(Algorithm),
    /// An RSA JWK without `alg`: any configured algorithm of the RSA family.
    RsaFamily,
}

/// One public key with the algorithm it is allowed to verify.
pub(crate) struct VerifyKey {
    key: DecodingKey,
    algorithm: KeyAlgorithm,
}

impl VerifyKey {
    /// Returns the key if it may verify a token whose header names `requested`.
    pub(crate) fn for_algorithm(&self, requested: Algorithm) -> Option<&DecodingKey> {
        let allowed = match self.algorithm {
            KeyAlgorithm::Exact(algorithm) => algorithm == requested,
            KeyAlgorithm::RsaFamily => requested.family() == AlgorithmFamily::Rsa,
        };
        allowed.then_some(&self.key)
    }
}

/// Keys by `kid`.
#[derive(Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    without_kid: Vec<Arc<VerifyKey>>,
}

impl KeySet {
    pub(crate) fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    /// Finds the key for a token's `kid`. A token without `kid` can use the set's only
    /// key, if it has exactly one.
    pub(crate) fn find(&self, kid: Option<&str>) -> Option<Arc<VerifyKey>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None => self.only_key(),
        }
    }

    fn only_key(&self) -> Option<Arc<VerifyKey>> {
        if self.len() != 1 {
            return None;
        }
        self.by_kid
            .values()
            .chain(&self.without_kid)
            .next()
            .cloned()
    }

    fn insert(&mut self, kid: Option<String>, key: VerifyKey) {
        match kid {
            Some(kid) => {
                self.by_kid.insert(kid, Arc::new(key));
            }
            None => self.without_kid.push(Arc::new(key)),
        }
    }

    /// Adds the other set's keys. On a `kid` clash the key already here wins.
    pub(crate) fn merge(&mut self, other: KeySet) {
        for (kid, key) in other.by_kid {
            self.by_kid.entry(kid).or_insert(key);
        }
        self.without_kid.extend(other.without_kid);
    }
}

/// Loads the static `public_keys` PEM files.
pub(crate) fn load_public_keys(configs: &[PublicKeyConfig]) -> Result<KeySet, AuthConfigError> {
    let mut set = KeySet::default();
    for (index, config) in configs.iter().enumerate() {
        let field = format!("auth.jwt.public_keys[{index}]");
        let algorithm = parse_algorithm(&format!("{field}.algorithm"), &config.algorithm)?;
        let pem = read_file(&format!("{field}.pem_file"), &config.pem_file)?;
        let key = match algorithm.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(&pem),
            AlgorithmFamily::Hmac => unreachable!("parse_algorithm rejects HMAC"),
        }
        .map_err(|error| AuthConfigError::File {
            field: format!("{field}.pem_file"),
            path: config.pem_file.clone(),
            reason: format!("not a {algorithm:?} public key in PEM form: {error}"),
        })?;
        set.insert(
            Some(config.kid.clone()),
            VerifyKey {
                key,
                algorithm: KeyAlgorithm::Exact(algorithm),
            },
        );
    }
    Ok(set)
}

/// Loads a local JWKS file.
pub(crate) fn load_jwks_file(path: &Path) -> Result<KeySet, AuthConfigError> {
    let bytes = read_file("auth.jwt.jwks_file", path)?;
    parse_jwks(&bytes).map_err(|reason| AuthConfigError::File {
        field: "auth.jwt.jwks_file".to_owned(),
        path: path.to_owned(),
        reason,
    })
}

fn read_file(field: &str, path: &Path) -> Result<Vec<u8>, AuthConfigError> {
    std::fs::read(path).map_err(|error| AuthConfigError::File {
        field: field.to_owned(),
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

/// Parses a JWKS document, skipping keys this proxy cannot or must not use.
///
/// Symmetric (`oct`) keys, encryption keys (`use = "enc"`) and unsupported algorithms
/// are skipped one by one, so one odd key does not hide the others.
pub(crate) fn parse_jwks(bytes: &[u8]) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }

    let raw: RawSet =
        serde_json::from_slice(bytes).map_err(|error| format!("invalid JWKS JSON: {error}"))?;
    let mut set = KeySet::default();
    for value in raw.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if let Some(key) = verify_key_from_jwk(&jwk) {
            set.insert(jwk.common.key_id.clone(), key);
        }
    }
    Ok(set)
}

fn verify_key_from_jwk(jwk: &Jwk) -> Option<VerifyKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let named = match jwk.common.key_algorithm {
        Some(named) => Some(Algorithm::try_from(named).ok()?),
        None => None,
    };
    let algorithm = match (&jwk.algorithm, named) {
        (AlgorithmParameters::RSA(_), Some(algorithm)) => (algorithm.family()
            == AlgorithmFamily::Rsa)
            .then_some(KeyAlgorithm::Exact(algorithm))?,
        (AlgorithmParameters::RSA(_), None) => KeyAlgorithm::RsaFamily,
        (AlgorithmParameters::EllipticCurve(params), named) => {
            let by_curve = match params.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return None,
            };
            if named.is_some_and(|named| named != by_curve) {
                return None;
            }
            KeyAlgorithm::Exact(by_curve)
        }
        (AlgorithmParameters::OctetKeyPair(params), named) => {
            if params.curve != EllipticCurve::Ed25519
                || named.is_some_and(|named| named != Algorithm::EdDSA)
            {
                return None;
            }
            KeyAlgorithm::Exact(Algorithm::EdDSA)
        }
        // Symmetric (`oct`) keys and unknown key types are never used.
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey { key, algorithm })
}

/// Contents of the remote JWKS cache.
struct RemoteState {
    keys: Arc<KeySet>,
    /// When the keys were last fetched successfully.
    fetched_at: Option<Duration>,
    /// When a fetch was last attempted, successful or not.
    attempted_at: Option<Duration>,
    /// Bumped after every attempt, so waiters can tell that a fetch happened.
    generation: u64,
}

/// A JWKS fetched over HTTP and cached.
///
/// Keys are fetched again once `ttl` has passed, or when a token names an unknown
/// `kid`. Fetch attempts are at least `cooldown` apart, and concurrent callers that need
/// a fetch share one, so a flood of made-up key ids costs the identity provider at most
/// one request per cooldown window. A failed fetch keeps the previous keys.
pub(crate) struct RemoteJwks {
    url: reqwest::Url,
    client: reqwest::Client,
    ttl: Duration,
    cooldown: Duration,
    clock: Arc<dyn Clock>,
    state: RwLock<RemoteState>,
    fetch_lock: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

impl RemoteJwks {
    pub(crate) fn new(
        url: reqwest::Url,
        client: reqwest::Client,
        ttl: Duration,
        cooldown: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            url,
            client,
            ttl,
            cooldown,
            clock,
            state: RwLock::new(RemoteState {
                keys: Arc::new(KeySet::default()),
                fetched_at: None,
                attempted_at: None,
                generation: 0,
            }),
            fetch_lock: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// Returns how many fetches were sent, successful or not.
    pub(crate) fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Finds the key for `kid`, fetching the JWKS when the cache is stale or does not
    /// know `kid`, unless the cooldown forbids a fetch now.
    pub(crate) async fn find(&self, kid: Option<&str>) -> Option<Arc<VerifyKey>> {
        let now = self.clock.now();
        let (keys, generation, fresh, may_fetch) = {
            let state = self.state.read();
            let fresh = state
                .fetched_at
                .is_some_and(|at| now < at.saturating_add(self.ttl));
            let may_fetch = state
                .attempted_at
                .is_none_or(|at| now >= at.saturating_add(self.cooldown));
            (Arc::clone(&state.keys), state.generation, fresh, may_fetch)
        };

        let found = keys.find(kid);
        if fresh && found.is_some() {
            return found;
        }
        // A token without `kid` never triggers a fetch on its own.
        if !may_fetch || (fresh && kid.is_none()) {
            return found;
        }

        // A stale key that is still published keeps working while one caller refreshes,
        // so only a miss waits for the fetch in flight.
        let guard = match found {
            Some(stale) => match self.fetch_lock.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Some(stale),
            },
            None => self.fetch_lock.lock().await,
        };
        self.refresh_locked(generation, guard).await;
        let keys = Arc::clone(&self.state.read().keys);
        keys.find(kid)
    }

    /// Fetches the JWKS unless another caller already did since `seen_generation`.
    pub(crate) async fn refresh(&self, seen_generation: u64) {
        let guard = self.fetch_lock.lock().await;
        self.refresh_locked(seen_generation, guard).await;
    }

    async fn refresh_locked(
        &self,
        seen_generation: u64,
        _single_flight: tokio::sync::MutexGuard<'_, ()>,
    ) {
        if self.state.read().generation != seen_generation {
            return;
        }

        let started = self.clock.now();
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch().await;

        let mut state = self.state.write();
        state.generation += 1;
        state.attempted_at = Some(started);
        match result {
            Ok(keys) => {
                tracing::debug!(url = %self.url, keys = keys.len(), "fetched JWKS");
                state.keys = Arc::new(keys);
                state.fetched_at = Some(started);
            }
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "could not fetch JWKS, keeping the previous keys");
            }
        }
    }

    /// Returns the current generation, for a first fetch at start-up.
    pub(crate) fn generation(&self) -> u64 {
        self.state.read().generation
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let response = self
            .client
            .get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
        {
            return Err(format!("document larger than {MAX_JWKS_BYTES} bytes"));
        }
        let body = response.bytes().await.map_err(|error| error.to_string())?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!("document larger than {MAX_JWKS_BYTES} bytes"));
        }
        parse_jwks(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_skips_symmetric_and_encryption_keys() {
        let document = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "kid": "sig", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird"}
        ]});
        let set = parse_jwks(document.to_string().as_bytes()).unwrap();
        assert!(set.find(Some("secret")).is_none());
        assert!(set.find(Some("enc")).is_none());
        let key = set.find(Some("sig")).unwrap();
        assert!(key.for_algorithm(Algorithm::ES256).is_some());
        assert!(key.for_algorithm(Algorithm::RS256).is_none());
        assert!(key.for_algorithm(Algorithm::HS256).is_none());
    }

    #[test]
    fn kid_less_token_uses_only_key() {
        let mut set = KeySet::default();
        assert!(set.find(None).is_none());
        let document = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]});
        set.merge(parse_jwks(document.to_string().as_bytes()).unwrap());
        assert!(set.find(None).is_some());
        assert!(set.find(Some("other")).is_none());
    }
}
