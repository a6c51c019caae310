//! The reason a request failed authentication, and the 401/403 response built from it.

use std::fmt;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use shadowcat_core::{JsonRpcId, error_codes, error_response};

/// The check that rejected a request, for audit records and metrics.
///
/// Never sent to the client: the response body is the same for every reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// No credentials on a route that requires them.
    MissingCredentials,
    /// More than one `Authorization` header, or a bearer token and an API key together.
    MultipleCredentials,
    /// An `Authorization` scheme other than `Bearer`, or a bearer token where none is
    /// accepted.
    UnsupportedScheme,
    /// The credential is not a well-formed JWT or carries claims of the wrong type.
    Malformed,
    /// The token's `alg` is `none`, HMAC, not allowed, or not the key's algorithm.
    BadAlgorithm,
    /// No configured or published key has the token's `kid`.
    UnknownKid,
    /// The signature does not verify with the key.
    BadSignature,
    /// The token has no `exp` claim.
    MissingExp,
    /// `exp` is in the past, beyond the leeway.
    Expired,
    /// `nbf` or `iat` is in the future, beyond the leeway.
    NotYetValid,
    /// `iss` is missing or not the configured issuer.
    WrongIssuer,
    /// `aud` is missing or does not contain the configured audience.
    WrongAudience,
    /// The token has no `sub` claim.
    MissingSubject,
    /// The principal lacks a scope the route requires.
    InsufficientScope,
    /// The API key matches no configured key hash.
    UnknownApiKey,
}

impl RejectReason {
    /// Returns the reason's name as written in audit records.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::MultipleCredentials => "multiple_credentials",
            Self::UnsupportedScheme => "unsupported_scheme",
            Self::Malformed => "malformed",
            Self::BadAlgorithm => "bad_algorithm",
            Self::UnknownKid => "unknown_kid",
            Self::BadSignature => "bad_signature",
            Self::MissingExp => "missing_exp",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingSubject => "missing_subject",
            Self::InsufficientScope => "insufficient_scope",
            Self::UnknownApiKey => "unknown_api_key",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fixed parameters of every challenge: realm and metadata URL.
#[derive(Debug)]
pub(crate) struct Challenge {
    pub(crate) realm: String,
    pub(crate) resource_metadata: Option<String>,
}

/// A failed authentication.
///
/// [`AuthRejection::to_response`] builds the response. Its status is `401`, except
/// [`RejectReason::InsufficientScope`], which is `403` as RFC 6750 section 3.1 requires.
#[derive(Debug, Clone)]
pub struct AuthRejection {
    reason: RejectReason,
    credentials_present: bool,
    required_scope: Option<Arc<str>>,
    challenge: Arc<Challenge>,
}

/// JSON-RPC error message for every 401: it never names the failed check.
const UNAUTHORIZED_MESSAGE: &str = "unauthorized: send valid credentials";
/// JSON-RPC error message for a 403 caused by a missing scope.
const INSUFFICIENT_SCOPE_MESSAGE: &str = "forbidden: the token lacks a required scope";

impl AuthRejection {
    pub(crate) fn new(
        reason: RejectReason,
        credentials_present: bool,
        challenge: Arc<Challenge>,
    ) -> Self {
        Self {
            reason,
            credentials_present,
            required_scope: None,
            challenge,
        }
    }

    pub(crate) fn insufficient_scope(required_scope: Arc<str>, challenge: Arc<Challenge>) -> Self {
        Self {
            reason: RejectReason::InsufficientScope,
            credentials_present: true,
            required_scope: Some(required_scope),
            challenge,
        }
    }

    /// Returns the check that failed, for the `auth.failure` audit record.
    pub fn reason(&self) -> RejectReason {
        self.reason
    }

    /// Returns true if the request carried credentials (valid or not).
    pub fn credentials_present(&self) -> bool {
        self.credentials_present
    }

    /// Returns the space-separated scopes the route requires, for an
    /// insufficient-scope rejection.
    pub fn required_scope(&self) -> Option<&str> {
        self.required_scope.as_deref()
    }

