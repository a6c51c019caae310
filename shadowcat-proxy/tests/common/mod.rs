//! Shared harness: real rmcp upstreams and a real proxy on 127.0.0.1.

#![allow(dead_code, unreachable_pub)]

pub mod replica;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use shadowcat_proxy::config::{CommandLine, Config};
use shadowcat_proxy::server::Proxy;
use shadowcat_proxy::upstream::resilience::SharedClock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub const MODERN: &str = "2026-07-28";

/// A running proxy and the token that stops it.
pub struct RunningProxy {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub url: String,
    pub stop: CancellationToken,
    pub state: Arc<shadowcat_proxy::pipeline::AppState>,
    pub task: tokio::task::JoinHandle<()>,
}

impl RunningProxy {
    /// Stops the proxy and waits until it has drained and shut down.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        task.await.expect("the proxy task finishes");
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts the proxy with `config`, on an ephemeral loopback port.
pub async fn start_proxy(config: Config) -> RunningProxy {
    start_proxy_with_clock(config, SharedClock::default()).await
}

/// Starts the proxy with `config` and the clock its breakers and budgets read.
pub async fn start_proxy_with_clock(mut config: Config, clock: SharedClock) -> RunningProxy {
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    let proxy = Proxy::bind_with_clock(&config, clock)
        .await
        .expect("proxy binds");
    let addr = proxy.local_addr();
    let admin = proxy.admin_addr();
    let state = Arc::clone(proxy.state());
    let stop = CancellationToken::new();
    let task = tokio::spawn(proxy.run(stop.clone()));
    RunningProxy {
        addr,
        admin,
        url: format!("http://{addr}/mcp"),
        stop,
        state,
        task,
    }
}

pub fn http_config(upstream: &str) -> Config {
    let mut config = Config::default();
    config.upstream.url = Some(upstream.to_owned());
    config
}

pub fn stdio_config() -> Config {
    let mut config = Config::default();
    config.upstream.command = Some(CommandLine::Args(vec![
        env!("CARGO_BIN_EXE_shadowcat-example-server").to_owned(),
    ]));
    config
}

/// Starts the bundled example server over Streamable HTTP.
pub async fn start_example_upstream() -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(shadowcat_proxy::example_server::serve_http_on(
        listener,
        cancel.clone(),
    ));
    (format!("http://{addr}/mcp"), cancel)
}

/// Arguments of the test server's `wait` tool.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WaitArgs {
    /// Ignored label.
    pub label: String,
}

/// A test server whose `wait` tool sends a progress notification, then blocks until
/// the test releases it.
#[derive(Clone)]
pub struct GateServer {
    tool_router: ToolRouter<Self>,
    pub release: Arc<Notify>,
    pub calls: Arc<AtomicUsize>,
    pub cancelled: Arc<AtomicUsize>,
    pub on_cancel: Arc<Notify>,
}

#[tool_router]
impl GateServer {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            release: Arc::new(Notify::new()),
            calls: Arc::new(AtomicUsize::new(0)),
            cancelled: Arc::new(AtomicUsize::new(0)),
            on_cancel: Arc::new(Notify::new()),
        }
    }

    // Logging notifications are deprecated in newer MCP revisions, but they remain the
    // simplest server-initiated message that every era relays.
    #[allow(deprecated)]
    #[tool(description = "Log a message, then wait until released")]
    async fn wait(
        &self,
        Parameters(_args): Parameters<WaitArgs>,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _ = context
            .peer
            .notify_logging_message(rmcp::model::LoggingMessageNotificationParam::new(
                rmcp::model::LoggingLevel::Info,
                json!("started"),
            ))
            .await;
        tokio::select! {
            () = self.release.notified() => {}
            () = context.ct.cancelled() => {
                self.cancelled.fetch_add(1, Ordering::SeqCst);
                self.on_cancel.notify_one();
                return Err(ErrorData::internal_error("cancelled", None));
            }
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(
            "released",
        )]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for GateServer {
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new("gate", "1"))
    }
}

/// Starts a [`GateServer`] over Streamable HTTP and returns its URL and handle.
pub async fn start_gate_upstream() -> (String, GateServer, CancellationToken) {
    let server = GateServer::new();
    let (url, cancel) = serve_http(server.clone()).await;
    (url, server, cancel)
}

/// Serves clones of `server` over Streamable HTTP, legacy sessions included, at
/// `http://127.0.0.1:PORT/mcp`, until the returned token is cancelled.
pub async fn serve_http<S: ServerHandler + Clone>(server: S) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_sse_keep_alive(None)
        .with_cancellation_token(cancel.clone());
    let service: StreamableHttpService<S, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(server.clone()), Default::default(), config);
    let router = axum::Router::new().nest_service("/mcp", service);
    let stop = cancel.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    (format!("http://{addr}/mcp"), cancel)
}

