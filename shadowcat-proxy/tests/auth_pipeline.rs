//! Authentication and policy through the real proxy: 401s with their challenge, subjects
//! in limits and audit records, denials, and list filtering seen by a real rmcp client.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use common::{first_message, mcp_post, modern_call, raw_client};

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "https://mcp.test";
const API_KEY: &str = "key-for-alice";

fn auth_toml() -> String {
    let key_hash = hex::encode(Sha256::digest(API_KEY.as_bytes()));
    let public_key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/auth/rsa_a.pub.pem"
    );
    format!(
        r#"
        [auth]
        realm = "shadowcat-test"

        [auth.jwt]
        issuer = "{ISSUER}"
        audience = "{AUDIENCE}"
        algorithms = ["RS256"]
        public_keys = [{{ kid = "a", pem_file = "{public_key}", algorithm = "RS256" }}]

        [[auth.api_keys]]
        sha256 = "{key_hash}"
        subject = "alice"
        scopes = ["tools"]

        [auth.resource_metadata]
        resource = "{AUDIENCE}"
        authorization_servers = ["{ISSUER}"]
        scopes_supported = ["tools"]
        "#
    )
}

fn token(subject: &str) -> String {
    let key = EncodingKey::from_rsa_pem(include_bytes!("fixtures/auth/rsa_a.key.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("a".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": subject,
        "exp": now + 3600, "iat": now, "scope": "tools"
    });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn config_with(upstream: &str, extra: &str) -> shadowcat_proxy::config::Config {
    let text = format!("[upstream]\nurl = \"{upstream}\"\n{}\n{extra}", auth_toml());
    shadowcat_proxy::config::Config::parse(&text).unwrap()
}

#[tokio::test]
async fn missing_token_gets_challenge_and_id() {
    let (upstream, counter, _server) = common::start_counting_upstream().await;
    let proxy = common::start_proxy(config_with(&upstream, "")).await;
    let body = modern_call(json!(41), "alpha", json!({}));
    let response = common::modern_post(&raw_client(), &proxy.url, &body).await;
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    assert!(
        !challenge.contains("error="),
        "no credentials means no error code: {challenge}"
    );
    let error = first_message(response).await;
    assert_eq!(error["id"], 41);
    assert_eq!(error["error"]["code"], -32004);
    assert_eq!(counter.alpha.load(Ordering::SeqCst), 0);

    let bad = common::mcp_post(&raw_client(), &proxy.url)
        .header("mcp-protocol-version", common::MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "alpha")
        .header("authorization", "Bearer not.a.token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let challenge = bad.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
}

#[tokio::test]
async fn protected_resource_metadata_is_served() {
    let (upstream, _counter, _server) = common::start_counting_upstream().await;
    let proxy = common::start_proxy(config_with(&upstream, "")).await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let url = format!("http://{}{path}", proxy.addr);
        let response = raw_client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let document: Value = response.json().await.unwrap();
        assert_eq!(document["resource"], AUDIENCE);
        assert_eq!(document["authorization_servers"][0], ISSUER);
    }
}

#[tokio::test]
async fn jwt_and_api_key_reach_upstream() {
    let (upstream, counter, _server) = common::start_counting_upstream().await;
    let proxy = common::start_proxy(config_with(&upstream, "")).await;
    let body = modern_call(json!(1), "alpha", json!({}));
    for credential in [
        format!("Bearer {}", token("bob")),
        format!("Bearer {API_KEY}"),
    ] {
        let response = common::mcp_post(&raw_client(), &proxy.url)
            .header("mcp-protocol-version", common::MODERN)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "alpha")
            .header("authorization", credential)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(counter.alpha.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn policy_denies_and_filters_tool_list() {
    let (upstream, counter, _server) = common::start_counting_upstream().await;
    let policy = r#"
        [policy]
        default = "deny"

        [[policy.rules]]
        id = "no-beta"
        action = "deny"
        tools = ["beta"]
        reason = "beta is internal"

        [[policy.rules]]
        id = "members"
        action = "allow"
        subjects = ["alice"]
        reason = "alice may use the rest"
    "#;
    let proxy = common::start_proxy(config_with(&upstream, policy)).await;

    let mut headers = HashMap::new();
    headers.insert(
        HeaderName::from_static("authorization"),
        HeaderValue::from_str(&format!("Bearer {API_KEY}")).unwrap(),
    );
    let config =
        StreamableHttpClientTransportConfig::with_uri(proxy.url.clone()).custom_headers(headers);
    let transport = StreamableHttpClientTransport::from_config(config);
    let client = ().serve(transport).await.expect("alice connects");
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<_> = tools.iter().map(|tool| tool.name.to_string()).collect();
    assert_eq!(names, ["alpha"], "the denied tool is hidden");
    client.cancel().await.unwrap();

    let response = common::mcp_post(&raw_client(), &proxy.url)
        .header("mcp-protocol-version", common::MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "beta")
        .header("authorization", format!("Bearer {API_KEY}"))
        .json(&modern_call(json!(5), "beta", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let error = first_message(response).await;
    assert_eq!(error["id"], 5);
    assert_eq!(error["error"]["code"], -32003);
    assert_eq!(counter.beta.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn new_sessions_do_not_escape_subject_limit() {
    let (upstream, counter, _server) = common::start_counting_upstream().await;
    let limits = "[ratelimit.tiers.subject]\nrequests = 3\nper = \"1h\"\nburst = 3\n";
    let proxy = common::start_proxy(config_with(&upstream, limits)).await;
    let client = reqwest::Client::builder()
        .default_headers({
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(
                "authorization",
                format!("Bearer {API_KEY}").parse().unwrap(),
            );
            headers
        })
        .build()
        .unwrap();

    let mut statuses = Vec::new();
    for n in 0..3 {
        // Each initialize and notification costs the subject too, so mint sessions
        // and call once per session until the subject runs out.
        let Some(session) = try_initialize(&client, &proxy.url).await else {
            statuses.push(429);
            continue;
        };
        let call = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "alpha", "arguments": {}}});
        let response = common::session_post(&client, &proxy.url, &session, &call).await;
        statuses.push(response.status().as_u16());
    }
    // Session 1: initialize and one call use 2 of 3. Session 2: initialize uses the
    // last unit, so its call is limited. Session 3 cannot even be created.
    assert_eq!(statuses, [200, 429, 429]);
    assert_eq!(counter.alpha.load(Ordering::SeqCst), 1);
}

async fn try_initialize(client: &reqwest::Client, url: &str) -> Option<String> {
    let body = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "loop", "version": "1"}}
    });
    let response = mcp_post(client, url).json(&body).send().await.unwrap();
    if response.status() != 200 {
        return None;
    }
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = response.text().await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = mcp_post(client, url)
        .header("mcp-session-id", &session)
        .json(&initialized)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    Some(session)
}

