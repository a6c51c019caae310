//! Authorization: what an authenticated caller may do.
//!
//! [`Policy`] evaluates each JSON-RPC message against ordered allow/deny rules that
//! match on method, tool, prompt, resource URI, scopes, subject, issuer, authentication
//! method and client address. Every decision carries the deciding rule's id for the
//! `authz.allow` / `authz.deny` audit records. [`forbidden_response`] builds the `403`,
//! and [`Policy::filter_list_response`] hides list entries a caller may not call.
//!
//! ```
//! use shadowcat_core::{JsonRpcBody, Principal};
//! use shadowcat_proxy::policy::{Policy, PolicyConfig};
//!
//! let config: PolicyConfig = toml::from_str(r#"
//!     default = "deny"
//!
//!     [[rules]]
//!     id = "echo-only"
//!     action = "allow"
//!     tools = ["echo"]
//! "#).unwrap();
//! let policy = Policy::new(&config).unwrap();
//!
//! let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
//! let parsed = JsonRpcBody::parse(body).unwrap();
//! let decision = policy.evaluate(&Principal::anonymous(), [127, 0, 0, 1].into(), &parsed.messages()[0]);
//! assert!(decision.allowed);
//! assert_eq!(decision.rule_id.as_deref(), Some("echo-only"));
//! ```

mod config;
mod engine;
mod filter;
mod matcher;
mod response;

pub use config::{Action, DEFAULT_PRIORITY, PolicyConfig, PolicyConfigError, RuleConfig};
pub use engine::{Policy, PolicyDecision};
pub use response::{forbidden_error, forbidden_response, insufficient_scope_challenge};