    /// Returns the HTTP status: `403` for a missing scope, `401` otherwise.
    pub fn status(&self) -> StatusCode {
        match self.reason {
            RejectReason::InsufficientScope => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// Builds the `WWW-Authenticate` value (RFC 6750 section 3).
    ///
    /// `Bearer realm="...", error="invalid_token", resource_metadata="<url>"`, where
    /// `error` is absent when no credentials were sent, `invalid_request` for several
    /// credentials, and `insufficient_scope` (with `scope="..."`) for a missing scope.
    pub fn www_authenticate(&self) -> HeaderValue {
        let mut value = format!("Bearer realm=\"{}\"", self.challenge.realm);
        let error = match (self.credentials_present, self.reason) {
            (false, _) => None,
            (true, RejectReason::MultipleCredentials) => Some("invalid_request"),
            (true, RejectReason::InsufficientScope) => Some("insufficient_scope"),
            (true, _) => Some("invalid_token"),
        };
        if let Some(error) = error {
            value.push_str(", error=\"");
            value.push_str(error);
            value.push('"');
        }
        if let Some(scope) = &self.required_scope {
            value.push_str(", scope=\"");
            value.push_str(scope);
            value.push('"');
        }
        if let Some(url) = &self.challenge.resource_metadata {
            value.push_str(", resource_metadata=\"");
            value.push_str(url);
            value.push('"');
        }
        // Realm, scopes and URL were checked to be printable ASCII at load time.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    /// Builds the JSON-RPC error object for request `id` (`null` when unknown).
    ///
    /// The message is the same for every reason except a missing scope, so a client
    /// cannot probe which check failed.
    pub fn error_body(&self, id: Option<&JsonRpcId>) -> serde_json::Value {
        match &self.required_scope {
            Some(scope) => error_response(
                id,
                error_codes::FORBIDDEN,
                INSUFFICIENT_SCOPE_MESSAGE,
                Some(serde_json::json!({ "required_scope": &**scope })),
            ),
            None => error_response(id, error_codes::UNAUTHORIZED, UNAUTHORIZED_MESSAGE, None),
        }
    }

    /// Builds the full response: status, `WWW-Authenticate`, and a JSON body with the
    /// JSON-RPC error for request `id`.
    pub fn to_response(&self, id: Option<&JsonRpcId>) -> Response<Vec<u8>> {
        let body = serde_json::to_vec(&self.error_body(id)).unwrap_or_default();
        let mut response = Response::new(body);
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(WWW_AUTHENTICATE, self.www_authenticate());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "authentication failed: {}", self.reason)
    }
}

impl std::error::Error for AuthRejection {}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge() -> Arc<Challenge> {
        Arc::new(Challenge {
            realm: "mcp".to_owned(),
            resource_metadata: Some(
                "https://mcp.example.com/.well-known/oauth-protected-resource".to_owned(),
            ),
        })
    }

    #[test]
    fn missing_credentials_challenge_has_no_error() {
        let rejection = AuthRejection::new(RejectReason::MissingCredentials, false, challenge());
        assert_eq!(
            rejection.www_authenticate(),
            "Bearer realm=\"mcp\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource\""
        );
    }

    #[test]
    fn invalid_token_challenge_names_error() {
        let rejection = AuthRejection::new(RejectReason::Expired, true, challenge());
        let value = rejection.www_authenticate();
        assert!(value.to_str().unwrap().contains("error=\"invalid_token\""));
        assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn body_hides_reason() {
        let id = JsonRpcId::Number(4.into());
        let expired = AuthRejection::new(RejectReason::Expired, true, challenge());
        let forged = AuthRejection::new(RejectReason::BadSignature, true, challenge());
        assert_eq!(expired.error_body(Some(&id)), forged.error_body(Some(&id)));
        assert_eq!(expired.error_body(Some(&id))["id"], 4);
        assert_eq!(
            expired.error_body(None)["error"]["code"],
            error_codes::UNAUTHORIZED
        );
    }

    #[test]
    fn insufficient_scope_is_forbidden() {
        let rejection = AuthRejection::insufficient_scope("mcp:write".into(), challenge());
        assert_eq!(rejection.status(), StatusCode::FORBIDDEN);
        let value = rejection.www_authenticate();
        let text = value.to_str().unwrap();
        assert!(text.contains("error=\"insufficient_scope\""), "{text}");
        assert!(text.contains("scope=\"mcp:write\""), "{text}");
    }
}
