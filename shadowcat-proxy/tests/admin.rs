//! The admin listener: health, readiness and Prometheus metrics.

mod common;

use serde_json::json;

use common::{modern_call, modern_post, raw_client};

#[tokio::test]
async fn metrics_count_requests_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, _counter, _server) = common::start_counting_upstream().await;
    let mut config = common::http_config(&upstream);
    config.server.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    config.ratelimit = Some(common::ratelimit(
        "[ratelimit.tiers.ip]\nrequests = 1\nper = \"1h\"\nburst = 1\n",
    ));
    config.audit = Some(shadowcat_audit::AuditConfig {
        dir: dir.path().to_owned(),
        ..Default::default()
    });
    let proxy = common::start_proxy(config).await;
    let admin = format!("http://{}", proxy.admin.unwrap());
    let client = raw_client();

    for n in 0..2 {
        modern_post(
            &client,
            &proxy.url,
            &modern_call(json!(n), "alpha", json!({})),
        )
        .await;
    }
    let health = client.get(format!("{admin}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let metrics = client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"shadowcat_requests_total{http_method="POST",method="tools/call",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"shadowcat_requests_total{http_method="POST",method="tools/call",status="429"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("shadowcat_upstream_latency_seconds_count"));
    assert!(metrics.contains("shadowcat_active_sessions 0"));
    assert!(metrics.contains("shadowcat_audit_records_written_total"));
    assert!(metrics.contains("shadowcat_ratelimit_limited_total"));
}

#[tokio::test]
async fn readyz_fails_while_upstream_is_down() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let mut config = common::http_config(&format!("http://{addr}/mcp"));
    config.server.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let proxy = common::start_proxy(config).await;
    let admin = format!("http://{}", proxy.admin.unwrap());
    let ready = raw_client()
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
}
