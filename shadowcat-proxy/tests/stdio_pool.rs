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

#[tokio::test]
async fn dead_child_fails_pending_and_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    // A stdio "server" that records its start, reads one request and exits without
    // responding.
    let script = format!("echo started >> {}; read request; exit 3", starts.display());
    let mut config = shadowcat_proxy::config::Config::default();
    config.upstream.command = Some(shadowcat_proxy::config::CommandLine::Args(vec![
        "sh".into(),
        "-c".into(),
        script,
    ]));
    config.upstream.stdio_pool_size = 1;
    let proxy = common::start_proxy(config).await;
    let client = raw_client();
    let count_starts = || {
        std::fs::read_to_string(&starts)
            .map(|text| text.lines().count())
            .unwrap_or(0)
    };

    let mut previous = 0;
    for id in ["first", "second"] {
        let response = modern_post(
            &client,
            &proxy.url,
            &modern_call(json!(id), "add", json!({"a": 1, "b": 2})),
        )
        .await;
        assert_eq!(response.status(), 502, "{id}");
        let error = first_message(response).await;
        assert_eq!(error["id"], id);
        assert_eq!(error["error"]["code"], -32010);
        let started = count_starts();
        assert!(started > previous, "request {id} did not get a fresh child");
        previous = started;
    }
}