#[tokio::test]
async fn auth_failures_are_audited_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, _counter, _server) = common::start_counting_upstream().await;
    let audit = format!("[audit]\ndir = \"{}\"\n", dir.path().display());
    let proxy = common::start_proxy(config_with(&upstream, &audit)).await;
    let body = modern_call(json!(1), "alpha", json!({}));

    let foreign_key =
        EncodingKey::from_rsa_pem(include_bytes!("fixtures/auth/rsa_b.key.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("a".into());
    let forged = jsonwebtoken::encode(
        &header,
        &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "eve", "exp": 4_000_000_000u64}),
        &foreign_key,
    )
    .unwrap();
    let good = token("bob");

    for credential in [None, Some(forged.clone()), Some(good.clone())] {
        let mut request = common::mcp_post(&raw_client(), &proxy.url)
            .header("mcp-protocol-version", common::MODERN)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "alpha");
        if let Some(credential) = &credential {
            request = request.header("authorization", format!("Bearer {credential}"));
        }
        let response = request.json(&body).send().await.unwrap();
        assert_eq!(
            response.status(),
            if credential.as_ref() == Some(&good) {
                200
            } else {
                401
            }
        );
    }
    proxy.shutdown().await;

    let files = shadowcat_audit::log_files(dir.path(), "audit").unwrap();
    shadowcat_audit::verify(&files, None).unwrap();
    let text: String = files
        .iter()
        .map(|file| std::fs::read_to_string(file).unwrap())
        .collect();
    assert!(!text.contains(&forged), "a token reached the audit trail");
    assert!(!text.contains(&good), "a token reached the audit trail");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let reasons: Vec<_> = lines
        .iter()
        .filter(|line| line["kind"] == "auth.failure")
        .map(|line| line["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reasons, ["missing_credentials", "invalid_signature"]);
    let success = lines
        .iter()
        .find(|line| line["kind"] == "auth.success")
        .unwrap();
    assert_eq!(success["subject"], "bob");
    assert_eq!(success["method"], "jwt");
}
