//! JWT bearer token validation.
//!
//! Order of checks: size and shape, header `alg` against the configured algorithms, key
//! lookup by `kid`, the key's own algorithm, signature, then claims. Claims are read only
//! after the signature verifies, so an unsigned token never learns which claim check it
//! would fail.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shadowcat_core::{AuthMethod, Principal};

use super::clock::Clock;
use super::config::{AuthConfigError, JwtConfig, validate_fetch_url};
use super::keys::{KeySet, RemoteJwks, VerifyKey, load_jwks_file, load_public_keys};
use super::rejection::RejectReason;
use super::token_cache::{TokenCache, TokenDigest};

/// Maximum token length in bytes. Longer tokens are rejected before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Counters of the JWT path, reported through [`AuthStats`](super::AuthStats).
#[derive(Debug, Default)]
pub(crate) struct JwtCounters {
    pub(crate) signature_verifications: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
}

/// Validates bearer tokens against the configured keys and claims.
pub(crate) struct JwtValidator {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    leeway_secs: u64,
    cache_lifetime: Duration,
    local_keys: KeySet,
    remote: Option<RemoteJwks>,
    cache: TokenCache,
    clock: Arc<dyn Clock>,
    pub(crate) counters: JwtCounters,
}

#[derive(Deserialize)]
struct TokenHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl JwtValidator {
    /// Loads static and file keys and prepares the remote JWKS, without fetching it.
    pub(crate) fn new(config: &JwtConfig, clock: Arc<dyn Clock>) -> Result<Self, AuthConfigError> {
        let algorithms = config.parsed_algorithms()?;
        let mut local_keys = load_public_keys(&config.public_keys)?;
        if let Some(path) = &config.jwks_file {
            local_keys.merge(load_jwks_file(path)?);
        }

        let remote = match &config.jwks_url {
            Some(url) => {
                let url = validate_fetch_url("auth.jwt.jwks_url", url)?;
                let client = reqwest::Client::builder()
                    .timeout(config.jwks_fetch_timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(AuthConfigError::HttpClient)?;
                Some(RemoteJwks::new(
                    url,
                    client,
                    config.jwks_ttl,
                    config.jwks_refetch_cooldown,
                    Arc::clone(&clock),
                ))
            }
            None => None,
        };

        Ok(Self {
            issuer: config.issuer.clone(),
            // `validate` has already rejected a missing audience.
            audience: config.audience.clone().unwrap_or_default(),
            algorithms,
            leeway_secs: config.leeway.as_secs(),
            // A key dropped from the JWKS stops being honoured through the cache within
            // one TTL.
            cache_lifetime: config.jwks_ttl,
            local_keys,
            remote,
            cache: TokenCache::new(config.token_cache_max_entries),
            clock,
            counters: JwtCounters::default(),
        })
    }

    /// Fetches the remote JWKS once, so the first request does not pay for it.
    pub(crate) async fn prefetch(&self) {
        if let Some(remote) = &self.remote {
            remote.refresh(remote.generation()).await;
        }
    }

    pub(crate) fn jwks_fetches(&self) -> u64 {
        self.remote.as_ref().map_or(0, RemoteJwks::fetch_count)
    }

    pub(crate) fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// Validates a bearer token and returns its principal.
    pub(crate) async fn validate(&self, token: &str) -> Result<Arc<Principal>, RejectReason> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(RejectReason::Malformed);
        }
        let digest: TokenDigest = Sha256::digest(token.as_bytes()).into();
        let now = self.clock.now();
        if let Some(principal) = self.cache.get(&digest, now) {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(principal);
        }

        let (signing_input, signature) = token.rsplit_once('.').ok_or(RejectReason::Malformed)?;
        let (header_part, payload_part) = signing_input
            .split_once('.')
            .ok_or(RejectReason::Malformed)?;
        if payload_part.contains('.') {
            return Err(RejectReason::Malformed);
        }
        let header: TokenHeader = decode_part(header_part)?;
        // No critical header extension is understood, so RFC 7515 section 4.1.11
        // requires rejecting any token that lists one.
        if header.crit.is_some() {
            return Err(RejectReason::Malformed);
        }

        let algorithm = self.allowed_algorithm(&header.alg)?;
        let key = self.find_key(header.kid.as_deref()).await?;
        let decoding_key = key
            .for_algorithm(algorithm)
            .ok_or(RejectReason::BadAlgorithm)?;

        self.counters
            .signature_verifications
            .fetch_add(1, Ordering::Relaxed);
        let verified = jsonwebtoken::crypto::verify(
            signature,
            signing_input.as_bytes(),
            decoding_key,
            algorithm,
        )
        .map_err(|_| RejectReason::BadSignature)?;
        if !verified {
            return Err(RejectReason::BadSignature);
        }

        let claims: serde_json::Map<String, Value> = decode_part(payload_part)?;
        let now_secs = now.as_secs();
        let exp = self.check_times(&claims, now_secs)?;
        self.check_issuer_and_audience(&claims)?;
        let principal = Arc::new(principal_from_claims(&claims)?);

