//! Upstream groups through the real proxy: balancing, circuit breakers, health checks,
//! retries and legacy session stickiness, with rmcp replicas on 127.0.0.1 that can be
//! set to fail, stall, return 400/429/500 or die. Breakers, ejection and retry budgets
//! read a manual clock, so no test waits for wall-clock time.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};
use shadowcat_proxy::config::Config;
use shadowcat_proxy::upstream::UpstreamGroup;
use shadowcat_proxy::upstream::resilience::{BreakerState, ManualClock, SharedClock};

use common::replica::{Mode, Replica};
use common::{RunningProxy, modern_call, modern_meta, modern_post, raw_client};

/// Builds a config with one `[[upstreams]]` group over `replicas`. `extra` is appended
/// to the group table, for `[upstreams.breaker]` and the like.
fn group_config(policy: &str, replicas: &[(&Replica, u32)], extra: &str) -> Config {
    let members: Vec<String> = replicas
        .iter()
        .map(|(replica, weight)| format!("{{ url = \"{}\", weight = {weight} }}", replica.url))
        .collect();
    // Active checks run once at start-up; tests run later rounds by hand.
    let text = format!(
        "[[upstreams]]\nname = \"tools\"\npolicy = \"{policy}\"\nmembers = [{}]\n\n[upstreams.health]\ninterval = \"1h\"\ntimeout = \"2s\"\nhealthy_threshold = 1\nunhealthy_threshold = 1\n{extra}",
        members.join(", ")
    );
    Config::parse(&text).expect("the group config parses")
}

async fn start(config: Config, clock: &ManualClock) -> RunningProxy {
    common::start_proxy_with_clock(config, SharedClock::new(clock.clone())).await
}

fn group(proxy: &RunningProxy) -> &Arc<UpstreamGroup> {
    &proxy.state.routes.groups()[0]
}

async fn call_alpha(client: &reqwest::Client, url: &str, id: u64) -> reqwest::Response {
    modern_post(client, url, &modern_call(json!(id), "alpha", json!({}))).await
}

async fn list_tools(client: &reqwest::Client, url: &str, id: u64) -> reqwest::Response {
    let body = json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/list",
        "params": {"_meta": modern_meta()}
    });
    modern_post(client, url, &body).await
}

fn alpha_calls(replica: &Replica) -> usize {
    replica.server.alpha.load(Ordering::SeqCst)
}

#[tokio::test]
async fn round_robin_follows_weights() {
    let replicas = [Replica::start(), Replica::start(), Replica::start()];
    let config = group_config(
        "round_robin",
        &[(&replicas[0], 1), (&replicas[1], 2), (&replicas[2], 1)],
        "",
    );
    let proxy = start(config, &ManualClock::new()).await;
    let client = raw_client();
    for id in 0..40 {
        assert_eq!(call_alpha(&client, &proxy.url, id).await.status(), 200);
    }
    let counts: Vec<usize> = replicas.iter().map(alpha_calls).collect();
    assert_eq!(counts, [10, 20, 10]);
}

#[tokio::test]
async fn least_requests_avoids_a_busy_replica() {
    let replicas = [Replica::start(), Replica::start()];
    let config = group_config(
        "least_requests",
        &[(&replicas[0], 1), (&replicas[1], 1)],
        "",
    );
    let proxy = start(config, &ManualClock::new()).await;
    let client = raw_client();
    for replica in &replicas {
        replica.set_mode(Mode::StallThenFail);
    }
    let stalled_call = tokio::spawn({
        let client = client.clone();
        let url = proxy.url.clone();
        async move { call_alpha(&client, &url, 0).await.status() }
    });
    let busy = tokio::select! {
        () = replicas[0].wait_for_hits(1) => 0,
        () = replicas[1].wait_for_hits(1) => 1,
    };
    let idle = 1 - busy;
    replicas[idle].set_mode(Mode::Serve);
    for id in 1..=10 {
        assert_eq!(call_alpha(&client, &proxy.url, id).await.status(), 200);
    }
    assert_eq!(alpha_calls(&replicas[idle]), 10);
    assert_eq!(replicas[busy].hits(), 1);
    replicas[busy].release();
    assert_eq!(stalled_call.await.unwrap(), 500);
}

