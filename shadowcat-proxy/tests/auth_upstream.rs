//! Upstream credentials: the client-credentials grant against a token endpoint on
//! 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::AUTHORIZATION;
use serde_json::{Value, json};
use shadowcat_proxy::auth::{
    ManualClock, UpstreamAuthError, UpstreamCredential, UpstreamCredentialConfig,
};

#[derive(Clone, Default)]
struct Endpoint {
    requests: Arc<AtomicUsize>,
    /// Status to respond with. 200 issues a token.
    status: Arc<AtomicU16>,
    /// Last form body and Authorization header seen.
    last: Arc<parking_lot::Mutex<(String, String)>>,
}

async fn token(
    State(endpoint): State<Endpoint>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    let number = endpoint.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let authorization = headers
        .get(AUTHORIZATION)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    *endpoint.last.lock() = (body, authorization);
    // Yield so concurrent callers pile up behind the one request in flight.
    tokio::task::yield_now().await;

    let status = StatusCode::from_u16(endpoint.status.load(Ordering::SeqCst)).unwrap();
    if status != StatusCode::OK {
        return (status, axum::Json(json!({"error": "invalid_client"})));
    }
    let body = json!({
        "access_token": format!("token-{number}"),
        "token_type": "Bearer",
        "expires_in": 120,
    });
    (status, axum::Json(body))
}

async fn start_endpoint() -> (String, Endpoint) {
    let endpoint = Endpoint::default();
    endpoint.status.store(200, Ordering::SeqCst);
    let app = Router::new()
        .route("/token", post(token))
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/token"), endpoint)
}

fn grant_config(url: &str, auth_method: &str) -> UpstreamCredentialConfig {
    toml::from_str(&format!(
        r#"
        type = "client_credentials"
        token_url = "{url}"
        client_id = "shadowcat"
        client_secret = "s3cret:x"
        scope = "mcp:call"
        auth_method = "{auth_method}"
        refresh_before = "60s"
        "#
    ))
    .unwrap()
}

async fn header_value(credential: &UpstreamCredential) -> String {
    let (name, value) = credential.authorization().await.unwrap().unwrap();
    assert_eq!(name, AUTHORIZATION);
    value.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn token_is_cached_and_refreshed_before_expiry() {
    let (url, endpoint) = start_endpoint().await;
    let clock = ManualClock::new(Duration::from_secs(1_000));
    let credential =
        UpstreamCredential::with_clock(&grant_config(&url, "basic"), Arc::new(clock.clone()))
            .unwrap();

    assert_eq!(header_value(&credential).await, "Bearer token-1");
    let (body, authorization) = endpoint.last.lock().clone();
    assert!(body.contains("grant_type=client_credentials"), "{body}");
    assert!(body.contains("scope=mcp%3Acall"), "{body}");
    let expected_basic = format!("Basic {}", STANDARD.encode("shadowcat:s3cret%3Ax"));
    assert_eq!(authorization, expected_basic);

    clock.advance(Duration::from_secs(59));
    assert_eq!(header_value(&credential).await, "Bearer token-1");
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 1);

    // 120 s lifetime minus the 60 s margin: due for refresh at 60 s.
    clock.advance(Duration::from_secs(1));
    assert_eq!(header_value(&credential).await, "Bearer token-2");
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_request() {
    let (url, endpoint) = start_endpoint().await;
    let clock = ManualClock::new(Duration::from_secs(1_000));
    let credential = Arc::new(
        UpstreamCredential::with_clock(&grant_config(&url, "basic"), Arc::new(clock)).unwrap(),
    );
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let credential = Arc::clone(&credential);
            tokio::spawn(async move { header_value(&credential).await })
        })
        .collect();
    for value in futures_util::future::join_all(tasks).await {
        assert_eq!(value.unwrap(), "Bearer token-1");
    }
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn post_method_sends_secret_in_body() {
    let (url, endpoint) = start_endpoint().await;
    let credential = UpstreamCredential::from_config(&grant_config(&url, "post")).unwrap();
    header_value(&credential).await;
    let (body, authorization) = endpoint.last.lock().clone();
    assert!(body.contains("client_id=shadowcat"), "{body}");
    assert!(body.contains("client_secret=s3cret%3Ax"), "{body}");
    assert_eq!(authorization, "");
}

#[tokio::test]
async fn endpoint_error_is_reported_and_current_token_kept() {
    let (url, endpoint) = start_endpoint().await;
    let clock = ManualClock::new(Duration::from_secs(1_000));
    let credential =
        UpstreamCredential::with_clock(&grant_config(&url, "basic"), Arc::new(clock.clone()))
            .unwrap();
    assert_eq!(header_value(&credential).await, "Bearer token-1");

    // Refresh due but failing: the unexpired token is still used.
    endpoint.status.store(401, Ordering::SeqCst);
    clock.advance(Duration::from_secs(90));
    assert_eq!(header_value(&credential).await, "Bearer token-1");

    // Expired and failing: the error reaches the caller.
    clock.advance(Duration::from_secs(30));
    let error = credential.authorization().await.unwrap_err();
    match error {
        UpstreamAuthError::Status { status, error } => {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(error, "invalid_client");
        }
        other => panic!("expected a status error, got {other}"),
    }
}

#[tokio::test]
async fn static_header_from_env_and_none() {
    let none = UpstreamCredential::from_config(&UpstreamCredentialConfig::None).unwrap();
    assert!(none.authorization().await.unwrap().is_none());

    // PATH is set in every test environment; setting a variable is unsafe in Rust 2024.
    let config: UpstreamCredentialConfig =
        toml::from_str("type = \"header\"\nname = \"x-api-key\"\nvalue_env = \"PATH\"").unwrap();
    let credential = UpstreamCredential::from_config(&config).unwrap();
    let (name, value) = credential.authorization().await.unwrap().unwrap();
    assert_eq!(name, "x-api-key");
    assert_eq!(value, std::env::var("PATH").unwrap().as_str());
}

#[test]
fn remote_plain_http_token_url_is_rejected() {
    let config = grant_config("http://idp.test/token", "basic");
    let error = UpstreamCredential::from_config(&config).unwrap_err();
    assert!(
        error.to_string().contains("upstream.auth.token_url"),
        "{error}"
    );
}
