//! The `[auth]` table of the proxy configuration and its validation.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::{Deserialize, Deserializer};

/// Default `realm` of the `WWW-Authenticate` challenge.
pub const DEFAULT_REALM: &str = "shadowcat";
/// Default clock-skew allowance for `exp`, `nbf` and `iat`: 60 seconds.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Default lifetime of a fetched JWKS before it is fetched again: 5 minutes.
pub const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(300);
/// Default minimum gap between two JWKS fetches: 30 seconds.
pub const DEFAULT_JWKS_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
/// Default timeout of one JWKS fetch: 5 seconds.
pub const DEFAULT_JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Default maximum number of validated tokens kept in the token cache.
pub const DEFAULT_TOKEN_CACHE_MAX_ENTRIES: usize = 10_000;
/// Default header that carries an API key.
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

/// The `[auth]` table: how callers prove who they are.
///
/// ```toml
/// [auth]
/// realm = "shadowcat"
///
/// [auth.jwt]
/// issuer = "https://idp.example.com"
/// audience = "https://mcp.example.com"
/// jwks_url = "https://idp.example.com/.well-known/jwks.json"
/// algorithms = ["RS256", "ES256"]
/// leeway = "60s"
///
/// [[auth.api_keys]]
/// sha256 = "<64 hex digits>"
/// subject = "ci-bot"
/// scopes = ["mcp:read"]
///
/// [[auth.routes]]
/// path = "/public/**"
/// anonymous = true
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `realm` of the `WWW-Authenticate` challenge. Defaults to [`DEFAULT_REALM`].
    #[serde(default = "default_realm")]
    pub realm: String,
    /// JWT bearer tokens. Absent means bearer tokens are not accepted.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// API keys, stored as SHA-256 hashes.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Per-route rules, first match wins. A route that matches no rule requires
    /// credentials and no particular scope.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// RFC 9728 protected resource metadata, served at
    /// `/.well-known/oauth-protected-resource` and named in every challenge.
    #[serde(default)]
    pub resource_metadata: Option<ResourceMetadataConfig>,
}

/// The `[auth.jwt]` table: validation of JWT bearer tokens.
///
/// Keys come from any mix of `jwks_url`, `jwks_file` and `public_keys`, and at least one is
/// required. A token's `alg` header only selects among the algorithms that the key
/// configuration allows, so `none` and HMAC tokens are always rejected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Expected `iss` claim, compared exactly.
    pub issuer: String,
    /// Expected audience: the token's `aud` (a string or an array) must contain it.
    /// Required, so that a token minted for another service is never accepted here.
    #[serde(default)]
    pub audience: Option<String>,
    /// HTTPS URL of the identity provider's JWKS (`http` only for loopback hosts).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Local JWKS file, read once at start.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Static public keys in PEM files.
    #[serde(default)]
    pub public_keys: Vec<PublicKeyConfig>,
    /// Accepted signature algorithms. Defaults to `["RS256", "ES256"]`. HMAC
    /// algorithms (`HS*`) and `none` are rejected at load time.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`. Defaults to 60 s.
    #[serde(default = "default_leeway", deserialize_with = "duration")]
    pub leeway: Duration,
    /// How long a fetched JWKS is used before it is fetched again. Defaults to 5 min.
    #[serde(default = "default_jwks_ttl", deserialize_with = "duration")]
    pub jwks_ttl: Duration,
    /// Minimum gap between two JWKS fetches, also when a token names an unknown `kid`.
    /// Defaults to 30 s.
    #[serde(default = "default_jwks_cooldown", deserialize_with = "duration")]
    pub jwks_refetch_cooldown: Duration,
    /// Timeout of one JWKS fetch. Defaults to 5 s.
    #[serde(default = "default_jwks_timeout", deserialize_with = "duration")]
    pub jwks_fetch_timeout: Duration,
    /// Maximum number of validated tokens cached, where 0 turns the cache off. Defaults to
    /// 10 000.
    #[serde(default = "default_token_cache_max_entries")]
    pub token_cache_max_entries: usize,
}