/// Verifies the audit chain in `dir`, checks that `secret` appears in no file, and
/// returns every record.
pub fn read_audit(dir: &std::path::Path, secret: Option<&str>) -> Vec<Value> {
    let files = shadowcat_audit::log_files(dir, "audit").unwrap();
    let report = shadowcat_audit::verify(&files, None).expect("the audit chain verifies");
    assert!(report.records > 0);
    let mut records = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if let Some(secret) = secret {
            assert!(
                !text.contains(secret),
                "a secret reached {}",
                file.display()
            );
        }
        records.extend(
            text.lines()
                .map(|line| serde_json::from_str::<Value>(line).unwrap()),
        );
    }
    records
}

/// Returns the `_meta` object every modern request carries.
pub fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

/// Builds a modern `tools/call` body.
pub fn modern_call(id: Value, tool: &str, arguments: Value) -> Value {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": modern_meta()}
    })
}

/// Builds a plain HTTP client.
pub fn raw_client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

pub fn mcp_post(client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

/// Sends a modern request with correctly mirrored headers.
pub async fn modern_post(client: &reqwest::Client, url: &str, body: &Value) -> reqwest::Response {
    let method = body["method"].as_str().unwrap();
    let mut request = mcp_post(client, url)
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", method);
    if let Some(name) = body["params"]["name"].as_str() {
        request = request.header("mcp-name", name);
    }
    request.json(body).send().await.unwrap()
}

/// Reads a response body that is JSON or an event stream and returns the first
/// JSON-RPC message with an id.
pub async fn first_message(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    if let Ok(value) = serde_json::from_str::<Value>(&text) {
        return value;
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|value| value.get("id").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC message in {text:?}"))
}

/// Sends a JSON body on a legacy session.
pub async fn session_post<B: serde::Serialize + ?Sized>(
    client: &reqwest::Client,
    url: &str,
    session: &str,
    body: &B,
) -> reqwest::Response {
    mcp_post(client, url)
        .header("mcp-session-id", session)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Ends a legacy session with `DELETE`.
pub async fn session_delete(
    client: &reqwest::Client,
    url: &str,
    session: &str,
) -> reqwest::Response {
    client
        .delete(url)
        .header("mcp-session-id", session)
        .send()
        .await
        .unwrap()
}

/// Starts a legacy session through `url` and returns its session id.
pub async fn legacy_initialize(client: &reqwest::Client, url: &str, version: &str) -> String {
    let body = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
    });
    let response = mcp_post(client, url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let init = first_message(response).await;
    assert!(init.get("result").is_some(), "{init}");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = mcp_post(client, url)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", version)
        .json(&initialized)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    session
}

/// Arguments of the counting server's tools.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CountArgs {
    /// Ignored note.
    #[serde(default)]
    pub note: Option<String>,
}

/// A test server whose `alpha` and `beta` tools count how often they ran.
#[derive(Clone)]
pub struct CountingServer {
    tool_router: ToolRouter<Self>,
    pub alpha: Arc<AtomicUsize>,
    pub beta: Arc<AtomicUsize>,
}

#[tool_router]
impl CountingServer {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            alpha: Arc::new(AtomicUsize::new(0)),
            beta: Arc::new(AtomicUsize::new(0)),
        }
    }

    #[tool(description = "Count a call to alpha")]
    async fn alpha(
        &self,
        Parameters(_args): Parameters<CountArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let count = self.alpha.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(CallToolResult::success(vec![ContentBlock::text(
            count.to_string(),
        )]))
    }

    #[tool(description = "Count a call to beta")]
    async fn beta(
        &self,
        Parameters(_args): Parameters<CountArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let count = self.beta.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(CallToolResult::success(vec![ContentBlock::text(
            count.to_string(),
        )]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CountingServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("counting", "1"))
    }
}

/// Starts a [`CountingServer`] over Streamable HTTP.
pub async fn start_counting_upstream() -> (String, CountingServer, CancellationToken) {
    let server = CountingServer::new();
    let (url, cancel) = serve_http(server.clone()).await;
    (url, server, cancel)
}

/// Parses a `[ratelimit]` table written as TOML.
pub fn ratelimit(toml_text: &str) -> shadowcat_ratelimit::RateLimitConfig {
    let config =
        shadowcat_proxy::config::Config::parse(toml_text).expect("the ratelimit table parses");
    config.ratelimit.expect("the text has a [ratelimit] table")
}
