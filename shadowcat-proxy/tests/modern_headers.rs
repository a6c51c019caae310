//! The modern era's mirrored-header rules, checked with raw HTTP through the proxy.

mod common;

use base64::Engine;
use serde_json::{Value, json};

use common::{MODERN, mcp_post, modern_call, raw_client};

async fn post_with(url: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let mut request = mcp_post(&raw_client(), url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.json(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, common::first_message(response).await)
}

#[tokio::test]
async fn each_mismatch_kind_is_rejected_with_32020() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let body = modern_call(json!(7), "echo", json!({"text": "x"}));

    let cases: [(&str, &[(&str, &str)]); 6] = [
        (
            "missing version",
            &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
        ),
        (
            "missing method",
            &[("mcp-protocol-version", MODERN), ("mcp-name", "echo")],
        ),
        (
            "wrong method",
            &[
                ("mcp-protocol-version", MODERN),
                ("mcp-method", "tools/list"),
                ("mcp-name", "echo"),
            ],
        ),
        (
            "missing name",
            &[
                ("mcp-protocol-version", MODERN),
                ("mcp-method", "tools/call"),
            ],
        ),
        (
            "wrong name",
            &[
                ("mcp-protocol-version", MODERN),
                ("mcp-method", "tools/call"),
                ("mcp-name", "add"),
            ],
        ),
        (
            "bad base64 name",
            &[
                ("mcp-protocol-version", MODERN),
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?%%%?="),
            ],
        ),
    ];
    for (case, headers) in cases {
        let (status, error) = post_with(&proxy.url, headers, &body).await;
        assert_eq!(status, 400, "{case}");
        assert_eq!(error["error"]["code"], -32020, "{case}: {error}");
        assert_eq!(error["id"], 7, "{case}");
    }
}

#[tokio::test]
async fn duplicated_method_header_is_rejected() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let body = modern_call(json!(1), "echo", json!({"text": "x"}));
    let response = mcp_post(&raw_client(), &proxy.url)
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-method", "tools/list")
        .header("mcp-name", "echo")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        common::first_message(response).await["error"]["code"],
        -32020
    );
}

#[tokio::test]
async fn base64_name_reaches_the_tool() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let body = modern_call(json!(1), "echo", json!({"text": "b64"}));
    let encoded = format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode("echo")
    );
    let headers = [
        ("mcp-protocol-version", MODERN),
        ("mcp-method", "tools/call"),
        ("mcp-name", encoded.as_str()),
    ];
    let (status, result) = post_with(&proxy.url, &headers, &body).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["result"]["content"][0]["text"], "b64");
}

#[tokio::test]
async fn unsupported_version_is_32022_with_data() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let mut body = modern_call(json!("v"), "echo", json!({"text": "x"}));
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let headers = [
        ("mcp-protocol-version", "2099-01-01"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ];
    let (status, error) = post_with(&proxy.url, &headers, &body).await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], -32022);
    assert_eq!(error["id"], "v");
    assert_eq!(error["error"]["data"]["requested"], "2099-01-01");
    let supported = error["error"]["data"]["supported"].as_array().unwrap();
    assert!(supported.contains(&json!(MODERN)));
}

#[tokio::test]
async fn param_headers_pass_through_untouched() {
    let (upstream_url, seen) = spawn_header_recorder().await;
    let proxy = common::start_proxy(common::http_config(&upstream_url)).await;
    let body = modern_call(json!(1), "echo", json!({"text": "x"}));
    let response = mcp_post(&raw_client(), &proxy.url)
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .header("mcp-param-region", "=?base64?ZXUtd2VzdA==?=")
        .header("authorization", "Bearer canary-token")
        .header("cookie", "session=canary-cookie")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = seen
        .lock()
        .unwrap()
        .clone()
        .expect("upstream saw the request");
    assert_eq!(
        headers.get("mcp-param-region").unwrap(),
        "=?base64?ZXUtd2VzdA==?="
    );
    assert!(
        headers.get("authorization").is_none(),
        "client token leaked upstream"
    );
    assert!(
        headers.get("cookie").is_none(),
        "client cookie leaked upstream"
    );
}

type Seen = std::sync::Arc<std::sync::Mutex<Option<http::HeaderMap>>>;

/// Starts an HTTP endpoint that records the headers of the last request and responds
/// with a fixed JSON-RPC result.
async fn spawn_header_recorder() -> (String, Seen) {
    let seen: Seen = Default::default();
    let recorder = seen.clone();
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |headers: http::HeaderMap| {
            let recorder = recorder.clone();
            async move {
                // The proxy's own era probe also arrives here, so only tool calls count.
                if headers
                    .get("mcp-method")
                    .is_some_and(|method| method == "tools/call")
                {
                    *recorder.lock().unwrap() = Some(headers);
                }
                axum::Json(json!({"jsonrpc": "2.0", "id": 1, "result": {}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/mcp"), seen)
}
