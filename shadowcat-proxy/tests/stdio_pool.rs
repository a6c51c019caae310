//! Concurrent modern clients sharing the stdio pool never see each other's results.

mod common;

use serde_json::json;

use common::{first_message, modern_call, modern_post, raw_client};

#[tokio::test]
async fn concurrent_clients_get_their_own_results() {
    let proxy = common::start_proxy(common::stdio_config()).await;
    let client = raw_client();

    let calls = (0..40).map(|n| {
        let client = client.clone();
        let url = proxy.url.clone();
        async move {
            // Every client uses the same JSON-RPC id, so only the proxy's rewriting
            // keeps the responses apart.
            let body = modern_call(json!(1), "add", json!({"a": n, "b": 1000}));
            let response = modern_post(&client, &url, &body).await;
            assert_eq!(response.status(), 200);
            let answer = first_message(response).await;
            (n, answer)
        }
    });
    for (n, answer) in futures_util::future::join_all(calls).await {
        assert_eq!(answer["id"], 1);
        let expected = (n + 1000).to_string();
        assert_eq!(
            answer["result"]["content"][0]["text"],
            expected.as_str(),
            "client {n}"
        );
    }
}

#[tokio::test]
async fn notification_gets_202() {
    let proxy = common::start_proxy(common::stdio_config()).await;
    let body = json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 99, "_meta": common::modern_meta()}
    });
    let response = modern_post(&raw_client(), &proxy.url, &body).await;
    assert_eq!(response.status(), 202);
}
