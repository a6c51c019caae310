//! JWT bearer authentication against a real JWKS served on 127.0.0.1.
//!
//! Signing keys are static PEM fixtures under `tests/fixtures/auth`, generated with
//! `openssl genpkey` (RSA 2048 and EC P-256); they protect nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::RwLock;
use serde_json::{Value, json};
use shadowcat_core::{AuthMethod, JsonRpcId, error_codes};
use shadowcat_proxy::auth::{AuthConfig, Authenticator, ManualClock, RejectReason};

const RSA_A: &[u8] = include_bytes!("fixtures/auth/rsa_a.key.pem");
const RSA_A_PUBLIC: &[u8] = include_bytes!("fixtures/auth/rsa_a.pub.pem");
const RSA_B: &[u8] = include_bytes!("fixtures/auth/rsa_b.key.pem");
const EC_A: &[u8] = include_bytes!("fixtures/auth/ec_a.key.pem");

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "https://mcp.test/mcp";
/// Fixed start of the fake clock, in Unix seconds.
const START: u64 = 1_800_000_000;
const COOLDOWN_SECS: u64 = 30;

fn rsa_key(pem: &[u8]) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem).unwrap()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_A).unwrap()
}

fn public_jwk(key: &EncodingKey, algorithm: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, algorithm).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn jwks(keys: Vec<Jwk>) -> Value {
    serde_json::to_value(JwkSet { keys }).unwrap()
}