#[tokio::test]
async fn power_of_two_choices_uses_every_replica() {
    let replicas = [Replica::start(), Replica::start(), Replica::start()];
    let config = group_config(
        "p2c",
        &[(&replicas[0], 1), (&replicas[1], 1), (&replicas[2], 1)],
        "",
    );
    let proxy = start(config, &ManualClock::new()).await;
    let client = raw_client();
    for id in 0..60 {
        assert_eq!(call_alpha(&client, &proxy.url, id).await.status(), 200);
    }
    let counts: Vec<usize> = replicas.iter().map(alpha_calls).collect();
    assert_eq!(counts.iter().sum::<usize>(), 60);
    assert!(counts.iter().all(|&count| count > 0), "{counts:?}");
}

#[tokio::test]
async fn client_errors_keep_breaker_closed() {
    let replica = Replica::start();
    let config = group_config(
        "p2c",
        &[(&replica, 1)],
        "[upstreams.breaker]\nfailure_threshold = 3\nmin_requests = 3\n",
    );
    let proxy = start(config, &ManualClock::new()).await;
    let client = raw_client();

    replica.set_mode(Mode::BadRequest);
    for id in 0..20 {
        assert_eq!(call_alpha(&client, &proxy.url, id).await.status(), 400);
    }
    replica.set_mode(Mode::TooMany);
    for id in 20..40 {
        let response = call_alpha(&client, &proxy.url, id).await;
        assert_eq!(response.status(), 429);
        // The upstream's back-pressure reaches the client with its own wait.
        assert_eq!(response.headers()["retry-after"], "7");
    }
    assert_eq!(replica.hits(), 40);
    assert_eq!(group(&proxy).breaker_state(0), BreakerState::Closed);

    replica.set_mode(Mode::Serve);
    assert_eq!(call_alpha(&client, &proxy.url, 40).await.status(), 200);
    assert_eq!(alpha_calls(&replica), 1);
}

