//! The proxy's audit trail: one record per request or batch element, sessions and
//! lifecycle recorded, secrets never written, and the chain intact after a stop.

mod common;

use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};

use common::{first_message, legacy_initialize, mcp_post, modern_call, modern_post, raw_client};

const CANARY: &str = "canary-7f3a9c-secret";

fn audit_lines(dir: &Path) -> Vec<Value> {
    common::read_audit(dir, Some(CANARY))
}

fn count_kind(lines: &[Value], kind: &str) -> usize {
    lines.iter().filter(|line| line["kind"] == kind).count()
}

#[tokio::test]
async fn every_request_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::stdio_config();
    config.audit = Some(shadowcat_audit::AuditConfig {
        dir: dir.path().to_owned(),
        ..Default::default()
    });
    let proxy = common::start_proxy(config).await;
    let client = raw_client();

    // One completed modern call, with a canary in the token and in the arguments.
    let body = modern_call(json!(1), "echo", json!({"text": CANARY}));
    let response = common::mcp_post(&client, &proxy.url)
        .header("mcp-protocol-version", common::MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .header("authorization", format!("Bearer {CANARY}"))
        .header("cookie", format!("sid={CANARY}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // One rejection: the name header contradicts the body.
    let response = mcp_post(&client, &proxy.url)
        .header("mcp-protocol-version", common::MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "add")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // A legacy session with a batch of three elements, then DELETE.
    let session = legacy_initialize(&client, &proxy.url, "2025-03-26").await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": CANARY}}},
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}
    ]);
    let response = common::session_post(&client, &proxy.url, &session, &batch).await;
    assert_eq!(response.status(), 200);
    let response = common::session_delete(&client, &proxy.url, &session).await;
    assert_eq!(response.status(), 204);

    proxy.shutdown().await;

    let lines = audit_lines(dir.path());
    // modern call 1 + initialize 1 + initialized 1 + batch 3 + DELETE 1
    assert_eq!(count_kind(&lines, "request.completed"), 7);
    assert_eq!(count_kind(&lines, "request.rejected"), 1);
    assert_eq!(count_kind(&lines, "session.created"), 1);
    assert_eq!(count_kind(&lines, "session.closed"), 1);
    assert_eq!(count_kind(&lines, "proxy.started"), 1);
    assert_eq!(count_kind(&lines, "proxy.stopped"), 1);
    let rejected = lines
        .iter()
        .find(|line| line["kind"] == "request.rejected")
        .unwrap();
    assert_eq!(rejected["reason"], "header_mismatch");
    assert_eq!(rejected["status"], 400);
    let targets: Vec<_> = lines
        .iter()
        .filter(|line| line["kind"] == "request.completed")
        .filter_map(|line| line["target"].as_str())
        .collect();
    assert!(targets.contains(&"add"));
}

#[tokio::test]
async fn sigterm_keeps_every_accepted_record() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shadowcat"))
        .args(["reverse", "--listen", &listen, "--upstream-stdio"])
        .arg(env!("CARGO_BIN_EXE_shadowcat-example-server"))
        .arg("--audit-dir")
        .arg(dir.path())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let url = format!("http://{listen}/mcp");
    let client = raw_client();
    let mut ready = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(&listen).await.is_ok() {
            ready = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(ready, "the proxy did not start listening");

    const CALLS: i64 = 25;
    for n in 0..CALLS {
        let body = modern_call(json!(n), "add", json!({"a": n, "b": 1}));
        let response = modern_post(&client, &url, &body).await;
        assert_eq!(response.status(), 200);
        let answer = first_message(response).await;
        assert_eq!(answer["id"], n);
    }

    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().await.unwrap();
    assert!(exit.success(), "the proxy exited with {exit}");

    let lines = audit_lines(dir.path());
    assert_eq!(count_kind(&lines, "request.completed"), CALLS as usize);
    assert_eq!(count_kind(&lines, "proxy.stopped"), 1);
}