/// One static public key: `{ kid = "...", pem_file = "...", algorithm = "RS256" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyConfig {
    /// Key id that tokens name in their `kid` header.
    pub kid: String,
    /// PEM file with the public key (SPKI `PUBLIC KEY`, or `RSA PUBLIC KEY`).
    pub pem_file: PathBuf,
    /// The only algorithm this key verifies, for example `RS256` or `ES256`.
    pub algorithm: String,
}

/// One `[[auth.api_keys]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Lowercase or uppercase hex SHA-256 of the key. The key itself is never stored.
    pub sha256: String,
    /// Subject of the principal this key authenticates.
    pub subject: String,
    /// Scopes granted to this key.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Request header that carries the key. Defaults to `x-api-key`.
    #[serde(default = "default_api_key_header")]
    pub header: String,
}

/// One `[[auth.routes]]` entry: anonymous access and required scopes for a path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path glob, for example `/mcp` or `/public/**`. `*` does not cross `/`.
    pub path: String,
    /// Let callers without credentials through as the anonymous principal. Callers
    /// that do send credentials must still send valid ones.
    #[serde(default)]
    pub anonymous: bool,
    /// Scopes the principal must hold, all of them.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The `[auth.resource_metadata]` table (RFC 9728).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceMetadataConfig {
    /// The protected resource's identifier, for example `https://mcp.example.com/mcp`.
    pub resource: String,
    /// Issuer URLs of the authorization servers that mint tokens for this resource.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Scopes a client can request for this resource.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Accepted ways to send bearer tokens. Defaults to `["header"]`, the only method the
    /// proxy accepts.
    #[serde(default = "default_bearer_methods")]
    pub bearer_methods_supported: Vec<String>,
    /// Human-readable name of the resource.
    #[serde(default)]
    pub resource_name: Option<String>,
    /// URL of the metadata document named in challenges. Defaults to the RFC 9728
    /// well-known URL derived from `resource`.
    #[serde(default)]
    pub metadata_url: Option<String>,
}

/// An invalid `[auth]` or upstream credential configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// A field has a value the proxy cannot use.
    #[error("invalid {field} = {value:?}: {reason}")]
    Invalid {
        /// Dotted path of the field, for example `auth.jwt.algorithms`.
        field: String,
        /// The rejected value as written.
        value: String,
        /// Description of the problem and the fix.
        reason: String,
    },
    /// A required field is missing.
    #[error("missing {field}: {reason}")]
    Missing {
        /// Dotted path of the field.
        field: String,
        /// Reason the field is required.
        reason: &'static str,
    },
    /// A key file could not be read or parsed.
    #[error("could not load {field} from {path}: {reason}")]
    File {
        /// Dotted path of the field that names the file.
        field: String,
        /// The file.
        path: PathBuf,
        /// The I/O or parse error.
        reason: String,
    },
    /// The HTTP client for JWKS or token fetches could not be built.
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

impl AuthConfigError {
    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl AuthConfig {
    /// Checks the configuration without reading files or using the network.
    ///
    /// # Errors
    ///
    /// Returns the first invalid field, named by its dotted path.
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        validate_header_text("auth.realm", &self.realm)?;
        if self.jwt.is_none() && self.api_keys.is_empty() {
            return Err(AuthConfigError::Missing {
                field: "auth.jwt or auth.api_keys".to_owned(),
                reason: "configure at least one credential type",
            });
        }
        if let Some(jwt) = &self.jwt {
            jwt.validate()?;
        }
        for (index, key) in self.api_keys.iter().enumerate() {
            key.validate(index)?;
        }
        for (index, route) in self.routes.iter().enumerate() {
            route.validate(index)?;
        }
        if let Some(metadata) = &self.resource_metadata {
            metadata.validate()?;
        }
        Ok(())
    }
}

