//! Real rmcp clients talking to real rmcp servers through the proxy, in every era rmcp
//! supports, over Streamable HTTP and stdio upstreams.

mod common;

use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::json;

async fn connect(
    url: &str,
    lifecycle: Option<ClientLifecycleMode>,
) -> RunningService<RoleClient, ()> {
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    match lifecycle {
        None => ().serve(transport).await.expect("legacy client connects"),
        Some(lifecycle) => {
            ().serve_with_lifecycle(transport, lifecycle)
                .await
                .expect("client connects")
        }
    }
}

fn modern() -> Option<ClientLifecycleMode> {
    Some(ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    })
}

async fn call_tools(client: &RunningService<RoleClient, ()>) {
    let tools = client.list_all_tools().await.expect("tools/list works");
    let mut names: Vec<_> = tools.iter().map(|tool| tool.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["add", "echo"]);

    let arguments = json!({"a": 40, "b": 2}).as_object().unwrap().clone();
    let sum = client
        .call_tool(CallToolRequestParams::new("add").with_arguments(arguments))
        .await
        .expect("add works");
    assert_eq!(sum.content[0].as_text().unwrap().text, "42");

    let arguments = json!({"text": "through the proxy"})
        .as_object()
        .unwrap()
        .clone();
    let echoed = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(arguments))
        .await
        .expect("echo works");
    assert_eq!(
        echoed.content[0].as_text().unwrap().text,
        "through the proxy"
    );
}

#[tokio::test]
async fn legacy_client_over_http_upstream() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let client = connect(&proxy.url, None).await;
    call_tools(&client).await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn modern_client_over_http_upstream() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let client = connect(&proxy.url, modern()).await;
    call_tools(&client).await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn legacy_client_over_stdio_upstream() {
    let proxy = common::start_proxy(common::stdio_config()).await;
    let client = connect(&proxy.url, None).await;
    call_tools(&client).await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn modern_client_over_stdio_upstream() {
    let proxy = common::start_proxy(common::stdio_config()).await;
    let client = connect(&proxy.url, modern()).await;
    call_tools(&client).await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn auto_client_picks_modern_through_proxy() {
    let (upstream, _server) = common::start_example_upstream().await;
    let proxy = common::start_proxy(common::http_config(&upstream)).await;
    let lifecycle = ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    };
    let client = connect(&proxy.url, Some(lifecycle)).await;
    call_tools(&client).await;
    client.cancel().await.unwrap();
}