        let expires_at = Duration::from_secs(exp).min(now.saturating_add(self.cache_lifetime));
        self.cache
            .insert(digest, Arc::clone(&principal), expires_at, now);
        Ok(principal)
    }

    fn allowed_algorithm(&self, name: &str) -> Result<Algorithm, RejectReason> {
        let algorithm = Algorithm::from_str(name).map_err(|_| RejectReason::BadAlgorithm)?;
        if !self.algorithms.contains(&algorithm) {
            return Err(RejectReason::BadAlgorithm);
        }
        Ok(algorithm)
    }

    async fn find_key(&self, kid: Option<&str>) -> Result<Arc<VerifyKey>, RejectReason> {
        if let Some(key) = self.local_keys.find(kid) {
            return Ok(key);
        }
        match &self.remote {
            Some(remote) => remote.find(kid).await.ok_or(RejectReason::UnknownKid),
            None => Err(RejectReason::UnknownKid),
        }
    }

    /// Checks `exp`, `nbf` and `iat` against `now`, returning `exp`.
    fn check_times(
        &self,
        claims: &serde_json::Map<String, Value>,
        now: u64,
    ) -> Result<u64, RejectReason> {
        let exp = numeric_date(claims, "exp")?.ok_or(RejectReason::MissingExp)?;
        if now >= exp.saturating_add(self.leeway_secs) {
            return Err(RejectReason::Expired);
        }
        let latest_start = now.saturating_add(self.leeway_secs);
        if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > latest_start) {
            return Err(RejectReason::NotYetValid);
        }
        if numeric_date(claims, "iat")?.is_some_and(|iat| iat > latest_start) {
            return Err(RejectReason::NotYetValid);
        }
        Ok(exp)
    }

    fn check_issuer_and_audience(
        &self,
        claims: &serde_json::Map<String, Value>,
    ) -> Result<(), RejectReason> {
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(RejectReason::WrongIssuer);
        }
        let audience_matches = match claims.get("aud") {
            Some(Value::String(audience)) => *audience == self.audience,
            Some(Value::Array(audiences)) => audiences
                .iter()
                .any(|audience| audience.as_str() == Some(self.audience.as_str())),
            _ => false,
        };
        if !audience_matches {
            return Err(RejectReason::WrongAudience);
        }
        Ok(())
    }
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, RejectReason> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| RejectReason::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| RejectReason::Malformed)
}

/// Reads a NumericDate claim (RFC 7519 section 2): absent is `None`, a non-number is
/// malformed, fractions are rounded down.
fn numeric_date(
    claims: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<u64>, RejectReason> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => {
            if let Some(seconds) = number.as_u64() {
                return Ok(Some(seconds));
            }
            match number.as_f64() {
                Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
                    // Saturating float-to-int conversion; dates beyond u64 are absurd.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    Ok(Some(seconds as u64))
                }
                _ => Err(RejectReason::Malformed),
            }
        }
        Some(_) => Err(RejectReason::Malformed),
    }
}

fn principal_from_claims(
    claims: &serde_json::Map<String, Value>,
) -> Result<Principal, RejectReason> {
    let subject = match claims.get("sub") {
        Some(Value::String(subject)) if !subject.is_empty() => subject.clone(),
        Some(Value::String(_)) | None => return Err(RejectReason::MissingSubject),
        Some(_) => return Err(RejectReason::Malformed),
    };
    let client_id = ["client_id", "azp"]
        .iter()
        .find_map(|name| claims.get(*name).and_then(Value::as_str))
        .map(str::to_owned);

    let mut scopes: Vec<String> = Vec::new();
    match claims.get("scope") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => scopes.extend(text.split_whitespace().map(str::to_owned)),
        Some(_) => return Err(RejectReason::Malformed),
    }
    match claims.get("scp") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => scopes.extend(text.split_whitespace().map(str::to_owned)),
        Some(Value::Array(items)) => {
            for item in items {
                let scope = item.as_str().ok_or(RejectReason::Malformed)?;
                scopes.push(scope.to_owned());
            }
        }
        Some(_) => return Err(RejectReason::Malformed),
    }
    scopes.sort_unstable();
    scopes.dedup();

    Ok(Principal {
        subject,
        issuer: claims.get("iss").and_then(Value::as_str).map(str::to_owned),
        client_id,
        scopes,
        method: AuthMethod::Jwt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(value: Value) -> serde_json::Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn scopes_merge_scope_and_scp() {
        let principal = principal_from_claims(&claims(serde_json::json!({
            "sub": "alice", "iss": "i", "scope": "b a", "scp": ["c", "a"], "azp": "app"
        })))
        .unwrap();
        assert_eq!(principal.scopes, ["a", "b", "c"]);
        assert_eq!(principal.client_id.as_deref(), Some("app"));
    }

    #[test]
    fn client_id_claim_wins_over_azp() {
        let principal = principal_from_claims(&claims(serde_json::json!({
            "sub": "alice", "client_id": "cli", "azp": "app"
        })))
        .unwrap();
        assert_eq!(principal.client_id.as_deref(), Some("cli"));
    }

    #[test]
    fn missing_subject_is_rejected() {
        let error = principal_from_claims(&claims(serde_json::json!({"iss": "i"}))).unwrap_err();
        assert_eq!(error, RejectReason::MissingSubject);
    }

    #[test]
    fn numeric_date_accepts_fractions_and_rejects_strings() {
        let map = claims(serde_json::json!({"a": 10.7, "b": "10", "c": -1}));
        assert_eq!(numeric_date(&map, "a"), Ok(Some(10)));
        assert_eq!(numeric_date(&map, "b"), Err(RejectReason::Malformed));
        assert_eq!(numeric_date(&map, "c"), Err(RejectReason::Malformed));
        assert_eq!(numeric_date(&map, "d"), Ok(None));
    }
}
