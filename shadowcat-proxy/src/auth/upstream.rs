//! Credentials the proxy presents to upstream MCP servers.
//!
//! Client tokens are never forwarded upstream. An upstream receives nothing, a static
//! header, or an access token the proxy obtained for itself with the OAuth 2.0
//! client-credentials grant (RFC 6749 section 4.4).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue};
use parking_lot::RwLock;
use serde::Deserialize;

use super::clock::{Clock, SystemClock};
use super::config::{AuthConfigError, duration, validate_fetch_url};

/// Default margin before a token's expiry at which it is refreshed: 60 seconds.
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(60);
/// Default timeout of one token request: 10 seconds.
pub const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime assumed when a token response has no `expires_in`: 5 minutes.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(300);
/// Largest token response accepted: 64 KiB.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Upstream credential configuration: what the proxy sends to an upstream.
///
/// ```toml
/// [upstream.auth]
/// type = "client_credentials"
/// token_url = "https://idp.example.com/oauth/token"
/// client_id = "shadowcat"
/// client_secret_env = "SHADOWCAT_CLIENT_SECRET"
/// scope = "mcp:call"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UpstreamCredentialConfig {
    /// Send no credential.
    #[default]
    None,
    /// Send one fixed header.
    Header(StaticHeaderConfig),
    /// Obtain and refresh an access token with the client-credentials grant.
    ClientCredentials(ClientCredentialsConfig),
}

/// `type = "header"`: one fixed header, its value inline or from an environment
/// variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticHeaderConfig {
    /// Header name, for example `authorization` or `x-api-key`.
    pub name: String,
    /// Header value. Exactly one of `value` and `value_env` is required.
    #[serde(default)]
    pub value: Option<String>,
    /// Environment variable that contains the header value, read at start.
    #[serde(default)]
    pub value_env: Option<String>,
}

/// Client authentication method at the token endpoint (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP Basic with the form-encoded client id and secret (`client_secret_basic`).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

/// `type = "client_credentials"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsConfig {
    /// Token endpoint: HTTPS, or HTTP on a loopback host.
    pub token_url: String,
    /// OAuth client id.
    pub client_id: String,
    /// Client secret. Exactly one of `client_secret` and `client_secret_env` is required.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Environment variable that contains the client secret, read at start.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Space-separated scopes to request.
    #[serde(default)]
    pub scope: Option<String>,
    /// Client authentication method. Defaults to `basic`.
    #[serde(default)]
    pub auth_method: ClientAuthMethod,
    /// How long before expiry a token is replaced. Defaults to 60 s. Tokens that live
    /// less than twice this long are replaced at half their lifetime.
    #[serde(default = "default_refresh_before", deserialize_with = "duration")]
    pub refresh_before: Duration,
    /// Timeout of one token request. Defaults to 10 s.
    #[serde(default = "default_token_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

fn default_refresh_before() -> Duration {
    DEFAULT_REFRESH_BEFORE
}

fn default_token_timeout() -> Duration {
    DEFAULT_TOKEN_TIMEOUT
}

