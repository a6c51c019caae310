//! The compiled policy and its per-message evaluation.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use shadowcat_core::{AuthMethod, Message, MessageKind, Principal, normalize_ip};

use super::config::{Action, PolicyConfig, PolicyConfigError, RuleConfig};
use super::matcher::{NameMatcher, NetMatcher, PrefixMatcher};

/// The outcome of evaluating one message, with what the audit record needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDecision {
    /// Whether the message may pass.
    pub allowed: bool,
    /// Id of the deciding rule, or `None` when the default decided.
    pub rule_id: Option<Arc<str>>,
    /// The deciding rule's `reason` (or a fixed text for the default), for audit
    /// records only.
    pub reason: Arc<str>,
    /// For a denial: the space-separated scopes of the first allow rule that failed
    /// only for lack of scope, so the client can ask for them.
    pub missing_scope: Option<Arc<str>>,
}

/// One rule, compiled.
#[derive(Debug)]
struct Rule {
    id: Arc<str>,
    action: Action,
    reason: Arc<str>,
    methods: Option<NameMatcher>,
    tools: Option<NameMatcher>,
    prompts: Option<NameMatcher>,
    resources: Option<PrefixMatcher>,
    scopes: Vec<Box<str>>,
    scope_text: Option<Arc<str>>,
    subjects: Option<NameMatcher>,
    issuers: Vec<Box<str>>,
    client_ips: Option<NetMatcher>,
    auth_methods: Vec<AuthMethod>,
}

/// How far a rule matched a message.
enum Match {
    No,
    /// Everything but the scopes matched.
    MissingScope,
    Yes,
}

/// The authorization policy: rules compiled at load time, evaluated per JSON-RPC
/// message.
///
/// # Performance
///
/// Patterns are compiled when the policy is built. Exact names and the `*`,
/// `prefix*` and `*suffix` shapes are plain string checks, and other globs run through
/// precompiled `globset` sets. Evaluation builds no strings, because decisions share
/// the rule's id and reason through `Arc`.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    default: Action,
    default_reason: Arc<str>,
    response_reason: Arc<str>,
}

/// Methods whose target is a resource URI.
const RESOURCE_METHODS: [&str; 3] = [
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
];

impl Policy {
    /// Compiles the `[policy]` table.
    ///
    /// # Errors
    ///
    /// Returns [`PolicyConfigError`] naming the rule field of a duplicate or empty id,
    /// an invalid glob, CIDR range or scope.
    pub fn new(config: &PolicyConfig) -> Result<Self, PolicyConfigError> {
        let mut seen_ids = HashSet::new();
        let mut indexed: Vec<(u32, usize, Rule)> = Vec::with_capacity(config.rules.len());
        for (index, rule_config) in config.rules.iter().enumerate() {
            if !seen_ids.insert(rule_config.id.as_str()) {
                return Err(PolicyConfigError::new(
                    format!("policy.rules[{index}].id"),
                    &rule_config.id,
                    "rule ids must be unique",
                ));
            }
            let rule = compile_rule(index, rule_config)?;
            indexed.push((rule_config.priority, index, rule));
        }
        // Stable order: priority first, then position in the file.
        indexed.sort_by_key(|(priority, index, _)| (*priority, *index));

        let default_reason = match config.default {
            Action::Allow => "no rule matched; the default is allow",
            Action::Deny => "no rule matched; the default is deny",
        };
        Ok(Self {
            rules: indexed.into_iter().map(|(_, _, rule)| rule).collect(),
            default: config.default,
            default_reason: Arc::from(default_reason),
            response_reason: Arc::from("responses to server requests are not subject to policy"),
        })
    }

    /// Returns the number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Returns true if the policy has no rules, so the default decides everything.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides whether `principal`, connecting from `client_ip`, may send `message`.
    ///
    /// Responses (a client's reply to a server request) carry no method and are always
    /// allowed. Notifications are evaluated like requests, so under `default = "deny"`
    /// allow `notifications/*` explicitly.
    pub fn evaluate(
        &self,
        principal: &Principal,
        client_ip: IpAddr,
        message: &Message,
    ) -> PolicyDecision {
        if message.kind == MessageKind::Response {
            return PolicyDecision {
                allowed: true,
                rule_id: None,
                reason: Arc::clone(&self.response_reason),
                missing_scope: None,
            };
        }
        self.evaluate_call(
            principal,
            client_ip,
            message.method.as_deref().unwrap_or_default(),
            message.target.as_deref(),
        )
    }

