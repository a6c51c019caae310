//! The authentication entry point: credentials from headers to a [`Principal`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use shadowcat_core::Principal;

use super::api_key::ApiKeys;
use super::clock::{Clock, SystemClock};
use super::config::AuthConfig;
use super::config::AuthConfigError;
use super::jwt::JwtValidator;
use super::metadata::ResourceMetadata;
use super::rejection::{AuthRejection, Challenge, RejectReason};
use super::routes::RouteTable;

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Token signatures checked. A token served from the token cache adds nothing.
    pub signature_verifications: u64,
    /// Requests whose token was found in the token cache.
    pub token_cache_hits: u64,
    /// JWKS fetches sent, successful or not.
    pub jwks_fetches: u64,
    /// Tokens currently in the token cache, expired ones included until evicted.
    pub cached_tokens: usize,
}

/// Authenticates requests from their headers.
///
/// Build one per configuration with [`Authenticator::new`] and share it (it is `Send +
/// Sync`). Accepted credentials:
///
/// - `Authorization: Bearer <JWT>` (scheme case-insensitive, exactly one header),
///   validated against the `[auth.jwt]` keys and claims;
/// - an API key in its configured header (`x-api-key` by default).
///
/// A request with more than one credential is rejected rather than guessed at.
pub struct Authenticator {
    jwt: Option<JwtValidator>,
    api_keys: ApiKeys,
    routes: RouteTable,
    challenge: Arc<Challenge>,
    metadata: Option<ResourceMetadata>,
    anonymous: Arc<Principal>,
}

/// The credential a request carries.
enum Presented<'a> {
    Nothing,
    Bearer(&'a str),
    ApiKey(&'a HeaderName, &'a HeaderValue),
}