/// Failure to produce an upstream credential. Every variant may succeed on retry.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamAuthError {
    /// The token endpoint could not be reached or timed out.
    #[error("could not reach the token endpoint: {0}")]
    Request(#[source] reqwest::Error),
    /// The token endpoint returned an error status.
    #[error("token endpoint returned status {status}: {error}")]
    Status {
        /// HTTP status.
        status: http::StatusCode,
        /// The OAuth `error` code from the body, or `unknown`.
        error: String,
    },
    /// The token endpoint's response is not a usable bearer token response.
    #[error("invalid token response: {0}")]
    InvalidResponse(&'static str),
}

/// The credential the proxy sends to one upstream.
#[derive(Debug)]
pub enum UpstreamCredential {
    /// No credential.
    None,
    /// A fixed header.
    Header {
        /// Header name.
        name: HeaderName,
        /// Header value, marked sensitive so it is not printed by `Debug`.
        value: HeaderValue,
    },
    /// A token obtained with the client-credentials grant.
    ClientCredentials(Box<ClientCredentials>),
}

impl UpstreamCredential {
    /// Builds the credential, reading environment variables now.
    ///
    /// # Errors
    ///
    /// Returns [`AuthConfigError`] for an invalid header, a missing or doubly given
    /// secret, an unset environment variable, or a token URL that is not HTTPS.
    pub fn from_config(config: &UpstreamCredentialConfig) -> Result<Self, AuthConfigError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// Builds the credential with an injected clock, for tests.
    ///
    /// # Errors
    ///
    /// As for [`UpstreamCredential::from_config`].
    pub fn with_clock(
        config: &UpstreamCredentialConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuthConfigError> {
        match config {
            UpstreamCredentialConfig::None => Ok(Self::None),
            UpstreamCredentialConfig::Header(header) => {
                let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| {
                    AuthConfigError::invalid(
                        "upstream.auth.name",
                        &header.name,
                        "must be a valid HTTP header name",
                    )
                })?;
                let text = secret(
                    "upstream.auth.value",
                    header.value.as_deref(),
                    header.value_env.as_deref(),
                )?;
                let mut value = HeaderValue::from_str(&text).map_err(|_| {
                    AuthConfigError::invalid(
                        "upstream.auth.value",
                        "<redacted>",
                        "must be visible ASCII",
                    )
                })?;
                value.set_sensitive(true);
                Ok(Self::Header { name, value })
            }
            UpstreamCredentialConfig::ClientCredentials(grant) => Ok(Self::ClientCredentials(
                Box::new(ClientCredentials::new(grant, clock)?),
            )),
        }
    }

    /// Returns the header to add to an upstream request, if any.
    ///
    /// # Errors
    ///
    /// Returns [`UpstreamAuthError`] when a client-credentials token is needed and the
    /// token endpoint fails. A token that is due for refresh but not yet expired is
    /// still returned when the refresh fails.
    pub async fn authorization(
        &self,
    ) -> Result<Option<(HeaderName, HeaderValue)>, UpstreamAuthError> {
        match self {
            Self::None => Ok(None),
            Self::Header { name, value } => Ok(Some((name.clone(), value.clone()))),
            Self::ClientCredentials(grant) => {
                let value = grant.token().await?;
                Ok(Some((AUTHORIZATION, value)))
            }
        }
    }
}

/// Reads a secret from exactly one of an inline value and an environment variable.
fn secret(field: &str, inline: Option<&str>, env: Option<&str>) -> Result<String, AuthConfigError> {
    match (inline, env) {
        (Some(value), None) => Ok(value.to_owned()),
        (None, Some(variable)) => std::env::var(variable).map_err(|_| {
            AuthConfigError::invalid(
                format!("{field}_env"),
                variable,
                "environment variable is not set or not valid UTF-8",
            )
        }),
        (Some(_), Some(_)) => Err(AuthConfigError::invalid(
            field,
            "<redacted>",
            format!("set either {field} or {field}_env, not both"),
        )),
        (None, None) => Err(AuthConfigError::Missing {
            field: format!("{field} or {field}_env"),
            reason: "the credential has no value",
        }),
    }
}

struct CachedToken {
    value: HeaderValue,
    refresh_at: Duration,
    expires_at: Duration,
}

/// An access token from the client-credentials grant, cached and refreshed before it
/// expires. Concurrent callers that need a new token share one token request.
pub struct ClientCredentials {
    token_url: reqwest::Url,
    client_id: String,
    client_secret: String,
    scope: Option<String>,
    auth_method: ClientAuthMethod,
    refresh_before: Duration,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    cached: RwLock<Option<CachedToken>>,
    refresh_lock: tokio::sync::Mutex<()>,
    requests: AtomicU64,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
}

impl ClientCredentials {
    fn new(
        config: &ClientCredentialsConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuthConfigError> {
        let token_url = validate_fetch_url("upstream.auth.token_url", &config.token_url)?;
        if config.client_id.is_empty() {
            return Err(AuthConfigError::invalid(
                "upstream.auth.client_id",
                "",
                "must be the OAuth client id",
            ));
        }
        let client_secret = secret(
            "upstream.auth.client_secret",
            config.client_secret.as_deref(),
            config.client_secret_env.as_deref(),
        )?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(AuthConfigError::HttpClient)?;
        Ok(Self {
            token_url,
            client_id: config.client_id.clone(),
            client_secret,
            scope: config.scope.clone(),
            auth_method: config.auth_method,
            refresh_before: config.refresh_before,
            client,
            clock,
            cached: RwLock::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
            requests: AtomicU64::new(0),
        })
    }

    /// Returns how many token requests were sent.
    pub fn token_requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Returns the `Authorization` value, requesting a new token when due.
    async fn token(&self) -> Result<HeaderValue, UpstreamAuthError> {
        if let Some(value) = self.current(false) {
            return Ok(value);
        }
        let _single_flight = self.refresh_lock.lock().await;
        // Another caller may have refreshed while this one waited.
        if let Some(value) = self.current(false) {
            return Ok(value);
        }

        let started = self.clock.now();
        match self.request().await {
            Ok((value, lifetime)) => {
                let margin = self.refresh_before.min(lifetime / 2);
                *self.cached.write() = Some(CachedToken {
                    value: value.clone(),
                    refresh_at: started + lifetime - margin,
                    expires_at: started + lifetime,
                });
                Ok(value)
            }
            Err(error) => {
                if let Some(value) = self.current(true) {
                    tracing::warn!(%error, "could not refresh the upstream token, using the current one until it expires");
                    return Ok(value);
                }
                tracing::error!(%error, "could not obtain an upstream token");
                Err(error)
            }
        }
    }

    /// Returns the cached value if it is before its refresh time, or with
    /// `until_expiry`, before its expiry.
    fn current(&self, until_expiry: bool) -> Option<HeaderValue> {
        let now = self.clock.now();
        let cached = self.cached.read();
        let token = cached.as_ref()?;
        let deadline = if until_expiry {
            token.expires_at
        } else {
            token.refresh_at
        };
        (now < deadline).then(|| token.value.clone())
    }

    async fn request(&self) -> Result<(HeaderValue, Duration), UpstreamAuthError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let mut request = self
            .client
            .post(self.token_url.clone())
            .header(http::header::ACCEPT, "application/json");
        match self.auth_method {
            ClientAuthMethod::Basic => {
                let credentials = format!(
                    "{}:{}",
                    form_urlencode(&self.client_id),
                    form_urlencode(&self.client_secret)
                );
                let mut value =
                    HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(credentials)))
                        .map_err(|_| {
                            UpstreamAuthError::InvalidResponse("unencodable client credentials")
                        })?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
            ClientAuthMethod::Post => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", &self.client_secret));
            }
        }

        let response = request
            .form(&form)
            .send()
            .await
            .map_err(UpstreamAuthError::Request)?;
        let status = response.status();
        let body = response.bytes().await.map_err(UpstreamAuthError::Request)?;
        if body.len() > MAX_TOKEN_RESPONSE_BYTES {
            return Err(UpstreamAuthError::InvalidResponse(
                "response body is too large",
            ));
        }
        if !status.is_success() {
            let error = serde_json::from_slice::<TokenErrorResponse>(&body)
                .map(|body| body.error)
                .unwrap_or_else(|_| "unknown".to_owned());
            return Err(UpstreamAuthError::Status { status, error });
        }

        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| UpstreamAuthError::InvalidResponse("body is not a token response"))?;
        if !token.token_type.eq_ignore_ascii_case("bearer") {
            return Err(UpstreamAuthError::InvalidResponse(
                "token_type is not Bearer",
            ));
        }
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.access_token))
            .map_err(|_| UpstreamAuthError::InvalidResponse("access_token is not visible ASCII"))?;
        value.set_sensitive(true);
        let lifetime = token
            .expires_in
            .map_or(ASSUMED_LIFETIME, Duration::from_secs);
        if lifetime.is_zero() {
            return Err(UpstreamAuthError::InvalidResponse("expires_in is 0"));
        }
        Ok((value, lifetime))
    }
}