impl JwtConfig {
    fn validate(&self) -> Result<(), AuthConfigError> {
        if self.issuer.is_empty() {
            return Err(AuthConfigError::invalid(
                "auth.jwt.issuer",
                "",
                "must be the identity provider's issuer URL",
            ));
        }
        match self.audience.as_deref() {
            None => {
                return Err(AuthConfigError::Missing {
                    field: "auth.jwt.audience".to_owned(),
                    reason: "without an audience, tokens minted for any other service would be accepted",
                });
            }
            Some("") => {
                return Err(AuthConfigError::invalid(
                    "auth.jwt.audience",
                    "",
                    "must be this resource's identifier",
                ));
            }
            Some(_) => {}
        }
        if self.jwks_url.is_none() && self.jwks_file.is_none() && self.public_keys.is_empty() {
            return Err(AuthConfigError::Missing {
                field: "auth.jwt.jwks_url, auth.jwt.jwks_file or auth.jwt.public_keys".to_owned(),
                reason: "tokens cannot be verified without keys",
            });
        }
        if let Some(url) = &self.jwks_url {
            validate_fetch_url("auth.jwt.jwks_url", url)?;
        }
        self.parsed_algorithms()?;
        for (index, key) in self.public_keys.iter().enumerate() {
            let field = format!("auth.jwt.public_keys[{index}].algorithm");
            parse_algorithm(&field, &key.algorithm)?;
            if key.kid.is_empty() {
                return Err(AuthConfigError::invalid(
                    format!("auth.jwt.public_keys[{index}].kid"),
                    "",
                    "must be the key id that tokens send in their kid header",
                ));
            }
        }
        if self.jwks_refetch_cooldown.is_zero() {
            return Err(AuthConfigError::invalid(
                "auth.jwt.jwks_refetch_cooldown",
                "0s",
                "must be positive, or unknown key ids could trigger a fetch per request",
            ));
        }
        Ok(())
    }

    /// Parses `algorithms`, rejecting HMAC and unknown names.
    pub(crate) fn parsed_algorithms(&self) -> Result<Vec<Algorithm>, AuthConfigError> {
        if self.algorithms.is_empty() {
            return Err(AuthConfigError::invalid(
                "auth.jwt.algorithms",
                "[]",
                "list at least one algorithm, for example \"RS256\"",
            ));
        }
        self.algorithms
            .iter()
            .map(|name| parse_algorithm("auth.jwt.algorithms", name))
            .collect()
    }
}

/// Parses one asymmetric JWS algorithm name.
pub(crate) fn parse_algorithm(field: &str, name: &str) -> Result<Algorithm, AuthConfigError> {
    let algorithm = Algorithm::from_str(name).map_err(|_| {
        AuthConfigError::invalid(
            field,
            name,
            "unknown algorithm; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA",
        )
    })?;
    if algorithm.family() == AlgorithmFamily::Hmac {
        return Err(AuthConfigError::invalid(
            field,
            name,
            "HMAC algorithms need a shared secret and are not accepted; use an asymmetric algorithm",
        ));
    }
    Ok(algorithm)
}

impl ApiKeyConfig {
    fn validate(&self, index: usize) -> Result<(), AuthConfigError> {
        let field = format!("auth.api_keys[{index}].sha256");
        let valid_hex = self.sha256.len() == 64 && hex::decode(&self.sha256).is_ok();
        if !valid_hex {
            return Err(AuthConfigError::invalid(
                field,
                &self.sha256,
                "must be 64 hex digits: the SHA-256 of the key, for example from `printf %s KEY | sha256sum`",
            ));
        }
        if self.subject.is_empty() {
            return Err(AuthConfigError::invalid(
                format!("auth.api_keys[{index}].subject"),
                "",
                "must name who the key belongs to",
            ));
        }
        if http::HeaderName::from_bytes(self.header.as_bytes()).is_err() {
            return Err(AuthConfigError::invalid(
                format!("auth.api_keys[{index}].header"),
                &self.header,
                "must be a valid HTTP header name",
            ));
        }
        if self.header.eq_ignore_ascii_case("authorization") {
            return Err(AuthConfigError::invalid(
                format!("auth.api_keys[{index}].header"),
                &self.header,
                "the Authorization header is reserved for bearer tokens",
            ));
        }
        Ok(())
    }
}