#[tokio::test]
async fn half_open_breaker_admits_one_probe() {
    let replica = Replica::start();
    let audit_dir = tempfile::tempdir().unwrap();
    let mut config = group_config(
        "p2c",
        &[(&replica, 1)],
        "[upstreams.breaker]\nfailure_threshold = 3\nmin_requests = 3\nopen_base = \"10s\"\nopen_max = \"10s\"\njitter = 0.0\n",
    );
    config.audit = Some(shadowcat_audit::AuditConfig {
        dir: audit_dir.path().to_owned(),
        ..Default::default()
    });
    let clock = ManualClock::new();
    let proxy = start(config, &clock).await;
    let client = raw_client();

    replica.set_mode(Mode::Fail);
    for id in 0..3 {
        assert_eq!(call_alpha(&client, &proxy.url, id).await.status(), 500);
    }
    assert_eq!(group(&proxy).breaker_state(0), BreakerState::Open);

    // Open: the client gets a Retry-After and the replica receives nothing.
    let response = call_alpha(&client, &proxy.url, 3).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "10");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["id"], 3);
    assert_eq!(error["error"]["code"], -32012);
    assert_eq!(replica.hits(), 3);

    // After the open period one probe goes through and hangs on the sick replica.
    clock.advance(Duration::from_secs(10));
    replica.set_mode(Mode::StallThenFail);
    let probe = tokio::spawn({
        let client = client.clone();
        let url = proxy.url.clone();
        async move { call_alpha(&client, &url, 100).await.status() }
    });
    replica.wait_for_hits(4).await;

    // While it hangs, 100 concurrent callers are rejected at once, not queued.
    let callers: Vec<_> = (0..100)
        .map(|id| {
            let client = client.clone();
            let url = proxy.url.clone();
            tokio::spawn(async move { call_alpha(&client, &url, 200 + id).await })
        })
        .collect();
    for caller in callers {
        let response = caller.await.unwrap();
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
    }
    assert_eq!(replica.hits(), 4, "only the probe reached the replica");
    assert!(!probe.is_finished());

    // The probe fails, so the breaker opens again.
    replica.release();
    assert_eq!(probe.await.unwrap(), 500);
    assert_eq!(group(&proxy).breaker_state(0), BreakerState::Open);

    // Recovery: the next probe succeeds and closes the breaker.
    replica.set_mode(Mode::Serve);
    clock.advance(Duration::from_secs(10));
    assert_eq!(call_alpha(&client, &proxy.url, 300).await.status(), 200);
    assert_eq!(group(&proxy).breaker_state(0), BreakerState::Closed);
    assert_eq!(call_alpha(&client, &proxy.url, 301).await.status(), 200);

    proxy.shutdown().await;
    let records = common::read_audit(audit_dir.path(), None);
    let circuit: Vec<&str> = records
        .iter()
        .filter_map(|record| record["kind"].as_str())
        .filter(|kind| kind.starts_with("circuit."))
        .collect();
    assert_eq!(
        circuit,
        [
            "circuit.opened",
            "circuit.half_open",
            "circuit.opened",
            "circuit.half_open",
            "circuit.closed"
        ]
    );
    let opened = records
        .iter()
        .find(|record| record["kind"] == "circuit.opened")
        .unwrap();
    assert_eq!(opened["upstream"], replica.url.as_str());
    assert_eq!(opened["failures"], 3);
    let unavailable = records
        .iter()
        .filter(|record| record["reason"] == "upstream_unavailable")
        .count();
    assert_eq!(unavailable, 101);
}

#[tokio::test]
async fn killed_replica_ejected_without_errors() {
    let mut replicas = [Replica::start(), Replica::start(), Replica::start()];
    let config = group_config(
        "round_robin",
        &[(&replicas[0], 1), (&replicas[1], 1), (&replicas[2], 1)],
        "",
    );
    let proxy = start(config, &ManualClock::new()).await;
    let client = raw_client();
    for id in 0..60 {
        if id == 15 {
            replicas[1].kill();
        }
        let response = list_tools(&client, &proxy.url, id).await;
        assert_eq!(response.status(), 200, "call {id}");
        let listed = common::first_message(response).await;
        assert!(listed["result"]["tools"].is_array(), "{listed}");
    }
    let group = group(&proxy);
    assert_eq!(group.breaker_state(1), BreakerState::Open);
    assert_eq!(group.breaker_state(0), BreakerState::Closed);
    assert_eq!(group.breaker_state(2), BreakerState::Closed);

    let admin_metrics = metrics(&proxy).await;
    assert!(
        admin_metrics.contains("shadowcat_upstream_retries_total{group=\"tools\"} 5"),
        "{admin_metrics}"
    );
}