    /// Decides a call given by its method and target (tool or prompt name, or
    /// resource URI), as [`Policy::evaluate`] does for a request.
    pub fn evaluate_call(
        &self,
        principal: &Principal,
        client_ip: IpAddr,
        method: &str,
        target: Option<&str>,
    ) -> PolicyDecision {
        let client_ip = normalize_ip(client_ip);
        let mut missing_scope: Option<&Arc<str>> = None;
        for rule in &self.rules {
            match rule.matches(principal, client_ip, method, target) {
                Match::No => {}
                Match::MissingScope => {
                    if rule.action == Action::Allow && missing_scope.is_none() {
                        missing_scope = rule.scope_text.as_ref();
                    }
                }
                Match::Yes => {
                    let allowed = rule.action == Action::Allow;
                    return PolicyDecision {
                        allowed,
                        rule_id: Some(Arc::clone(&rule.id)),
                        reason: Arc::clone(&rule.reason),
                        missing_scope: if allowed {
                            None
                        } else {
                            missing_scope.cloned()
                        },
                    };
                }
            }
        }
        let allowed = self.default == Action::Allow;
        PolicyDecision {
            allowed,
            rule_id: None,
            reason: Arc::clone(&self.default_reason),
            missing_scope: if allowed {
                None
            } else {
                missing_scope.cloned()
            },
        }
    }
}

impl Rule {
    fn matches(
        &self,
        principal: &Principal,
        client_ip: IpAddr,
        method: &str,
        target: Option<&str>,
    ) -> Match {
        let conditions_match =
            (self.auth_methods.is_empty() || self.auth_methods.contains(&principal.method))
                && self
                    .subjects
                    .as_ref()
                    .is_none_or(|subjects| subjects.is_match(&principal.subject))
                && (self.issuers.is_empty()
                    || principal.issuer.as_deref().is_some_and(|issuer| {
                        self.issuers.iter().any(|allowed| **allowed == *issuer)
                    }))
                && self
                    .client_ips
                    .as_ref()
                    .is_none_or(|nets| nets.is_match(client_ip))
                && self
                    .methods
                    .as_ref()
                    .is_none_or(|methods| methods.is_match(method))
                && self.target_matches(method, target);
        if !conditions_match {
            return Match::No;
        }
        if self.scopes.iter().all(|scope| principal.has_scope(scope)) {
            Match::Yes
        } else {
            Match::MissingScope
        }
    }

    fn target_matches(&self, method: &str, target: Option<&str>) -> bool {
        if self.tools.is_none() && self.prompts.is_none() && self.resources.is_none() {
            return true;
        }
        let Some(target) = target else {
            return false;
        };
        match method {
            "tools/call" => self
                .tools
                .as_ref()
                .is_some_and(|tools| tools.is_match(target)),
            "prompts/get" => self
                .prompts
                .as_ref()
                .is_some_and(|prompts| prompts.is_match(target)),
            _ if RESOURCE_METHODS.contains(&method) => self
                .resources
                .as_ref()
                .is_some_and(|resources| resources.is_match(target, self.action)),
            _ => false,
        }
    }
}

fn compile_rule(index: usize, config: &RuleConfig) -> Result<Rule, PolicyConfigError> {
    let field = |name: &str| format!("policy.rules[{index}].{name}");
    if config.id.is_empty() {
        return Err(PolicyConfigError::new(
            field("id"),
            "",
            "every rule needs an id for audit records",
        ));
    }
    for scope in &config.scopes {
        if scope.is_empty() || scope.contains([' ', '"', '\\']) {
            return Err(PolicyConfigError::new(
                field("scopes"),
                scope,
                "a scope is non-empty and has no spaces, quotes or backslashes",
            ));
        }
    }
    let reason = config
        .reason
        .clone()
        .unwrap_or_else(|| format!("rule {} ({})", config.id, config.action.as_str()));
    let scope_text = (!config.scopes.is_empty()).then(|| Arc::from(config.scopes.join(" ")));
    Ok(Rule {
        id: Arc::from(config.id.as_str()),
        action: config.action,
        reason: Arc::from(reason),
        methods: NameMatcher::new(&field("methods"), &config.methods)?,
        tools: NameMatcher::new(&field("tools"), &config.tools)?,
        prompts: NameMatcher::new(&field("prompts"), &config.prompts)?,
        resources: PrefixMatcher::new(&field("resources"), &config.resources)?,
        scopes: config
            .scopes
            .iter()
            .map(|scope| Box::from(scope.as_str()))
            .collect(),
        scope_text,
        subjects: NameMatcher::new(&field("subjects"), &config.subjects)?,
        issuers: config
            .issuers
            .iter()
            .map(|issuer| Box::from(issuer.as_str()))
            .collect(),
        client_ips: NetMatcher::new(&field("client_ips"), &config.client_ips)?,
        auth_methods: config.auth_methods.clone(),
    })
}