impl RouteConfig {
    fn validate(&self, index: usize) -> Result<(), AuthConfigError> {
        if !self.path.starts_with('/') {
            return Err(AuthConfigError::invalid(
                format!("auth.routes[{index}].path"),
                &self.path,
                "must start with '/'",
            ));
        }
        if self.anonymous && !self.scopes.is_empty() {
            return Err(AuthConfigError::invalid(
                format!("auth.routes[{index}].scopes"),
                self.scopes.join(" "),
                "an anonymous route cannot require scopes because anonymous callers hold none",
            ));
        }
        for scope in &self.scopes {
            validate_scope_token(&format!("auth.routes[{index}].scopes"), scope)?;
        }
        Ok(())
    }
}

impl ResourceMetadataConfig {
    fn validate(&self) -> Result<(), AuthConfigError> {
        let resource = reqwest::Url::parse(&self.resource).map_err(|error| {
            AuthConfigError::invalid(
                "auth.resource_metadata.resource",
                &self.resource,
                format!("must be an absolute URL: {error}"),
            )
        })?;
        if resource.fragment().is_some() {
            return Err(AuthConfigError::invalid(
                "auth.resource_metadata.resource",
                &self.resource,
                "must not contain a fragment",
            ));
        }
        if let Some(url) = &self.metadata_url {
            reqwest::Url::parse(url).map_err(|error| {
                AuthConfigError::invalid(
                    "auth.resource_metadata.metadata_url",
                    url,
                    format!("must be an absolute URL: {error}"),
                )
            })?;
            validate_header_text("auth.resource_metadata.metadata_url", url)?;
        }
        Ok(())
    }
}

/// Checks that a URL fetched by the proxy uses HTTPS, or HTTP on a loopback host.
pub(crate) fn validate_fetch_url(field: &str, url: &str) -> Result<reqwest::Url, AuthConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|error| {
        AuthConfigError::invalid(field, url, format!("must be an absolute URL: {error}"))
    })?;
    let host = parsed.host_str().unwrap_or_default();
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match bare_host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare_host.eq_ignore_ascii_case("localhost"),
    };
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(AuthConfigError::invalid(
            field,
            url,
            "must use https (http is accepted only for loopback hosts)",
        )),
    }
}

/// Checks that a value can sit inside a quoted-string of a challenge header.
fn validate_header_text(field: &str, value: &str) -> Result<(), AuthConfigError> {
    let printable = value.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !printable || value.contains(['"', '\\']) {
        return Err(AuthConfigError::invalid(
            field,
            value,
            "must be printable ASCII without quotes or backslashes",
        ));
    }
    Ok(())
}

/// Checks one scope against the RFC 6749 `scope-token` grammar.
fn validate_scope_token(field: &str, scope: &str) -> Result<(), AuthConfigError> {
    let valid = !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
    if !valid {
        return Err(AuthConfigError::invalid(
            field,
            scope,
            "a scope is printable ASCII without spaces, quotes or backslashes",
        ));
    }
    Ok(())
}

/// Deserializes a humantime duration such as `"60s"` or `"5m"`.
pub(crate) fn duration<'de, D>(deserializer: D) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|error| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {error}; write for example \"60s\" or \"5m\""
        ))
    })
}

fn default_realm() -> String {
    DEFAULT_REALM.to_owned()
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned(), "ES256".to_owned()]
}

fn default_leeway() -> Duration {
    DEFAULT_LEEWAY
}

fn default_jwks_ttl() -> Duration {
    DEFAULT_JWKS_TTL
}