#[tokio::test]
async fn tool_call_retried_only_when_unsent() {
    let mut replicas = [Replica::start(), Replica::start()];
    let config = group_config("round_robin", &[(&replicas[0], 1), (&replicas[1], 1)], "");
    let proxy = start(config, &ManualClock::new()).await;
    let client = raw_client();

    // A 500 after the request reached the replica: the tool may have acted, so the
    // client gets the failure instead of a second call.
    replicas[0].set_mode(Mode::Fail);
    let statuses = [
        call_alpha(&client, &proxy.url, 0).await.status(),
        call_alpha(&client, &proxy.url, 1).await.status(),
    ];
    assert!(statuses.contains(&http::StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(alpha_calls(&replicas[1]), 1);

    // A refused connection sent nothing, so the call moves to the other replica.
    replicas[0].kill();
    for id in 2..6 {
        assert_eq!(call_alpha(&client, &proxy.url, id).await.status(), 200);
    }
    assert_eq!(alpha_calls(&replicas[1]), 5);
}

#[tokio::test]
async fn health_checks_take_replicas_out_and_readyz_follows() {
    let replicas = [Replica::start(), Replica::start()];
    let mut config = group_config("round_robin", &[(&replicas[0], 1), (&replicas[1], 1)], "");
    config.server.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let proxy = start(config, &ManualClock::new()).await;
    let client = raw_client();
    let group = Arc::clone(group(&proxy));
    group.check_health().await;
    assert_eq!(readyz(&proxy).await, 200);

    replicas[0].set_mode(Mode::Fail);
    group.check_health().await;
    assert!(!group.member(0).is_healthy());
    for id in 0..6 {
        assert_eq!(call_alpha(&client, &proxy.url, id).await.status(), 200);
    }
    assert_eq!(alpha_calls(&replicas[1]), 6);
    assert_eq!(replicas[0].hits(), 0);
    assert_eq!(readyz(&proxy).await, 200);

    replicas[1].set_mode(Mode::Fail);
    group.check_health().await;
    assert_eq!(readyz(&proxy).await, 503);
    let response = call_alpha(&client, &proxy.url, 10).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));

    for replica in &replicas {
        replica.set_mode(Mode::Serve);
    }
    group.check_health().await;
    assert_eq!(readyz(&proxy).await, 200);
    assert_eq!(call_alpha(&client, &proxy.url, 11).await.status(), 200);
}

#[tokio::test]
async fn legacy_session_sticks_to_replica() {
    let replicas = [Replica::start(), Replica::start()];
    let config = group_config("round_robin", &[(&replicas[0], 1), (&replicas[1], 1)], "");
    let proxy = start(config, &ManualClock::new()).await;

    let mut clients = Vec::new();
    for _ in 0..4 {
        let transport = StreamableHttpClientTransport::from_uri(proxy.url.clone());
        clients.push(().serve(transport).await.expect("legacy client connects"));
    }
    // Interleave the sessions' calls; any call sent to the wrong replica would hit a
    // server that does not know the session and fail.
    for _ in 0..3 {
        for client in &clients {
            client
                .call_tool(CallToolRequestParams::new("alpha"))
                .await
                .expect("the call reaches the session's replica");
        }
    }
    assert_eq!(alpha_calls(&replicas[0]), 6);
    assert_eq!(alpha_calls(&replicas[1]), 6);
    for client in clients {
        client.cancel().await.unwrap();
    }
}

