//! Legacy-era session rules through the proxy: ids, 404s, DELETE, the GET stream and
//! batches.

mod common;

use serde_json::json;

use common::{first_message, legacy_initialize, mcp_post, raw_client};

#[tokio::test]
async fn proxy_mints_its_own_session_id() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let session = legacy_initialize(&raw_client(), &proxy.url, "2025-06-18").await;
    assert_eq!(session.len(), 32);
    assert!(session.bytes().all(|b| b.is_ascii_hexdigit()));
    // rmcp's own ids are UUIDs with dashes, so the client never sees the upstream's id.
    assert!(!session.contains('-'));
}

#[tokio::test]
async fn unknown_session_is_404() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    for session in ["0123456789abcdef0123456789abcdef", "not-a-session"] {
        let response = mcp_post(&raw_client(), &proxy.url)
            .header("mcp-session-id", session)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{session}");
        let error = first_message(response).await;
        assert_eq!(error["error"]["code"], -32001);
        assert_eq!(error["id"], 3);
    }
}

#[tokio::test]
async fn request_without_session_is_400() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let body = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"});
    let response = mcp_post(&raw_client(), &proxy.url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        proxy.state.sessions.len(),
        0,
        "a rejected request allocated a session"
    );
}

#[tokio::test]
async fn delete_ends_session_on_both_sides() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let client = raw_client();
    let session = legacy_initialize(&client, &proxy.url, "2025-06-18").await;

    let response = common::session_delete(&client, &proxy.url, &session).await;
    assert_eq!(response.status(), 204);

    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"});
    let response = common::session_post(&client, &proxy.url, &session, &body).await;
    assert_eq!(response.status(), 404);
    let response = common::session_delete(&client, &proxy.url, &session).await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn get_opens_upstream_event_stream() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let client = raw_client();
    let session = legacy_initialize(&client, &proxy.url, "2025-06-18").await;
    let response = client
        .get(&proxy.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(response.headers()["x-accel-buffering"], "no");
}

#[tokio::test]
async fn batch_allowed_only_in_2025_03_26() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let client = raw_client();
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}}
    ]);

    let newer = legacy_initialize(&client, &proxy.url, "2025-06-18").await;
    let response = mcp_post(&client, &proxy.url)
        .header("mcp-session-id", &newer)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let errors: serde_json::Value = response.json().await.unwrap();
    assert_eq!(errors[0]["id"], 1);
    assert_eq!(errors[1]["id"], 2);
    assert_eq!(errors[0]["error"]["code"], -32600);
}

#[tokio::test]
async fn batch_reaches_stdio_session_whole() {
    let proxy = common::start_proxy(common::stdio_config()).await;
    let client = raw_client();
    let session = legacy_initialize(&client, &proxy.url, "2025-03-26").await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}},
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}}
    ]);
    let response = mcp_post(&client, &proxy.url)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-03-26")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answers: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answers[0]["id"], 1);
    assert_eq!(answers[0]["result"]["content"][0]["text"], "3");
    assert_eq!(answers[1]["id"], 2);
    assert_eq!(answers[1]["result"]["content"][0]["text"], "hi");
}

#[tokio::test]
async fn stdio_session_ends_its_child() {
    let proxy = common::start_proxy(common::stdio_config()).await;
    let client = raw_client();
    let session = legacy_initialize(&client, &proxy.url, "2025-06-18").await;
    let response = common::session_delete(&client, &proxy.url, &session).await;
    assert_eq!(response.status(), 204);
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"});
    let response = common::session_post(&client, &proxy.url, &session, &body).await;
    assert_eq!(response.status(), 404);
}
