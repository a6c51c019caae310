//! The pre-authentication layer in front of a real tower service.

mod common;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use http::header::{RETRY_AFTER, USER_AGENT};
use http::{Request, Response, StatusCode};
use serde_json::json;
use shadowcat_ratelimit::{
    ClientIp, FakeRelativeClock, PreAuthLayer, PreAuthRejection, RATELIMIT, RATELIMIT_POLICY,
    RejectionRenderer, ResponseConfig, Tier,
};
use tower::{Layer, Service, ServiceExt};

type Body = Vec<u8>;

/// Builds the layered service and a counter of requests that reached the inner service.
fn service(
    section: serde_json::Value,
    renderer: RejectionRenderer,
) -> (
    impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
    Arc<AtomicUsize>,
    FakeRelativeClock,
    Arc<TestLimiter>,
) {
    let (limiter, clock) = limiter(section);
    let limiter = Arc::new(limiter);
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&reached);
    let inner = tower::service_fn(move |_request: Request<Body>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(b"ok".to_vec())) }
    });
    let layer = PreAuthLayer::new(Arc::clone(&limiter), Arc::new(renderer));
    (layer.layer(inner), reached, clock, limiter)
}

fn request_from(ip: &str) -> Request<Body> {
    let mut request = Request::post("/mcp").body(Vec::new()).unwrap();
    let ip: IpAddr = ip.parse().unwrap();
    request.extensions_mut().insert(ClientIp(ip));
    request
}

#[tokio::test]
async fn flood_is_rejected_before_inner_service() {
    let (service, reached, clock, _limiter) = service(
        json!({"pre_auth": quota(60, "1m", 2)}),
        RejectionRenderer::default(),
    );

    for _ in 0..2 {
        let response = service
            .clone()
            .oneshot(request_from("192.0.2.1"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = service
        .clone()
        .oneshot(request_from("192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    assert_eq!(
        response.headers()[RATELIMIT_POLICY],
        "\"pre_auth\";q=60;w=60"
    );
    assert_eq!(response.headers()[RATELIMIT], "\"pre_auth\";r=0;t=1");
    let rejection = response.extensions().get::<PreAuthRejection>().unwrap();
    assert_eq!(rejection.0.tier, Tier::PreAuth);
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["error"]["code"], -32000);
    assert_eq!(body["id"], serde_json::Value::Null);
    assert_eq!(reached.load(Ordering::SeqCst), 2);

    // Other clients are unaffected, and the flooded one recovers after Retry-After.
    let other = service
        .clone()
        .oneshot(request_from("192.0.2.2"))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    clock.advance(Duration::from_secs(1));
    let again = service
        .clone()
        .oneshot(request_from("192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(reached.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn failed_authentications_close_the_door() {
    let (service, reached, _clock, limiter) = service(
        json!({"pre_auth": quota(600, "1m", 100), "auth_failures": quota(2, "1m", 2)}),
        RejectionRenderer::default(),
    );
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    for _ in 0..2 {
        let response = service
            .clone()
            .oneshot(request_from("192.0.2.1"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // In the proxy, authentication runs after this layer; here it is taken as failed.
        assert!(limiter.record_auth_failure(ip).is_allowed());
    }
    let response = service
        .clone()
        .oneshot(request_from("192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[RETRY_AFTER], "30");
    let rejection = response.extensions().get::<PreAuthRejection>().unwrap();
    assert_eq!(rejection.0.tier, Tier::AuthFailure);
    assert_eq!(reached.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn configured_agents_get_status_200() {
    let renderer = RejectionRenderer::new(&ResponseConfig {
        ok_status_user_agents: vec!["LegacyAgent".into()],
    })
    .unwrap();
    let (service, _reached, _clock, _limiter) =
        service(json!({"pre_auth": quota(60, "1m", 1)}), renderer);
    let mut first = request_from("192.0.2.1");
    first
        .headers_mut()
        .insert(USER_AGENT, "LegacyAgent/2".parse().unwrap());
    assert_eq!(
        service.clone().oneshot(first).await.unwrap().status(),
        StatusCode::OK
    );

    let mut second = request_from("192.0.2.1");
    second
        .headers_mut()
        .insert(USER_AGENT, "LegacyAgent/2".parse().unwrap());
    let response = service.clone().oneshot(second).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    assert!(response.extensions().get::<PreAuthRejection>().is_some());
}

#[tokio::test]
async fn request_without_client_ip_passes() {
    let (service, reached, _clock, _limiter) = service(
        json!({"pre_auth": quota(60, "1m", 1)}),
        RejectionRenderer::default(),
    );
    for _ in 0..3 {
        let request = Request::post("/mcp").body(Vec::new()).unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(reached.load(Ordering::SeqCst), 3);
}
