//! `shadowcat-example-server`: the bundled example MCP server (`echo` and `add` tools).
//!
//! With no arguments it speaks MCP over stdin and stdout; with `--listen ADDR` it serves
//! Streamable HTTP at `http://ADDR/mcp`.

use std::net::SocketAddr;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Example MCP server with an `echo` and an `add` tool.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Serve Streamable HTTP at http://ADDR/mcp instead of stdio.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.listen {
        None => shadowcat_proxy::example_server::serve_stdio().await,
        Some(addr) => {
            let cancel = CancellationToken::new();
            let on_signal = cancel.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                on_signal.cancel();
            });
            eprintln!("example MCP server listening on http://{addr}/mcp");
            shadowcat_proxy::example_server::serve_http(addr, cancel).await
        }
    }
}
