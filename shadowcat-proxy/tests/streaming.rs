//! Event streams are relayed event by event, and a client that goes away cancels the
//! upstream request.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use common::{modern_call, modern_post, raw_client};

#[tokio::test]
async fn first_event_arrives_before_upstream_finishes() {
    let (upstream, gate, _server) = common::start_gate_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let body = modern_call(json!(1), "wait", json!({"label": "stream"}));
    let response = modern_post(&raw_client(), &proxy.url, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-accel-buffering"], "no");

    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("notifications/message") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the notification arrives while the tool still waits")
            .expect("the stream stays open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        !seen.contains("released"),
        "the result came before the release"
    );

    gate.release.notify_one();
    while !seen.contains("released") {
        let chunk = stream.next().await.expect("the result follows").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn client_disconnect_cancels_upstream_request() {
    let (upstream, gate, _server) = common::start_gate_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let body = modern_call(json!(1), "wait", json!({"label": "cancel"}));
    let response = modern_post(&raw_client(), &proxy.url, &body).await;
    let mut stream = response.bytes_stream();
    let _first = stream.next().await;
    assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
    drop(stream);

    tokio::time::timeout(Duration::from_secs(10), gate.on_cancel.notified())
        .await
        .expect("the upstream tool is cancelled after the client goes away");
    assert_eq!(gate.cancelled.load(Ordering::SeqCst), 1);
}
