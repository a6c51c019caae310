//! The MCP servers behind the proxy: Streamable HTTP endpoints and stdio commands.

pub mod group;
pub mod http;
pub mod resilience;
pub mod stdio;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde_json::Value;
use shadowcat_core::mcp::{self, Era};

pub use self::group::{Attempt, Member, Routes, UpstreamGroup};
pub use self::http::HttpUpstream;
pub use self::stdio::{StdioChild, StdioPool};

/// The error returned when the upstream cannot serve a request.
///
/// The messages are for logs and audit records; clients get a fixed message per kind,
/// never the upstream's own error text.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream could not be reached or started.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// The upstream did not respond in time.
    #[error("upstream timed out")]
    Timeout,
    /// The upstream failed while serving the request.
    #[error("upstream failed: {0}")]
    Failed(String),
    /// The proxy could not build the upstream request.
    #[error("could not build the upstream request: {0}")]
    Internal(String),
}

/// The transport of an upstream.
#[derive(Debug, Clone)]
pub enum UpstreamKind {
    /// A Streamable HTTP endpoint.
    Http(Box<HttpUpstream>),
    /// A stdio command: one child per legacy session, a pool for modern requests.
    Stdio {
        /// Program and arguments.
        argv: Arc<[String]>,
        /// Children shared by modern stateless requests.
        pool: Arc<StdioPool>,
    },
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUpstream")
            .field("uri", self.uri())
            .finish()
    }
}

/// The eras an upstream serves, learned by probing it once.
#[derive(Debug, Default)]
pub struct EraSupport(AtomicU8);

const PROBED: u8 = 1;
const MODERN: u8 = 2;
const LEGACY: u8 = 4;

impl EraSupport {
    /// Records the outcome of a probe.
    pub fn set(&self, modern: bool, legacy: bool) {
        let mut bits = PROBED;
        if modern {
            bits |= MODERN;
        }
        if legacy {
            bits |= LEGACY;
        }
        self.0.store(bits, Ordering::Release);
    }

    /// Returns true once a probe has succeeded.
    pub fn is_known(&self) -> bool {
        self.0.load(Ordering::Acquire) & PROBED != 0
    }

    /// Returns whether the upstream serves `era`, or `None` before the first probe.
    pub fn supports(&self, era: Era) -> Option<bool> {
        let bits = self.0.load(Ordering::Acquire);
        if bits & PROBED == 0 {
            return None;
        }
        Some(match era {
            Era::Modern => bits & MODERN != 0,
            Era::Legacy => bits & LEGACY != 0,
        })
    }
}

/// Builds a modern `server/discover` request with the proxy's client metadata.
pub fn discover_request() -> Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": "shadowcat-discover",
        "method": "server/discover",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": mcp::MODERN_VERSIONS[0],
                "io.modelcontextprotocol/clientInfo": {
                    "name": "shadowcat",
                    "version": env!("CARGO_PKG_VERSION")
                },
                "io.modelcontextprotocol/clientCapabilities": {}
            }
        }
    })
}

/// Reads the eras a `server/discover` response advertises.
///
/// A JSON-RPC error (a legacy server that does not know the method) means legacy only.
pub fn eras_from_discover(response: &Value) -> (bool, bool) {
    let Some(versions) = response
        .pointer("/result/supportedVersions")
        .and_then(Value::as_array)
    else {
        return (false, true);
    };
    let mut modern = false;
    let mut legacy = false;
    for version in versions.iter().filter_map(Value::as_str) {
        match mcp::era_of(version) {
            Some(Era::Modern) => modern = true,
            Some(Era::Legacy) => legacy = true,
            None => {}
        }
    }
    (modern, legacy)
}

/// Default timeout of one era probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_result_sets_eras() {
        let response =
            serde_json::json!({"result": {"supportedVersions": ["2025-06-18", "2026-07-28"]}});
        assert_eq!(eras_from_discover(&response), (true, true));
        let error = serde_json::json!({"error": {"code": -32601, "message": "not found"}});
        assert_eq!(eras_from_discover(&error), (false, true));
    }

    #[test]
    fn era_support_starts_unknown() {
        let support = EraSupport::default();
        assert_eq!(support.supports(Era::Modern), None);
        support.set(true, false);
        assert_eq!(support.supports(Era::Modern), Some(true));
        assert_eq!(support.supports(Era::Legacy), Some(false));
    }
}
