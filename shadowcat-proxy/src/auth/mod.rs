//! Authentication: who is calling.
//!
//! [`Authenticator`] turns request headers into a [`Principal`](shadowcat_core::Principal)
//! or an [`AuthRejection`]. It accepts JWT bearer tokens, verified with keys from a JWKS
//! URL, a JWKS file or static PEM files, and API keys configured as SHA-256 hashes.
//! Validated tokens are cached by their SHA-256 until their `exp`, so a repeat request
//! skips the signature check.
//!
//! [`UpstreamCredential`] is the other direction: the credential the proxy sends to an
//! upstream MCP server. Client tokens are never forwarded.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use shadowcat_proxy::auth::{AuthConfig, Authenticator, RejectReason};
//!
//! let config: AuthConfig = toml::from_str(r#"
//!     [[api_keys]]
//!     # SHA-256 of "secret-key"
//!     sha256 = "85dbe15d75ef9308c7ae0f33c7a324cc6f4bf519a2ed2f3027bd33c140a4f9aa"
//!     subject = "ci-bot"
//! "#)?;
//! let authenticator = Authenticator::new(&config).await?;
//! let rejection = authenticator
//!     .authenticate(&http::HeaderMap::new(), "/mcp")
//!     .await
//!     .unwrap_err();
//! assert_eq!(rejection.reason(), RejectReason::MissingCredentials);
//! assert_eq!(rejection.status(), http::StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```

mod api_key;
mod authenticator;
mod clock;
mod config;
mod jwt;
mod keys;
mod metadata;
mod rejection;
mod routes;
mod token_cache;
mod upstream;

pub use authenticator::{AuthStats, Authenticator};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    ApiKeyConfig, AuthConfig, AuthConfigError, DEFAULT_API_KEY_HEADER, DEFAULT_JWKS_FETCH_TIMEOUT,
    DEFAULT_JWKS_REFETCH_COOLDOWN, DEFAULT_JWKS_TTL, DEFAULT_LEEWAY, DEFAULT_REALM,
    DEFAULT_TOKEN_CACHE_MAX_ENTRIES, JwtConfig, PublicKeyConfig, ResourceMetadataConfig,
    RouteConfig,
};
pub use jwt::MAX_TOKEN_BYTES;
pub use metadata::{ResourceMetadata, WELL_KNOWN_PATH};
pub use rejection::{AuthRejection, RejectReason};
pub use upstream::{
    ClientAuthMethod, ClientCredentials, ClientCredentialsConfig, DEFAULT_REFRESH_BEFORE,
    DEFAULT_TOKEN_TIMEOUT, StaticHeaderConfig, UpstreamAuthError, UpstreamCredential,
    UpstreamCredentialConfig,
};