fn default_jwks_cooldown() -> Duration {
    DEFAULT_JWKS_REFETCH_COOLDOWN
}

fn default_jwks_timeout() -> Duration {
    DEFAULT_JWKS_FETCH_TIMEOUT
}

fn default_token_cache_max_entries() -> usize {
    DEFAULT_TOKEN_CACHE_MAX_ENTRIES
}

fn default_api_key_header() -> String {
    DEFAULT_API_KEY_HEADER.to_owned()
}

fn default_bearer_methods() -> Vec<String> {
    vec!["header".to_owned()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AuthConfig, toml::de::Error> {
        #[derive(Deserialize)]
        struct Root {
            auth: AuthConfig,
        }
        toml::from_str::<Root>(text).map(|root| root.auth)
    }

    const JWT: &str = r#"
        [auth.jwt]
        issuer = "https://idp.example.com"
        audience = "https://mcp.example.com"
        jwks_url = "https://idp.example.com/.well-known/jwks.json"
        algorithms = ["RS256", "ES256"]
        leeway = "60s"
    "#;

    #[test]
    fn documented_keys_parse() {
        let config = parse(JWT).unwrap();
        config.validate().unwrap();
        let jwt = config.jwt.unwrap();
        assert_eq!(jwt.leeway, Duration::from_secs(60));
        assert_eq!(jwt.jwks_ttl, DEFAULT_JWKS_TTL);
        assert_eq!(config.realm, DEFAULT_REALM);
    }

    #[test]
    fn unknown_field_is_rejected() {
        let error = parse("[auth]\nrelam = \"x\"\n").unwrap_err();
        assert!(error.to_string().contains("relam"), "{error}");
    }

    #[test]
    fn bad_duration_names_value() {
        let text = JWT.replace("\"60s\"", "\"soon\"");
        let error = parse(&text).unwrap_err();
        assert!(error.to_string().contains("\"soon\""), "{error}");
    }

    #[test]
    fn missing_audience_is_rejected() {
        let text = JWT.replace("audience = \"https://mcp.example.com\"", "");
        let error = parse(&text).unwrap().validate().unwrap_err();
        assert!(error.to_string().contains("auth.jwt.audience"), "{error}");
    }

    #[test]
    fn hmac_and_none_are_rejected() {
        for name in ["HS256", "none"] {
            let text = JWT.replace("[\"RS256\", \"ES256\"]", &format!("[\"{name}\"]"));
            let error = parse(&text).unwrap().validate().unwrap_err();
            let message = error.to_string();
            assert!(message.contains("auth.jwt.algorithms"), "{message}");
            assert!(message.contains(name), "{message}");
        }
    }

    #[test]
    fn plain_http_jwks_needs_loopback() {
        let remote = JWT.replace("https://idp", "http://idp");
        assert!(parse(&remote).unwrap().validate().is_err());
        let local = JWT.replace("https://idp.example.com/", "http://127.0.0.1:8080/");
        parse(&local).unwrap().validate().unwrap();
    }

    #[test]
    fn api_key_hash_must_be_hex() {
        let text = "[[auth.api_keys]]\nsha256 = \"abc\"\nsubject = \"bot\"\n";
        let error = parse(text).unwrap().validate().unwrap_err();
        assert!(
            error.to_string().contains("auth.api_keys[0].sha256"),
            "{error}"
        );
    }

    #[test]
    fn anonymous_route_with_scopes_is_rejected() {
        let text =
            format!("{JWT}\n[[auth.routes]]\npath = \"/x\"\nanonymous = true\nscopes = [\"a\"]\n");
        let error = parse(&text).unwrap().validate().unwrap_err();
        assert!(
            error.to_string().contains("auth.routes[0].scopes"),
            "{error}"
        );
    }

    #[test]
    fn no_credential_type_is_rejected() {
        let error = parse("[auth]\n").unwrap().validate().unwrap_err();
        assert!(matches!(error, AuthConfigError::Missing { .. }));
    }
}
