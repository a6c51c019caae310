//! Bad input gets a specific status and JSON-RPC error, never a panic or a leak of the
//! upstream's internals.

mod common;

use std::time::Duration;

use serde_json::json;

use common::{MODERN, first_message, mcp_post, modern_call, modern_post, raw_client};

#[tokio::test]
async fn malformed_json_is_32700() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let response = mcp_post(&raw_client(), &proxy.url)
        .body("{\"jsonrpc\": \"2.0\", \"id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error = first_message(response).await;
    assert_eq!(error["error"]["code"], -32700);
    assert!(error["id"].is_null());
}

#[tokio::test]
async fn non_jsonrpc_is_32600() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    for body in [
        json!([1, 2]),
        json!({"hello": "world"}),
        json!({"jsonrpc": "2.0", "id": 4, "method": 12}),
    ] {
        let response = mcp_post(&raw_client(), &proxy.url)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(
            first_message(response).await["error"]["code"],
            -32600,
            "{body}"
        );
    }
}

#[tokio::test]
async fn oversized_body_is_413() {
    let (upstream, _server) = common::start_example_upstream().await;
    let mut config = common::http_config(&upstream);
    config.server.max_body_bytes = 1024;
    let proxy = common::start_proxy(config).await;
    let body = modern_call(json!(1), "echo", json!({"text": "x".repeat(4096)}));
    let response = modern_post(&raw_client(), &proxy.url, &body).await;
    assert_eq!(response.status(), 413);
    assert_eq!(first_message(response).await["error"]["code"], -32005);

    // A chunked body without Content-Length is cut off at the limit too.
    let chunks = futures_util::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 512]))),
    );
    let response = mcp_post(&raw_client(), &proxy.url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn foreign_origin_and_host_rejected() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let body = modern_call(json!(1), "echo", json!({"text": "x"}));
    let response = mcp_post(&raw_client(), &proxy.url)
        .header("origin", "https://evil.example")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(first_message(response).await["error"]["code"], -32003);

    let response = mcp_post(&raw_client(), &proxy.url)
        .header("host", "rebinding.example")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 421);
}

#[tokio::test]
async fn unreachable_upstream_is_502_with_id() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let proxy = common::start_proxy(common::http_config(&format!("http://{addr}/mcp"))).await;
    let body = modern_call(json!("abc"), "echo", json!({"text": "x"}));
    let response = modern_post(&raw_client(), &proxy.url, &body).await;
    assert_eq!(response.status(), 502);
    let error = first_message(response).await;
    assert_eq!(error["id"], "abc");
    assert_eq!(error["error"]["code"], -32010);
    let text = error.to_string();
    assert!(
        !text.contains("onnection refused"),
        "upstream error text leaked: {text}"
    );
}

#[tokio::test]
async fn silent_upstream_is_504_with_id() {
    // An upstream that accepts the connection and never responds.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut config = common::http_config(&format!("http://{addr}/mcp"));
    config.upstream.request_timeout = Duration::from_millis(200);
    let proxy = common::start_proxy(config).await;
    let body = modern_call(json!(11), "echo", json!({"text": "x"}));
    let response = modern_post(&raw_client(), &proxy.url, &body).await;
    assert_eq!(response.status(), 504);
    let error = first_message(response).await;
    assert_eq!(error["id"], 11);
    assert_eq!(error["error"]["code"], -32011);
}

#[tokio::test]
async fn unsupported_http_method_is_405() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let response = raw_client().put(&proxy.url).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.headers().contains_key("allow"));
}

#[tokio::test]
async fn modern_batch_is_rejected() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let batch = json!([modern_call(json!(1), "echo", json!({"text": "x"}))]);
    let response = mcp_post(&raw_client(), &proxy.url)
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let errors: serde_json::Value = response.json().await.unwrap();
    assert_eq!(errors[0]["error"]["code"], -32600);
}