impl Authenticator {
    /// Builds an authenticator that reads the system clock.
    ///
    /// Reads key files and fetches the JWKS once. A failed fetch is logged and retried
    /// when a token needs a key.
    ///
    /// # Errors
    ///
    /// Returns [`AuthConfigError`] naming the invalid field, or the key file that could
    /// not be read or parsed.
    pub async fn new(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        Self::with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds an authenticator that reads `clock`, for tests.
    ///
    /// # Errors
    ///
    /// As for [`Authenticator::new`].
    pub async fn with_clock(
        config: &AuthConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuthConfigError> {
        config.validate()?;
        let jwt = match &config.jwt {
            Some(jwt_config) => Some(JwtValidator::new(jwt_config, clock)?),
            None => None,
        };
        let metadata = match &config.resource_metadata {
            Some(metadata_config) => Some(ResourceMetadata::from_config(metadata_config)?),
            None => None,
        };
        let challenge = Arc::new(Challenge {
            realm: config.realm.clone(),
            resource_metadata: metadata.as_ref().map(|metadata| metadata.url().to_owned()),
        });
        let authenticator = Self {
            jwt,
            api_keys: ApiKeys::new(&config.api_keys)?,
            routes: RouteTable::new(&config.routes)?,
            challenge,
            metadata,
            anonymous: Arc::new(Principal::anonymous()),
        };

        if let Some(jwt) = &authenticator.jwt {
            jwt.prefetch().await;
        }
        Ok(authenticator)
    }

    /// Authenticates a request to `route` (the request path, for example `/mcp`).
    ///
    /// On a route with `anonymous = true`, a request without credentials gets the
    /// anonymous principal, but a request with invalid credentials is still rejected.
    ///
    /// # Errors
    ///
    /// Returns an [`AuthRejection`] whose [`reason`](AuthRejection::reason) names the
    /// failed check and whose [`to_response`](AuthRejection::to_response) builds the
    /// 401 (or 403 for a missing scope).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        route: &str,
    ) -> Result<Arc<Principal>, AuthRejection> {
        let rule = self.routes.rule(route);
        let presented = self
            .presented(headers)
            .map_err(|reason| self.reject(reason, true))?;

        let principal = match presented {
            Presented::Nothing if rule.anonymous => return Ok(Arc::clone(&self.anonymous)),
            Presented::Nothing => return Err(self.reject(RejectReason::MissingCredentials, false)),
            Presented::Bearer(token) => {
                // A JWT has exactly two dots; any other bearer value is an API key when
                // keys are configured.
                let jwt_shaped = token.bytes().filter(|byte| *byte == b'.').count() == 2;
                match &self.jwt {
                    Some(jwt) if jwt_shaped || self.api_keys.is_empty() => jwt
                        .validate(token)
                        .await
                        .map_err(|reason| self.reject(reason, true))?,
                    _ if self.api_keys.is_empty() => {
                        return Err(self.reject(RejectReason::UnsupportedScheme, true));
                    }
                    _ => self
                        .api_keys
                        .find(None, token.as_bytes())
                        .ok_or_else(|| self.reject(RejectReason::UnknownApiKey, true))?,
                }
            }
            Presented::ApiKey(header, value) => self
                .api_keys
                .find(Some(header), value.as_bytes())
                .ok_or_else(|| self.reject(RejectReason::UnknownApiKey, true))?,
        };

        let has_all_scopes = rule.scopes.iter().all(|scope| principal.has_scope(scope));
        if !has_all_scopes && let Some(scope_text) = &rule.scope_text {
            return Err(AuthRejection::insufficient_scope(
                Arc::clone(scope_text),
                Arc::clone(&self.challenge),
            ));
        }
        Ok(principal)
    }

    /// Returns the RFC 9728 metadata, when `[auth.resource_metadata]` is configured.
    pub fn resource_metadata(&self) -> Option<&ResourceMetadata> {
        self.metadata.as_ref()
    }

    /// Returns the current counters.
    pub fn stats(&self) -> AuthStats {
        let Some(jwt) = &self.jwt else {
            return AuthStats::default();
        };
        AuthStats {
            signature_verifications: jwt.counters.signature_verifications.load(Ordering::Relaxed),
            token_cache_hits: jwt.counters.cache_hits.load(Ordering::Relaxed),
            jwks_fetches: jwt.jwks_fetches(),
            cached_tokens: jwt.cached_tokens(),
        }
    }

    /// Builds a rejection with this authenticator's challenge, for callers that
    /// reject before authenticating.
    pub fn rejection(&self, reason: RejectReason, credentials_present: bool) -> AuthRejection {
        self.reject(reason, credentials_present)
    }

    fn reject(&self, reason: RejectReason, credentials_present: bool) -> AuthRejection {
        tracing::debug!(reason = reason.as_str(), "authentication rejected");
        AuthRejection::new(reason, credentials_present, Arc::clone(&self.challenge))
    }

    /// Finds the request's one credential. Credentials are counted before any is
    /// parsed, so two headers are always `multiple_credentials`, even if one is
    /// malformed.
    fn presented<'a>(&'a self, headers: &'a HeaderMap) -> Result<Presented<'a>, RejectReason> {
        let mut authorization = None;
        let mut api_key = None;
        let mut count = 0usize;
        for value in headers.get_all(AUTHORIZATION) {
            count += 1;
            authorization = Some(value);
        }
        for header in self
            .api_keys
            .headers()
            .iter()
            .filter(|header| **header != AUTHORIZATION)
        {
            for value in headers.get_all(header) {
                count += 1;
                api_key = Some((header, value));
            }
        }
        if count > 1 {
            return Err(RejectReason::MultipleCredentials);
        }

        if let Some(value) = authorization {
            return parse_bearer(value).map(Presented::Bearer);
        }
        Ok(match api_key {
            Some((header, value)) => Presented::ApiKey(header, value),
            None => Presented::Nothing,
        })
    }
}

/// Extracts the token of `Authorization: Bearer <token>` (RFC 6750 section 2.1).
fn parse_bearer(value: &HeaderValue) -> Result<&str, RejectReason> {
    let text = value.to_str().map_err(|_| RejectReason::Malformed)?.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(RejectReason::UnsupportedScheme);
    }
    let token = rest.trim_start_matches(' ');
    let body = token.trim_end_matches('=');
    let token68 = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if !token68 {
        return Err(RejectReason::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<&str, RejectReason> {
        // Leaks are fine in a test: the value must outlive the returned slice.
        let value: &'static HeaderValue = Box::leak(Box::new(HeaderValue::from_str(text).unwrap()));
        parse_bearer(value)
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(parse("bearer abc.def.ghi"), Ok("abc.def.ghi"));
        assert_eq!(parse("BEARER   abc"), Ok("abc"));
    }

    #[test]
    fn other_schemes_are_unsupported() {
        assert_eq!(
            parse("Basic dXNlcjpwYXNz"),
            Err(RejectReason::UnsupportedScheme)
        );
        assert_eq!(parse("Token"), Err(RejectReason::UnsupportedScheme));
    }

    #[test]
    fn bad_token_syntax_is_malformed() {
        assert_eq!(parse("Bearer"), Err(RejectReason::Malformed));
        assert_eq!(parse("Bearer a b"), Err(RejectReason::Malformed));
        assert_eq!(parse("Bearer a\"b"), Err(RejectReason::Malformed));
        assert_eq!(parse("Bearer ==="), Err(RejectReason::Malformed));
    }
}
