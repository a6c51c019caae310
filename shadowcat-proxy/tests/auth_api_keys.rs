//! API key authentication, anonymous routes and per-route scopes.

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};
use shadowcat_core::AuthMethod;
use shadowcat_proxy::auth::{AuthConfig, Authenticator, RejectReason};

fn sha256_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn config() -> AuthConfig {
    let text = format!(
        r#"
        [[api_keys]]
        sha256 = "{}"
        subject = "ci-bot"
        scopes = ["mcp:read"]

        [[api_keys]]
        sha256 = "{}"
        subject = "ops"
        scopes = ["mcp:read", "mcp:admin"]
        header = "x-ops-key"

        [[routes]]
        path = "/admin"
        scopes = ["mcp:admin"]

        [[routes]]
        path = "/health/*"
        anonymous = true
        "#,
        sha256_hex("ci-secret"),
        sha256_hex("ops-secret"),
    );
    toml::from_str(&text).unwrap()
}

fn header(name: &'static str, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static(name),
        HeaderValue::from_str(value).unwrap(),
    );
    headers
}

#[tokio::test]
async fn api_key_yields_configured_principal() {
    let authenticator = Authenticator::new(&config()).await.unwrap();
    let principal = authenticator
        .authenticate(&header("x-api-key", "ci-secret"), "/mcp")
        .await
        .unwrap();
    assert_eq!(principal.subject, "ci-bot");
    assert_eq!(principal.scopes, ["mcp:read"]);
    assert_eq!(principal.method, AuthMethod::ApiKey);
    assert_eq!(principal.issuer, None);
}

#[tokio::test]
async fn unknown_api_key_is_rejected() {
    let authenticator = Authenticator::new(&config()).await.unwrap();
    let rejection = authenticator
        .authenticate(&header("x-api-key", "guess"), "/mcp")
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::UnknownApiKey);
    assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED);
    let challenge = rejection.www_authenticate();
    assert_eq!(
        challenge,
        "Bearer realm=\"shadowcat\", error=\"invalid_token\""
    );
}

#[tokio::test]
async fn key_in_wrong_header_is_rejected() {
    let authenticator = Authenticator::new(&config()).await.unwrap();
    let rejection = authenticator
        .authenticate(&header("x-api-key", "ops-secret"), "/mcp")
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::UnknownApiKey);
    let ops = authenticator
        .authenticate(&header("x-ops-key", "ops-secret"), "/mcp")
        .await
        .unwrap();
    assert_eq!(ops.subject, "ops");
}

#[tokio::test]
async fn two_credentials_are_rejected() {
    let authenticator = Authenticator::new(&config()).await.unwrap();
    let mut both = header("x-api-key", "ci-secret");
    both.insert("x-ops-key", HeaderValue::from_static("ops-secret"));
    let rejection = authenticator.authenticate(&both, "/mcp").await.unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::MultipleCredentials);

    let mut malformed_and_key = header("x-api-key", "ci-secret");
    malformed_and_key.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a b"));
    let rejection = authenticator
        .authenticate(&malformed_and_key, "/mcp")
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::MultipleCredentials);

    let mut repeated = header("x-api-key", "ci-secret");
    repeated.append("x-api-key", HeaderValue::from_static("ci-secret"));
    let rejection = authenticator
        .authenticate(&repeated, "/mcp")
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::MultipleCredentials);
}

#[tokio::test]
async fn bearer_carries_api_key_without_jwt_config() {
    let authenticator = Authenticator::new(&config()).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer ci-secret"));
    let principal = authenticator.authenticate(&headers, "/mcp").await.unwrap();
    assert_eq!(principal.subject, "ci-bot");

    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_static("Bearer abc.def.ghi"),
    );
    let rejection = authenticator
        .authenticate(&headers, "/mcp")
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::UnknownApiKey);
}

#[tokio::test]
async fn route_scope_is_enforced() {
    let authenticator = Authenticator::new(&config()).await.unwrap();
    let rejection = authenticator
        .authenticate(&header("x-api-key", "ci-secret"), "/admin")
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::InsufficientScope);
    assert_eq!(rejection.required_scope(), Some("mcp:admin"));
    let response = rejection.to_response(None);
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        "Bearer realm=\"shadowcat\", error=\"insufficient_scope\", scope=\"mcp:admin\""
    );

    let ops = authenticator
        .authenticate(&header("x-ops-key", "ops-secret"), "/admin")
        .await
        .unwrap();
    assert_eq!(ops.subject, "ops");
}

#[tokio::test]
async fn anonymous_route_admits_no_credentials() {
    let authenticator = Authenticator::new(&config()).await.unwrap();
    let principal = authenticator
        .authenticate(&HeaderMap::new(), "/health/live")
        .await
        .unwrap();
    assert_eq!(principal.method, AuthMethod::Anonymous);
    assert_eq!(principal.subject, "anonymous");

    // A wrong key on an anonymous route is still a rejection.
    let rejection = authenticator
        .authenticate(&header("x-api-key", "guess"), "/health/live")
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::UnknownApiKey);

    // `*` stops at `/`, so a deeper path is not anonymous.
    let rejection = authenticator
        .authenticate(&HeaderMap::new(), "/health/live/deep")
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::MissingCredentials);
}

#[tokio::test]
async fn jwt_without_audience_fails_construction() {
    let config: AuthConfig = toml::from_str(
        r#"
        [jwt]
        issuer = "https://idp.test"
        jwks_url = "http://127.0.0.1:9/jwks"
        "#,
    )
    .unwrap();
    let error = Authenticator::new(&config).await.err().unwrap();
    assert!(error.to_string().contains("auth.jwt.audience"), "{error}");
}
