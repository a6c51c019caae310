//! The bundled example MCP server: an `echo` and an `add` tool.
//!
//! It serves both MCP eras, over stdio or Streamable HTTP, so the proxy can be tried and
//! tested with nothing else installed. The `shadowcat-example-server` binary wraps it.

use std::net::SocketAddr;

use axum::serve::ListenerExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Arguments of the `echo` tool.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// Text to send back.
    pub text: String,
}

/// Arguments of the `add` tool.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    /// First addend.
    pub a: i64,
    /// Second addend.
    pub b: i64,
}

/// The example server's handler.
#[derive(Debug, Clone)]
pub struct ExampleServer {
    tool_router: ToolRouter<Self>,
}

impl Default for ExampleServer {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl ExampleServer {
    /// Builds the handler.
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Return the given text unchanged")]
    async fn echo(
        &self,
        Parameters(args): Parameters<EchoArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text(args.text)]))
    }

    #[tool(description = "Add two integers")]
    async fn add(
        &self,
        Parameters(args): Parameters<AddArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let sum = args
            .a
            .checked_add(args.b)
            .ok_or_else(|| ErrorData::invalid_params("the sum overflows a 64-bit integer", None))?;
        Ok(CallToolResult::success(vec![ContentBlock::text(
            sum.to_string(),
        )]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ExampleServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("shadowcat-example-server", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// Serves the example server over stdin and stdout until the client closes stdin.
///
/// # Errors
///
/// Returns an error when the MCP handshake or the transport fails.
pub async fn serve_stdio() -> anyhow::Result<()> {
    let running = ExampleServer::new().serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}

/// Builds the Streamable HTTP service for the example server, with legacy sessions
/// enabled so clients of both eras can use it.
pub fn http_service(
    cancel: CancellationToken,
) -> StreamableHttpService<ExampleServer, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_cancellation_token(cancel);
    StreamableHttpService::new(|| Ok(ExampleServer::new()), Default::default(), config)
}

/// Serves the example server over Streamable HTTP at `http://ADDR/mcp` until `cancel`
/// fires.
///
/// # Errors
///
/// Returns an error when the listener cannot bind or the server fails.
pub async fn serve_http(addr: SocketAddr, cancel: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_http_on(listener, cancel).await
}

/// Serves the example server over Streamable HTTP on an already bound listener.
///
/// # Errors
///
/// Returns an error when the server fails.
pub async fn serve_http_on(
    listener: tokio::net::TcpListener,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let router = axum::Router::new().nest_service("/mcp", http_service(cancel.clone()));
    axum::serve(listener.tap_io(crate::server::set_nodelay), router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await?;
    Ok(())
}