/// A JWKS endpoint on 127.0.0.1 whose document tests can replace, counting fetches.
struct JwksServer {
    url: String,
    document: Arc<RwLock<Value>>,
    fetches: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct ServerState {
    document: Arc<RwLock<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn serve_jwks(State(state): State<ServerState>) -> axum::Json<Value> {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    axum::Json(state.document.read().clone())
}

impl JwksServer {
    async fn start(document: Value) -> Self {
        let state = ServerState {
            document: Arc::new(RwLock::new(document)),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        let app = Router::new()
            .route("/jwks", get(serve_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/jwks"),
            document: state.document,
            fetches: state.fetches,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn config(jwks_url: &str, extra: &str) -> AuthConfig {
    let text = format!(
        r#"
        realm = "mcp"
        {extra}

        [jwt]
        issuer = "{ISSUER}"
        audience = "{AUDIENCE}"
        jwks_url = "{jwks_url}"
        algorithms = ["RS256", "ES256"]
        leeway = "60s"
        jwks_refetch_cooldown = "{COOLDOWN_SECS}s"

        [resource_metadata]
        resource = "{AUDIENCE}"
        authorization_servers = ["{ISSUER}"]
        "#
    );
    toml::from_str(&text).unwrap()
}

fn clock() -> ManualClock {
    ManualClock::new(Duration::from_secs(START))
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "azp": "agent-app",
        "scope": "mcp:read mcp:write",
        "iat": START,
        "exp": START + 600,
    })
}

fn sign(claims: &Value, algorithm: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs256(claims: &Value) -> String {
    sign(claims, Algorithm::RS256, "rsa-a", &rsa_key(RSA_A))
}

fn with_claim(name: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[name] = value;
    claims
}

fn without_claim(name: &str) -> Value {
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

fn unsigned_token(header: Value, claims: &Value) -> String {
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
    format!("{}.{}.", encode(&header), encode(claims))
}

async fn standard_setup() -> (JwksServer, Authenticator, ManualClock) {
    let document = jwks(vec![
        public_jwk(&rsa_key(RSA_A), Algorithm::RS256, "rsa-a"),
        public_jwk(&ec_key(), Algorithm::ES256, "ec-a"),
    ]);
    let server = JwksServer::start(document).await;
    let clock = clock();
    let authenticator =
        Authenticator::with_clock(&config(&server.url, ""), Arc::new(clock.clone()))
            .await
            .unwrap();
    (server, authenticator, clock)
}

#[tokio::test]
async fn valid_tokens_yield_principal() {
    let (server, authenticator, _clock) = standard_setup().await;
    assert_eq!(server.fetches(), 1, "keys are fetched once at start");

    let rsa = authenticator
        .authenticate(&bearer(&rs256(&claims())), "/mcp")
        .await
        .unwrap();
    assert_eq!(rsa.subject, "alice");
    assert_eq!(rsa.issuer.as_deref(), Some(ISSUER));
    assert_eq!(rsa.client_id.as_deref(), Some("agent-app"));
    assert_eq!(rsa.scopes, ["mcp:read", "mcp:write"]);
    assert_eq!(rsa.method, AuthMethod::Jwt);

    let es = sign(&claims(), Algorithm::ES256, "ec-a", &ec_key());
    let principal = authenticator
        .authenticate(&bearer(&es), "/mcp")
        .await
        .unwrap();
    assert_eq!(principal.subject, "alice");
    assert_eq!(server.fetches(), 1, "known kids never trigger a fetch");
}

#[tokio::test]
async fn lowercase_scheme_and_audience_array_pass() {
    let (_server, authenticator, _clock) = standard_setup().await;
    let token = rs256(&with_claim("aud", json!(["other", AUDIENCE])));
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("bearer {token}")).unwrap(),
    );
    authenticator.authenticate(&headers, "/mcp").await.unwrap();
}

#[tokio::test]
async fn rejection_table() {
    let (_server, authenticator, _clock) = standard_setup().await;
    let rsa_public_as_secret = EncodingKey::from_secret(RSA_A_PUBLIC).unwrap();
    let mut two_headers = bearer(&rs256(&claims()));
    two_headers.append(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", rs256(&claims()))).unwrap(),
    );
    let tampered = {
        let mut bytes = rs256(&claims()).into_bytes();
        // A character in the middle of the signature, so every bit of it is used.
        let position = bytes.len() - 20;
        bytes[position] = if bytes[position] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let forged = {
        let other = rs256(&with_claim("sub", json!("mallory")));
        let payload = other.split('.').nth(1).unwrap().to_owned();
        let original = rs256(&claims());
        let parts: Vec<&str> = original.split('.').collect();
        format!("{}.{}.{}", parts[0], payload, parts[2])
    };

    let cases: Vec<(&str, HeaderMap, RejectReason)> = vec![
        (
            "expired",
            bearer(&rs256(&with_claim("exp", json!(START - 61)))),
            RejectReason::Expired,
        ),
        (
            "not yet valid",
            bearer(&rs256(&with_claim("nbf", json!(START + 61)))),
            RejectReason::NotYetValid,
        ),
        (
            "issued in the future",
            bearer(&rs256(&with_claim("iat", json!(START + 3600)))),
            RejectReason::NotYetValid,
        ),
        (
            "wrong issuer",
            bearer(&rs256(&with_claim("iss", json!("https://evil.test")))),
            RejectReason::WrongIssuer,
        ),
        (
            "missing audience",
            bearer(&rs256(&without_claim("aud"))),
            RejectReason::WrongAudience,
        ),
        (
            "wrong audience",
            bearer(&rs256(&with_claim("aud", json!("https://other.test")))),
            RejectReason::WrongAudience,
        ),
        (
            "missing exp",
            bearer(&rs256(&without_claim("exp"))),
            RejectReason::MissingExp,
        ),
        (
            "missing sub",
            bearer(&rs256(&without_claim("sub"))),
            RejectReason::MissingSubject,
        ),
        (
            "alg none",
            bearer(&unsigned_token(
                json!({"alg": "none", "kid": "rsa-a"}),
                &claims(),
            )),
            RejectReason::BadAlgorithm,
        ),
        (
            "HS256 with the RSA public key",
            bearer(&sign(
                &claims(),
                Algorithm::HS256,
                "rsa-a",
                &rsa_public_as_secret,
            )),
            RejectReason::BadAlgorithm,
        ),
        (
            "ES256 header on an RSA key",
            bearer(&sign(&claims(), Algorithm::ES256, "rsa-a", &ec_key())),
            RejectReason::BadAlgorithm,
        ),
        (
            "unknown kid",
            bearer(&sign(&claims(), Algorithm::RS256, "ghost", &rsa_key(RSA_A))),
            RejectReason::UnknownKid,
        ),
        (
            "signed by another key",
            bearer(&sign(&claims(), Algorithm::RS256, "rsa-a", &rsa_key(RSA_B))),
            RejectReason::BadSignature,
        ),
        (
            "tampered signature",
            bearer(&tampered),
            RejectReason::BadSignature,
        ),
        (
            "swapped payload",
            bearer(&forged),
            RejectReason::BadSignature,
        ),
        ("garbage", bearer("not-a-jwt"), RejectReason::Malformed),
        ("two dots only", bearer("a.b"), RejectReason::Malformed),
        (
            "critical header",
            bearer(&unsigned_token(
                json!({"alg": "RS256", "kid": "rsa-a", "crit": ["exp"]}),
                &claims(),
            )),
            RejectReason::Malformed,
        ),
        (
            "two Authorization headers",
            two_headers,
            RejectReason::MultipleCredentials,
        ),
        (
            "basic scheme",
            {
                let mut headers = HeaderMap::new();
                headers.insert(
                    AUTHORIZATION,
                    HeaderValue::from_static("Basic dXNlcjpwYXNz"),
                );
                headers
            },
            RejectReason::UnsupportedScheme,
        ),
    ];

    let metadata_url =
        "resource_metadata=\"https://mcp.test/.well-known/oauth-protected-resource/mcp\"";
    let id = JsonRpcId::Number(7.into());
    for (name, headers, expected) in cases {
        let rejection = authenticator
            .authenticate(&headers, "/mcp")
            .await
            .expect_err(name);
        assert_eq!(rejection.reason(), expected, "{name}");
        assert!(rejection.credentials_present(), "{name}");

        let response = rejection.to_response(Some(&id));
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
        let challenge = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        let expected_error = if expected == RejectReason::MultipleCredentials {
            "error=\"invalid_request\""
        } else {
            "error=\"invalid_token\""
        };
        assert!(
            challenge.starts_with("Bearer realm=\"mcp\""),
            "{name}: {challenge}"
        );
        assert!(challenge.contains(expected_error), "{name}: {challenge}");
        assert!(challenge.contains(metadata_url), "{name}: {challenge}");

        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["id"], 7, "{name}");
        assert_eq!(body["error"]["code"], error_codes::UNAUTHORIZED, "{name}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains(expected.as_str()),
            "{name}: body names the check"
        );
    }
}

#[tokio::test]
async fn missing_credentials_challenge_has_no_error() {
    let (_server, authenticator, _clock) = standard_setup().await;
    let rejection = authenticator
        .authenticate(&HeaderMap::new(), "/mcp")
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::MissingCredentials);
    assert!(!rejection.credentials_present());
    let response = rejection.to_response(None);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        "Bearer realm=\"mcp\", resource_metadata=\"https://mcp.test/.well-known/oauth-protected-resource/mcp\""
    );
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["id"], Value::Null);
}

#[tokio::test]
async fn leeway_admits_recent_expiry() {
    let (_server, authenticator, _clock) = standard_setup().await;
    let token = rs256(&with_claim("exp", json!(START - 59)));
    authenticator
        .authenticate(&bearer(&token), "/mcp")
        .await
        .unwrap();
    let early = rs256(&with_claim("nbf", json!(START + 59)));
    authenticator
        .authenticate(&bearer(&early), "/mcp")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_burst_fetches_once_per_cooldown() {
    let (server, authenticator, clock) = standard_setup().await;
    let authenticator = Arc::new(authenticator);
    assert_eq!(server.fetches(), 1);

    // Inside the cooldown after the start-up fetch: no fetch at all.
    let burst = |round: usize| {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let authenticator = Arc::clone(&authenticator);
                // The signature is never checked for an unknown kid, so skip signing.
                let header = json!({"alg": "RS256", "kid": format!("ghost-{round}-{i}")});
                let token = format!("{}AAAA", unsigned_token(header, &claims()));
                tokio::spawn(
                    async move { authenticator.authenticate(&bearer(&token), "/mcp").await },
                )
            })
            .collect();
        futures_util::future::join_all(tasks)
    };
    for result in burst(0).await {
        assert_eq!(
            result.unwrap().unwrap_err().reason(),
            RejectReason::UnknownKid
        );
    }
    assert_eq!(server.fetches(), 1);

    // After the cooldown: 50 concurrent misses share a single fetch.
    clock.advance(Duration::from_secs(COOLDOWN_SECS));
    for result in burst(1).await {
        assert_eq!(
            result.unwrap().unwrap_err().reason(),
            RejectReason::UnknownKid
        );
    }
    assert_eq!(server.fetches(), 2);

    // And the next burst falls inside the new cooldown window.
    clock.advance(Duration::from_secs(COOLDOWN_SECS - 1));
    for result in burst(2).await {
        assert_eq!(
            result.unwrap().unwrap_err().reason(),
            RejectReason::UnknownKid
        );
    }
    assert_eq!(server.fetches(), 2);
    assert_eq!(authenticator.stats().jwks_fetches, 2);
    assert_eq!(authenticator.stats().signature_verifications, 0);
}

#[tokio::test]
async fn rotated_key_works_after_cooldown() {
    let (server, authenticator, clock) = standard_setup().await;
    let rotated = sign(&claims(), Algorithm::RS256, "rsa-b", &rsa_key(RSA_B));

    *server.document.write() = jwks(vec![
        public_jwk(&rsa_key(RSA_A), Algorithm::RS256, "rsa-a"),
        public_jwk(&rsa_key(RSA_B), Algorithm::RS256, "rsa-b"),
    ]);
    let early = authenticator.authenticate(&bearer(&rotated), "/mcp").await;
    assert_eq!(early.unwrap_err().reason(), RejectReason::UnknownKid);
    assert_eq!(server.fetches(), 1, "no fetch inside the cooldown");

    clock.advance(Duration::from_secs(COOLDOWN_SECS));
    let principal = authenticator
        .authenticate(&bearer(&rotated), "/mcp")
        .await
        .unwrap();
    assert_eq!(principal.subject, "alice");
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn stale_jwks_is_refetched_after_ttl() {
    let (server, authenticator, clock) = standard_setup().await;
    let token = rs256(&with_claim("exp", json!(START + 3600)));
    authenticator
        .authenticate(&bearer(&token), "/mcp")
        .await
        .unwrap();

    // The key is withdrawn; after the TTL (5 min) the proxy notices.
    *server.document.write() = jwks(vec![public_jwk(&ec_key(), Algorithm::ES256, "ec-a")]);
    clock.advance(Duration::from_secs(301));
    let fresh = rs256(&with_claim("exp", json!(START + 3601)));
    let rejection = authenticator
        .authenticate(&bearer(&fresh), "/mcp")
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::UnknownKid);
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn token_cache_skips_signature_work() {
    let (_server, authenticator, _clock) = standard_setup().await;
    let token = rs256(&claims());
    let first = authenticator
        .authenticate(&bearer(&token), "/mcp")
        .await
        .unwrap();
    let second = authenticator
        .authenticate(&bearer(&token), "/mcp")
        .await
        .unwrap();
    assert_eq!(first, second);

    let stats = authenticator.stats();
    assert_eq!(stats.signature_verifications, 1);
    assert_eq!(stats.token_cache_hits, 1);
    assert_eq!(stats.cached_tokens, 1);
}

#[tokio::test]
async fn cached_token_never_outlives_exp() {
    let (_server, authenticator, clock) = standard_setup().await;
    let token = rs256(&with_claim("exp", json!(START + 30)));
    authenticator
        .authenticate(&bearer(&token), "/mcp")
        .await
        .unwrap();
    authenticator
        .authenticate(&bearer(&token), "/mcp")
        .await
        .unwrap();
    assert_eq!(authenticator.stats().signature_verifications, 1);

    // Past `exp` but inside the leeway: accepted, but only after a fresh check.
    clock.advance(Duration::from_secs(31));
    authenticator
        .authenticate(&bearer(&token), "/mcp")
        .await
        .unwrap();
    assert_eq!(authenticator.stats().signature_verifications, 2);

    // Past `exp` plus leeway: rejected, never served from the cache.
    clock.advance(Duration::from_secs(60));
    let rejection = authenticator
        .authenticate(&bearer(&token), "/mcp")
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::Expired);
}

#[tokio::test]
async fn route_scopes_and_anonymous_routes() {
    let document = jwks(vec![public_jwk(&rsa_key(RSA_A), Algorithm::RS256, "rsa-a")]);
    let server = JwksServer::start(document).await;
    let routes = r#"
        [[routes]]
        path = "/admin/**"
        scopes = ["mcp:admin"]

        [[routes]]
        path = "/public"
        anonymous = true
    "#;
    let authenticator = Authenticator::with_clock(&config(&server.url, routes), Arc::new(clock()))
        .await
        .unwrap();
    let token = rs256(&claims());

    let rejection = authenticator
        .authenticate(&bearer(&token), "/admin/mcp")
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::InsufficientScope);
    let response = rejection.to_response(Some(&JsonRpcId::String("a".into())));
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"mcp:admin\""), "{challenge}");
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["error"]["code"], error_codes::FORBIDDEN);

    let admin = rs256(&with_claim("scp", json!(["mcp:admin"])));
    authenticator
        .authenticate(&bearer(&admin), "/admin/mcp")
        .await
        .unwrap();

    let anonymous = authenticator
        .authenticate(&HeaderMap::new(), "/public")
        .await
        .unwrap();
    assert_eq!(anonymous.method, AuthMethod::Anonymous);
    let invalid = authenticator
        .authenticate(&bearer("garbage"), "/public")
        .await;
    assert_eq!(invalid.unwrap_err().reason(), RejectReason::Malformed);
    let missing = authenticator.authenticate(&HeaderMap::new(), "/mcp").await;
    assert_eq!(
        missing.unwrap_err().reason(),
        RejectReason::MissingCredentials
    );
}

