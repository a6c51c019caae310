//! List filtering on a `tools/list` result produced by a real MCP server: the example
//! server, queried over Streamable HTTP on 127.0.0.1 with the rmcp client.

use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};
use shadowcat_core::{AuthMethod, Principal};
use shadowcat_proxy::example_server::serve_http_on;
use shadowcat_proxy::policy::{Policy, PolicyConfig};
use tokio_util::sync::CancellationToken;

async fn example_tools_list() -> Value {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let server = tokio::spawn(serve_http_on(listener, cancel.clone()));

    let transport = StreamableHttpClientTransport::from_uri(format!("http://{addr}/mcp"));
    let client = ().serve(transport).await.unwrap();
    let tools = client.list_tools(None).await.unwrap();
    client.cancel().await.unwrap();
    cancel.cancel();
    server.await.unwrap().unwrap();

    json!({"jsonrpc": "2.0", "id": 2, "result": serde_json::to_value(&tools).unwrap()})
}

#[tokio::test]
async fn example_server_tools_are_filtered() {
    let mut response = example_tools_list().await;
    let mut names: Vec<&str> = response["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["add", "echo"]);

    let config: PolicyConfig = toml::from_str(
        r#"
        [[rules]]
        id = "echo-for-readers"
        action = "allow"
        tools = ["echo"]
        scopes = ["mcp:read"]
        "#,
    )
    .unwrap();
    let policy = Policy::new(&config).unwrap();
    let reader = Principal {
        subject: "alice".to_owned(),
        issuer: None,
        client_id: None,
        scopes: vec!["mcp:read".to_owned()],
        method: AuthMethod::ApiKey,
    };

    let removed =
        policy.filter_list_response(&reader, [127, 0, 0, 1].into(), "tools/list", &mut response);
    assert_eq!(removed, 1);
    let tools = response["result"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0]["name"], "echo");
    assert!(
        tools[0]["inputSchema"].is_object(),
        "entries are kept whole"
    );
}
