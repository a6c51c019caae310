//! The `[policy]` table of the proxy configuration.

use serde::Deserialize;
use shadowcat_core::AuthMethod;

/// Default `priority` of a rule. Lower numbers are evaluated first.
pub const DEFAULT_PRIORITY: u32 = 1000;

/// The action a rule or the default takes on a matching message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Reject the message with `403`.
    #[default]
    Deny,
    /// Let the message through.
    Allow,
}

impl Action {
    /// Returns the action's name as written in configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Allow => "allow",
        }
    }
}

/// The `[policy]` table: which principal may send which JSON-RPC message.
///
/// Rules are evaluated lowest `priority` first, ties in file order, and the first rule
/// whose conditions all hold decides. When none holds, `default` decides. `deny` is the
/// default and the recommended setting, so a method no rule names stays closed.
///
/// ```toml
/// [policy]
/// default = "deny"
///
/// [[policy.rules]]
/// id = "protocol"
/// action = "allow"
/// methods = ["initialize", "ping", "notifications/*", "tools/list", "prompts/list"]
///
/// [[policy.rules]]
/// id = "read-tools"
/// action = "allow"
/// tools = ["read_*", "search"]
/// scopes = ["mcp:read"]
///
/// [[policy.rules]]
/// id = "no-admin-from-outside"
/// priority = 10
/// action = "deny"
/// tools = ["admin_*"]
/// client_ips = ["0.0.0.0/0", "::/0"]
/// reason = "admin tools are internal only"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Decision when no rule matches. Defaults to `deny`.
    #[serde(default)]
    pub default: Action,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// One `[[policy.rules]]` entry.
///
/// Every condition that is present must hold (AND). Within one list, any entry may
/// match (OR), except `scopes`, which the principal must hold all of. The target lists
/// `tools`, `prompts` and `resources` together form one condition: the message must be
/// a `tools/call` of a listed tool, a `prompts/get` of a listed prompt, or a
/// `resources/read`, `resources/subscribe` or `resources/unsubscribe` of a listed URI
/// prefix. A rule without conditions matches every message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique id, written to `authz.allow` / `authz.deny` audit records.
    pub id: String,
    /// The action taken on a matching message.
    pub action: Action,
    /// Evaluation order: lower first, ties in file order. Defaults to 1000.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// The rule's purpose, for audit records. Never sent to clients.
    #[serde(default)]
    pub reason: Option<String>,
    /// JSON-RPC method globs, for example `tools/*`.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Tool name globs, for `tools/call`.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Prompt name globs, for `prompts/get`.
    #[serde(default)]
    pub prompts: Vec<String>,
    /// Resource URI prefixes, for `resources/read`, `resources/subscribe` and
    /// `resources/unsubscribe`.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Scopes the principal must hold, all of them.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Subject globs.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Issuers, compared exactly.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Client address ranges in CIDR form, for example `10.0.0.0/8`.
    #[serde(default)]
    pub client_ips: Vec<String>,
    /// Authentication methods: `jwt`, `api_key` or `anonymous`.
    #[serde(default)]
    pub auth_methods: Vec<AuthMethod>,
}

fn default_priority() -> u32 {
    DEFAULT_PRIORITY
}

/// An invalid `[policy]` table.
#[derive(Debug, thiserror::Error)]
#[error("invalid {field} = {value:?}: {reason}")]
pub struct PolicyConfigError {
    /// Dotted path of the field, for example `policy.rules[2].tools`.
    pub field: String,
    /// The rejected value as written.
    pub value: String,
    /// The reason the value is invalid.
    pub reason: String,
}

impl PolicyConfigError {
    pub(crate) fn new(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}
