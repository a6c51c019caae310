use std::fmt;

use serde::{Deserialize, Serialize};

/// The way a caller proved its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A JWT bearer token validated against the configured keys.
    Jwt,
    /// An API key that matched one of the configured key hashes.
    ApiKey,
    /// No credentials, on a route that allows anonymous access.
    Anonymous,
}

impl AuthMethod {
    /// Returns the method's name as written in config and audit records.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::Anonymous => "anonymous",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verified identity of a caller, produced by authentication.
///
/// Rate limits per subject and audit records key on this value only, never on raw header
/// text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The subject: the JWT `sub` claim, the API key's configured subject, or
    /// `anonymous`.
    pub subject: String,
    /// The JWT `iss` claim, if the caller used a JWT.
    pub issuer: Option<String>,
    /// The OAuth client id (`client_id` or `azp` claim), if known.
    pub client_id: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The authentication method used.
    pub method: AuthMethod,
}

impl Principal {
    /// Builds the principal used for unauthenticated callers on anonymous routes.
    pub fn anonymous() -> Self {
        Self {
            subject: "anonymous".to_owned(),
            issuer: None,
            client_id: None,
            scopes: Vec::new(),
            method: AuthMethod::Anonymous,
        }
    }

    /// Returns true if the principal was granted `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| granted == scope)
    }
}
