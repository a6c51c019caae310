//! Rate limits through the real proxy, with an rmcp upstream that counts every call.

mod common;

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use common::{first_message, legacy_initialize, mcp_post, modern_call, modern_post, raw_client};

#[tokio::test]
async fn batch_over_tool_limit_forwards_nothing() {
    let (upstream, counter, _server) = common::start_counting_upstream().await;
    let mut config = common::http_config(&upstream);
    config.ratelimit = Some(common::ratelimit(
        "[ratelimit.tiers.tool]\nrequests = 10\nper = \"1m\"\nburst = 10\n",
    ));
    let proxy = common::start_proxy(config).await;
    let client = raw_client();
    let session = legacy_initialize(&client, &proxy.url, "2025-03-26").await;

    let batch: Vec<Value> = (0..50)
        .map(|n| json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "alpha", "arguments": {}}}))
        .collect();
    let response = common::session_post(&client, &proxy.url, &session, &batch).await;
    // A batch of 50 can never fit a burst of 10, so it is refused whole and for good.
    assert_eq!(response.status(), 400);
    let errors: Value = response.json().await.unwrap();
    assert_eq!(errors.as_array().unwrap().len(), 50);
    assert_eq!(errors[49]["id"], 49);
    assert!(counter.alpha.load(Ordering::SeqCst) <= 10);
    assert_eq!(counter.alpha.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn exhausted_tool_leaves_other_tool_alone() {
    let (upstream, counter, _server) = common::start_counting_upstream().await;
    let mut config = common::http_config(&upstream);
    config.ratelimit = Some(common::ratelimit(
        "[ratelimit.tiers.tool]\nrequests = 3\nper = \"1h\"\nburst = 3\n",
    ));
    let proxy = common::start_proxy(config).await;
    // One client, so every request shares one keep-alive connection.
    let client = raw_client();

    let mut limited = None;
    for n in 0..5 {
        let response = modern_post(
            &client,
            &proxy.url,
            &modern_call(json!(n), "alpha", json!({})),
        )
        .await;
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), 200);
        assert!(
            response.headers().contains_key("ratelimit"),
            "allowed responses carry RateLimit"
        );
        let _ = response.text().await;
    }
    let limited = limited.expect("alpha is limited after its burst");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert!(limited.headers().contains_key("ratelimit-policy"));
    let error = first_message(limited).await;
    assert_eq!(error["id"], 3);
    assert_eq!(error["error"]["code"], -32000);
    assert_eq!(error["error"]["data"]["tier"], "tool");
    assert!(error["error"]["data"]["retry_after_ms"].as_u64().unwrap() >= 1);
    assert_eq!(counter.alpha.load(Ordering::SeqCst), 3);

    let response = modern_post(
        &client,
        &proxy.url,
        &modern_call(json!(9), "beta", json!({})),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(counter.beta.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn spoofed_forwarded_for_does_not_escape_ip_limit() {
    let (upstream, counter, _server) = common::start_counting_upstream().await;
    let mut config = common::http_config(&upstream);
    config.ratelimit = Some(common::ratelimit(
        "[ratelimit.tiers.ip]\nrequests = 2\nper = \"1h\"\nburst = 2\n",
    ));
    let proxy = common::start_proxy(config).await;
    let client = raw_client();

    let mut statuses = Vec::new();
    for n in 0..4 {
        let body = modern_call(json!(n), "alpha", json!({}));
        let response = mcp_post(&client, &proxy.url)
            .header("mcp-protocol-version", common::MODERN)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "alpha")
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .header("forwarded", format!("for=203.0.113.{n}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(counter.alpha.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn session_minting_is_budgeted() {
    let (upstream, _counter, _server) = common::start_counting_upstream().await;
    let mut config = common::http_config(&upstream);
    config.ratelimit = Some(common::ratelimit(
        "[ratelimit.sessions.ip]\nrequests = 2\nper = \"1h\"\nburst = 2\n",
    ));
    let proxy = common::start_proxy(config).await;
    let client = raw_client();
    legacy_initialize(&client, &proxy.url, "2025-06-18").await;
    legacy_initialize(&client, &proxy.url, "2025-06-18").await;
    let body = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "loop", "version": "1"}}
    });
    let response = mcp_post(&client, &proxy.url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("mcp-session-id").is_none());
    assert_eq!(proxy.state.sessions.len(), 2);
}

#[tokio::test]
async fn limited_notification_gets_empty_429() {
    let (upstream, _counter, _server) = common::start_counting_upstream().await;
    let mut config = common::http_config(&upstream);
    config.ratelimit = Some(common::ratelimit(
        "[ratelimit.tiers.ip]\nrequests = 1\nper = \"1h\"\nburst = 1\n",
    ));
    let proxy = common::start_proxy(config).await;
    let client = raw_client();
    let first = modern_post(
        &client,
        &proxy.url,
        &modern_call(json!(1), "alpha", json!({})),
    )
    .await;
    assert_eq!(first.status(), 200);
    let notification = json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 1, "_meta": common::modern_meta()}
    });
    let response = modern_post(&client, &proxy.url, &notification).await;
    assert_eq!(response.status(), 429);
    assert!(response.text().await.unwrap().is_empty());
}

#[tokio::test]
async fn flood_writes_one_coalesced_audit_record() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, _counter, _server) = common::start_counting_upstream().await;
    let mut config = common::http_config(&upstream);
    config.ratelimit = Some(common::ratelimit(
        "[ratelimit.tiers.ip]\nrequests = 1\nper = \"1h\"\nburst = 1\n",
    ));
    config.audit = Some(shadowcat_audit::AuditConfig {
        dir: dir.path().to_owned(),
        ..Default::default()
    });
    let proxy = common::start_proxy(config).await;
    let client = raw_client();
    for n in 0..20 {
        let response = modern_post(
            &client,
            &proxy.url,
            &modern_call(json!(n), "alpha", json!({})),
        )
        .await;
        assert_eq!(response.status(), if n == 0 { 200 } else { 429 });
    }
    proxy.shutdown().await;

    let files = shadowcat_audit::log_files(dir.path(), "audit").unwrap();
    shadowcat_audit::verify(&files, None).unwrap();
    let text: String = files
        .iter()
        .map(|file| std::fs::read_to_string(file).unwrap())
        .collect();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let limited: Vec<_> = lines
        .iter()
        .filter(|line| line["kind"] == "ratelimit.limited")
        .collect();
    assert_eq!(limited.len(), 1, "the flood was coalesced into one record");
    assert_eq!(limited[0]["tier"], "ip");
    assert!(
        !limited[0]["key_hash"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1")
    );
    let completed_limited = lines
        .iter()
        .filter(|line| line["kind"] == "request.completed" && line["outcome"] == "limited")
        .count();
    assert_eq!(completed_limited, 19);
}