#[tokio::test]
async fn static_pem_and_jwks_file_keys() {
    let directory = tempfile::tempdir().unwrap();
    let pem_path = directory.path().join("ec.pub.pem");
    std::fs::write(&pem_path, include_bytes!("fixtures/auth/ec_a.pub.pem")).unwrap();
    let jwks_path = directory.path().join("jwks.json");
    let file_jwks = jwks(vec![public_jwk(&rsa_key(RSA_B), Algorithm::RS256, "rsa-b")]);
    std::fs::write(&jwks_path, file_jwks.to_string()).unwrap();

    let text = format!(
        r#"
        [jwt]
        issuer = "{ISSUER}"
        audience = "{AUDIENCE}"
        jwks_file = "{}"
        public_keys = [{{ kid = "ec-static", pem_file = "{}", algorithm = "ES256" }}]
        "#,
        jwks_path.display(),
        pem_path.display()
    );
    let config: AuthConfig = toml::from_str(&text).unwrap();
    let authenticator = Authenticator::with_clock(&config, Arc::new(clock()))
        .await
        .unwrap();

    let es = sign(&claims(), Algorithm::ES256, "ec-static", &ec_key());
    authenticator
        .authenticate(&bearer(&es), "/mcp")
        .await
        .unwrap();
    let rs = sign(&claims(), Algorithm::RS256, "rsa-b", &rsa_key(RSA_B));
    authenticator
        .authenticate(&bearer(&rs), "/mcp")
        .await
        .unwrap();

    // The static key verifies ES256 only, whatever algorithm the token header names.
    let wrong = sign(&claims(), Algorithm::RS256, "ec-static", &rsa_key(RSA_A));
    let rejection = authenticator
        .authenticate(&bearer(&wrong), "/mcp")
        .await
        .unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::BadAlgorithm);
    assert!(authenticator.resource_metadata().is_none());
}

#[tokio::test]
async fn missing_pem_file_names_field() {
    let text = format!(
        r#"
        [jwt]
        issuer = "{ISSUER}"
        audience = "{AUDIENCE}"
        public_keys = [{{ kid = "k", pem_file = "/nonexistent/key.pem", algorithm = "RS256" }}]
        "#
    );
    let config: AuthConfig = toml::from_str(&text).unwrap();
    let error = Authenticator::new(&config).await.err().unwrap();
    let message = error.to_string();
    assert!(
        message.contains("auth.jwt.public_keys[0].pem_file"),
        "{message}"
    );
    assert!(message.contains("/nonexistent/key.pem"), "{message}");
}

#[tokio::test]
async fn resource_metadata_document() {
    let (_server, authenticator, _clock) = standard_setup().await;
    let metadata = authenticator.resource_metadata().unwrap();
    assert_eq!(metadata.document()["resource"], AUDIENCE);
    assert_eq!(
        metadata.document()["authorization_servers"],
        json!([ISSUER])
    );
    assert_eq!(
        metadata.document()["bearer_methods_supported"],
        json!(["header"])
    );
    assert_eq!(
        metadata.paths(),
        [
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-protected-resource/mcp"
        ]
    );
}