/// Encodes a value as `application/x-www-form-urlencoded`, which RFC 6749 section
/// 2.3.1 requires for the client id and secret inside HTTP Basic.
fn form_urlencode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                encoded.push(char::from(byte));
            }
            b' ' => encoded.push('+'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_urlencode_escapes_reserved_bytes() {
        assert_eq!(form_urlencode("a b:c%é"), "a+b%3Ac%25%C3%A9");
        assert_eq!(form_urlencode("Az09*-._"), "Az09*-._");
    }

    #[test]
    fn config_parses_each_type() {
        let none: UpstreamCredentialConfig = toml::from_str("type = \"none\"").unwrap();
        assert!(matches!(none, UpstreamCredentialConfig::None));
        let header: UpstreamCredentialConfig =
            toml::from_str("type = \"header\"\nname = \"x-api-key\"\nvalue = \"k\"").unwrap();
        assert!(matches!(header, UpstreamCredentialConfig::Header(_)));
        let grant: UpstreamCredentialConfig = toml::from_str(
            "type = \"client_credentials\"\ntoken_url = \"https://idp/t\"\nclient_id = \"c\"\nclient_secret = \"s\"\nrefresh_before = \"30s\"",
        )
        .unwrap();
        let UpstreamCredentialConfig::ClientCredentials(grant) = grant else {
            panic!("expected client_credentials");
        };
        assert_eq!(grant.refresh_before, Duration::from_secs(30));
    }

    #[test]
    fn unknown_field_is_rejected() {
        let result: Result<UpstreamCredentialConfig, _> =
            toml::from_str("type = \"header\"\nname = \"x\"\nvalue = \"k\"\nvalu = \"k\"");
        assert!(result.is_err());
    }

    #[test]
    fn header_value_is_sensitive() {
        let config = UpstreamCredentialConfig::Header(StaticHeaderConfig {
            name: "x-api-key".to_owned(),
            value: Some("k".to_owned()),
            value_env: None,
        });
        let credential = UpstreamCredential::from_config(&config).unwrap();
        let UpstreamCredential::Header { value, .. } = &credential else {
            panic!("expected a header credential");
        };
        assert!(value.is_sensitive());
        assert!(!format!("{credential:?}").contains("\"k\""));
    }

    #[test]
    fn secret_needs_exactly_one_source() {
        assert!(secret("f", None, None).is_err());
        assert!(secret("f", Some("a"), Some("B")).is_err());
        assert_eq!(secret("f", Some("a"), None).unwrap(), "a");
        let error = secret("f", None, Some("SHADOWCAT_TEST_SURELY_UNSET_VARIABLE")).unwrap_err();
        assert!(error.to_string().contains("f_env"), "{error}");
    }
}