async fn readyz(proxy: &RunningProxy) -> u16 {
    let admin = proxy.admin.expect("admin listener configured");
    raw_client()
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn metrics(proxy: &RunningProxy) -> String {
    let mut out = String::new();
    for group in proxy.state.routes.groups() {
        group.render_prometheus(&mut out);
    }
    out
}

#[tokio::test]
async fn routes_send_each_path_to_its_group() {
    let search = Replica::start();
    let files = Replica::start();
    let text = format!(
        r#"
        [[upstreams]]
        name = "search"
        members = [{{ url = "{}" }}]

        [[upstreams]]
        name = "files"
        members = [{{ url = "{}" }}]

        [[routes]]
        path = "/mcp"
        upstream = "search"

        [[routes]]
        path = "/mcp/files"
        upstream = "files"
        "#,
        search.url, files.url
    );
    let proxy = start(Config::parse(&text).unwrap(), &ManualClock::new()).await;
    let client = raw_client();
    let files_url = format!("http://{}/mcp/files", proxy.addr);
    for id in 0..3 {
        assert_eq!(call_alpha(&client, &proxy.url, id).await.status(), 200);
    }
    assert_eq!(call_alpha(&client, &files_url, 3).await.status(), 200);
    assert_eq!(alpha_calls(&search), 3);
    assert_eq!(alpha_calls(&files), 1);

    // A session belongs to the route that created it.
    let session = common::legacy_initialize(&client, &proxy.url, "2025-06-18").await;
    let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"});
    let elsewhere = common::session_post(&client, &files_url, &session, &ping).await;
    assert_eq!(elsewhere.status(), 404);
    let home = common::session_post(&client, &proxy.url, &session, &ping).await;
    assert_eq!(home.status(), 200);
}

#[tokio::test]
async fn stdio_replicas_serve_both_eras() {
    let program = env!("CARGO_BIN_EXE_shadowcat-example-server");
    let text = format!(
        "[[upstreams]]\nname = \"local\"\npolicy = \"round_robin\"\nmembers = [{{ command = [\"{program}\"] }}, {{ command = [\"{program}\"] }}]\n"
    );
    let proxy = start(Config::parse(&text).unwrap(), &ManualClock::new()).await;
    let client = raw_client();
    for id in 0..4 {
        let body = modern_call(json!(id), "add", json!({"a": id, "b": 1}));
        let answer = common::first_message(modern_post(&client, &proxy.url, &body).await).await;
        assert_eq!(answer["result"]["content"][0]["text"], (id + 1).to_string());
    }

    let transport = StreamableHttpClientTransport::from_uri(proxy.url.clone());
    let legacy = ().serve(transport).await.expect("legacy client connects");
    let arguments = json!({"text": "sticky"}).as_object().unwrap().clone();
    for _ in 0..2 {
        let echoed = legacy
            .call_tool(CallToolRequestParams::new("echo").with_arguments(arguments.clone()))
            .await
            .expect("echo works on the session's child");
        assert_eq!(echoed.content[0].as_text().unwrap().text, "sticky");
    }
    legacy.cancel().await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test]
async fn spent_retry_budget_stops_retries() {
    let mut replicas = [Replica::start(), Replica::start()];
    let config = group_config(
        "round_robin",
        &[(&replicas[0], 1), (&replicas[1], 1)],
        "[upstreams.retry]\nbudget_ratio = 0.0\nmin_per_second = 0\n",
    );
    let proxy = start(config, &ManualClock::new()).await;
    let client = raw_client();
    replicas[1].kill();

    let mut statuses = Vec::new();
    for id in 0..4 {
        statuses.push(list_tools(&client, &proxy.url, id).await.status().as_u16());
    }
    // Round robin sends every second call to the dead replica, and with no budget the
    // proxy returns its failure instead of trying the live one.
    assert_eq!(statuses.iter().filter(|&&status| status == 502).count(), 2);
    assert_eq!(statuses.iter().filter(|&&status| status == 200).count(), 2);
    assert!(
        metrics(&proxy)
            .await
            .contains("shadowcat_upstream_retries_total{group=\"tools\"} 0")
    );
}

#[tokio::test]
async fn group_eras_survive_one_rejecting_replica() {
    let replicas = [Replica::start(), Replica::start()];
    let config = group_config("round_robin", &[(&replicas[0], 1), (&replicas[1], 1)], "");
    let proxy = start(config, &ManualClock::new()).await;
    let group = Arc::clone(group(&proxy));
    let modern = shadowcat_core::mcp::Era::Modern;

    replicas[0].set_mode(Mode::BadRequest);
    group.check_health().await;
    assert_eq!(group.eras.supports(modern), Some(true));
    assert!(
        group.member(0).is_healthy(),
        "a 4xx shows the replica is up"
    );

    // Every replica rejecting the probe reads as a legacy-only server...
    replicas[1].set_mode(Mode::BadRequest);
    group.check_health().await;
    assert_eq!(group.eras.supports(modern), Some(false));

    // ...and the next round that lists the modern era brings it back.
    replicas[0].set_mode(Mode::Serve);
    group.check_health().await;
    assert_eq!(group.eras.supports(modern), Some(true));
}
