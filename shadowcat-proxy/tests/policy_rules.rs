//! Policy evaluation per JSON-RPC message, the 403 response and list filtering.

use std::net::IpAddr;

use http::StatusCode;
use http::header::WWW_AUTHENTICATE;
use serde_json::{Value, json};
use shadowcat_core::{AuthMethod, JsonRpcBody, JsonRpcId, Message, Principal, error_codes};
use shadowcat_proxy::policy::{Policy, PolicyConfig, forbidden_response};

const POLICY: &str = r#"
default = "deny"

[[rules]]
id = "protocol"
action = "allow"
methods = ["initialize", "ping", "notifications/*", "tools/list", "prompts/list", "resources/list"]

[[rules]]
id = "read-tools"
action = "allow"
tools = ["read_*", "search"]
scopes = ["mcp:read"]
reason = "readers may call read-only tools"

[[rules]]
id = "write-tools"
action = "allow"
tools = ["write_*"]
scopes = ["mcp:write"]

[[rules]]
id = "admin-internal-only"
priority = 10
action = "deny"
tools = ["admin_*"]
reason = "admin tools are internal only"

[[rules]]
id = "admin-from-office"
priority = 5
action = "allow"
tools = ["admin_*"]
subjects = ["ops-*"]
client_ips = ["10.0.0.0/8"]

[[rules]]
id = "public-docs"
action = "allow"
resources = ["file:///public/"]

[[rules]]
id = "greeting-prompt"
action = "allow"
prompts = ["greet*"]
auth_methods = ["jwt"]

[[rules]]
id = "trusted-issuer-anything"
action = "allow"
priority = 2000
issuers = ["https://internal.idp"]
"#;

fn policy() -> Policy {
    let config: PolicyConfig = toml::from_str(POLICY).unwrap();
    Policy::new(&config).unwrap()
}

fn principal(subject: &str, scopes: &[&str]) -> Principal {
    Principal {
        subject: subject.to_owned(),
        issuer: Some("https://idp.test".to_owned()),
        client_id: None,
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        method: AuthMethod::Jwt,
    }
}

fn message(method: &str, params: Value) -> Message {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    JsonRpcBody::parse(body.to_string().as_bytes())
        .unwrap()
        .messages()[0]
        .clone()
}

fn call(tool: &str) -> Message {
    message("tools/call", json!({"name": tool, "arguments": {}}))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn decision_table() {
    let policy = policy();
    let reader = principal("alice", &["mcp:read"]);
    let writer = principal("bob", &["mcp:read", "mcp:write"]);
    let ops = principal("ops-carol", &[]);
    let mut internal = principal("svc", &[]);
    internal.issuer = Some("https://internal.idp".to_owned());
    let mut api_key = principal("bot", &[]);
    api_key.method = AuthMethod::ApiKey;
    let outside = ip("203.0.113.9");
    let office = ip("10.1.2.3");

    // (case, principal, client address, message, allowed, deciding rule)
    type Case<'a> = (
        &'a str,
        &'a Principal,
        IpAddr,
        Message,
        bool,
        Option<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "initialize",
            &reader,
            outside,
            message("initialize", json!({})),
            true,
            Some("protocol"),
        ),
        (
            "notification",
            &reader,
            outside,
            message("notifications/initialized", json!({})),
            true,
            Some("protocol"),
        ),
        (
            "read tool",
            &reader,
            outside,
            call("read_file"),
            true,
            Some("read-tools"),
        ),
        (
            "exact tool name",
            &reader,
            outside,
            call("search"),
            true,
            Some("read-tools"),
        ),
        (
            "write without scope",
            &reader,
            outside,
            call("write_file"),
            false,
            None,
        ),
        (
            "write with scope",
            &writer,
            outside,
            call("write_file"),
            true,
            Some("write-tools"),
        ),
        (
            "unknown tool",
            &writer,
            outside,
            call("delete_all"),
            false,
            None,
        ),
        (
            "admin from outside",
            &ops,
            outside,
            call("admin_reset"),
            false,
            Some("admin-internal-only"),
        ),
        (
            "admin from office",
            &ops,
            office,
            call("admin_reset"),
            true,
            Some("admin-from-office"),
        ),
        (
            "admin wrong subject",
            &reader,
            office,
            call("admin_reset"),
            false,
            Some("admin-internal-only"),
        ),
        (
            "public resource",
            &reader,
            outside,
            message("resources/read", json!({"uri": "file:///public/readme.md"})),
            true,
            Some("public-docs"),
        ),
        (
            "private resource",
            &reader,
            outside,
            message("resources/read", json!({"uri": "file:///etc/passwd"})),
            false,
            None,
        ),
        (
            "resource escaping its prefix",
            &reader,
            outside,
            message(
                "resources/read",
                json!({"uri": "file:///public/../etc/passwd"}),
            ),
            false,
            None,
        ),
        (
            "prompt via jwt",
            &reader,
            outside,
            message("prompts/get", json!({"name": "greeting"})),
            true,
            Some("greeting-prompt"),
        ),
        (
            "prompt via api key",
            &api_key,
            outside,
            message("prompts/get", json!({"name": "greeting"})),
            false,
            None,
        ),
        (
            "tool name used as prompt",
            &reader,
            outside,
            message("prompts/get", json!({"name": "read_file"})),
            false,
            None,
        ),
        (
            "trusted issuer",
            &internal,
            outside,
            call("delete_all"),
            true,
            Some("trusted-issuer-anything"),
        ),
        (
            "ipv4-mapped office address",
            &ops,
            ip("::ffff:10.1.2.3"),
            call("admin_reset"),
            true,
            Some("admin-from-office"),
        ),
    ];

    for (name, who, from, message, allowed, rule_id) in cases {
        let decision = policy.evaluate(who, from, &message);
        assert_eq!(decision.allowed, allowed, "{name}");
        assert_eq!(decision.rule_id.as_deref(), rule_id, "{name}");
    }
}

#[test]
fn reasons_and_missing_scope() {
    let policy = policy();
    let reader = principal("alice", &["mcp:read"]);
    let from = ip("203.0.113.9");

    let allowed = policy.evaluate(&reader, from, &call("read_file"));
    assert_eq!(&*allowed.reason, "readers may call read-only tools");
    assert_eq!(allowed.missing_scope, None);

    let denied = policy.evaluate(&reader, from, &call("write_file"));
    assert_eq!(denied.missing_scope.as_deref(), Some("mcp:write"));
    assert!(
        denied.reason.contains("default is deny"),
        "{}",
        denied.reason
    );

    let unknown = policy.evaluate(&reader, from, &call("delete_all"));
    assert_eq!(unknown.missing_scope, None);
}

#[test]
fn priority_beats_file_order() {
    let config: PolicyConfig = toml::from_str(
        r#"
        default = "allow"

        [[rules]]
        id = "first-in-file"
        action = "allow"
        tools = ["x"]

        [[rules]]
        id = "higher-priority"
        priority = 1
        action = "deny"
        tools = ["x"]

        [[rules]]
        id = "same-priority-later"
        priority = 1
        action = "allow"
        tools = ["x"]
        "#,
    )
    .unwrap();
    let policy = Policy::new(&config).unwrap();
    let decision = policy.evaluate(&principal("a", &[]), ip("127.0.0.1"), &call("x"));
    assert!(!decision.allowed);
    assert_eq!(decision.rule_id.as_deref(), Some("higher-priority"));

    let other = policy.evaluate(&principal("a", &[]), ip("127.0.0.1"), &call("y"));
    assert!(other.allowed);
    assert_eq!(other.rule_id, None);
}

#[test]
fn responses_are_always_allowed() {
    let config: PolicyConfig = toml::from_str("default = \"deny\"").unwrap();
    let policy = Policy::new(&config).unwrap();
    let body = br#"{"jsonrpc":"2.0","id":5,"result":{}}"#;
    let parsed = JsonRpcBody::parse(body).unwrap();
    let response = &parsed.messages()[0];
    assert!(
        policy
            .evaluate(&Principal::anonymous(), ip("127.0.0.1"), response)
            .allowed
    );
    assert!(
        !policy
            .evaluate(&Principal::anonymous(), ip("127.0.0.1"), &call("x"))
            .allowed
    );
}

#[test]
fn invalid_rules_name_their_field() {
    let cases = [
        (
            "[[rules]]\nid = \"a\"\naction = \"allow\"\ntools = [\"a[\"]",
            "policy.rules[0].tools",
        ),
        (
            "[[rules]]\nid = \"a\"\naction = \"allow\"\nclient_ips = [\"10.0.0.0/40\"]",
            "policy.rules[0].client_ips",
        ),
        (
            "[[rules]]\nid = \"a\"\naction = \"allow\"\n[[rules]]\nid = \"a\"\naction = \"deny\"",
            "policy.rules[1].id",
        ),
        (
            "[[rules]]\nid = \"a\"\naction = \"allow\"\nresources = [\"\"]",
            "policy.rules[0].resources",
        ),
    ];
    for (text, field) in cases {
        let config: PolicyConfig = toml::from_str(text).unwrap();
        let error = Policy::new(&config).unwrap_err();
        assert_eq!(error.field, field, "{text}");
    }
    let unknown: Result<PolicyConfig, _> =
        toml::from_str("[[rules]]\nid = \"a\"\naction = \"allow\"\ntool = [\"x\"]");
    assert!(unknown.is_err());
}

#[test]
fn forbidden_response_carries_scope_and_id() {
    let policy = policy();
    let reader = principal("alice", &["mcp:read"]);
    let from = ip("203.0.113.9");
    let id = JsonRpcId::Number(42.into());

    let denied = policy.evaluate(&reader, from, &call("write_file"));
    let response = forbidden_response(&denied, Some(&id));
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        "Bearer error=\"insufficient_scope\", scope=\"mcp:write\""
    );
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["id"], 42);
    assert_eq!(body["error"]["code"], error_codes::FORBIDDEN);
    assert_eq!(body["error"]["data"]["required_scope"], "mcp:write");

    let plain = policy.evaluate(&reader, from, &call("delete_all"));
    let response = forbidden_response(&plain, Some(&id));
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains("default"),
        "the body must not reveal the rule: {message}"
    );
}

/// Builds a `tools/list` response shaped as an MCP server sends it.
fn tools_list() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 3,
        "result": {
            "tools": [
                {"name": "read_file", "description": "Read a file",
                 "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
                {"name": "write_file", "description": "Write a file",
                 "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}, "text": {"type": "string"}}}},
                {"name": "search", "title": "Search",
                 "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
                {"name": "admin_reset", "inputSchema": {"type": "object"}},
                {"description": "entry without a name", "inputSchema": {"type": "object"}}
            ],
            "nextCursor": "page-2"
        }
    })
}

fn tool_names(response: &Value) -> Vec<&str> {
    response["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect()
}

#[test]
fn tools_list_shows_only_callable_tools() {
    let policy = policy();
    let from = ip("203.0.113.9");

    let mut response = tools_list();
    let removed = policy.filter_list_response(
        &principal("alice", &["mcp:read"]),
        from,
        "tools/list",
        &mut response,
    );
    assert_eq!(tool_names(&response), ["read_file", "search"]);
    assert_eq!(removed, 3);
    assert_eq!(response["result"]["nextCursor"], "page-2");
    assert_eq!(
        response["result"]["tools"][0]["inputSchema"]["required"][0],
        "path"
    );

    let mut response = tools_list();
    policy.filter_list_response(
        &principal("ops-dan", &["mcp:write"]),
        ip("10.9.9.9"),
        "tools/list",
        &mut response,
    );
    assert_eq!(tool_names(&response), ["write_file", "admin_reset"]);
}

#[test]
fn prompts_and_resources_lists_are_filtered() {
    let policy = policy();
    let from = ip("203.0.113.9");
    let reader = principal("alice", &[]);

    let mut prompts = json!({"jsonrpc": "2.0", "id": 1, "result": {"prompts": [
        {"name": "greeting"}, {"name": "summarize", "arguments": []}
    ]}});
    assert_eq!(
        policy.filter_list_response(&reader, from, "prompts/list", &mut prompts),
        1
    );
    assert_eq!(prompts["result"]["prompts"][0]["name"], "greeting");

    let mut resources = json!({"jsonrpc": "2.0", "id": 2, "result": {"resources": [
        {"uri": "file:///public/a.md", "name": "a"},
        {"uri": "file:///private/b.md", "name": "b"}
    ]}});
    assert_eq!(
        policy.filter_list_response(&reader, from, "resources/list", &mut resources),
        1
    );
    assert_eq!(resources["result"]["resources"][0]["name"], "a");

    let mut templates = json!({"jsonrpc": "2.0", "id": 3, "result": {"resourceTemplates": [
        {"uriTemplate": "file:///public/{path}", "name": "public"},
        {"uriTemplate": "file:///{path}", "name": "everything"}
    ]}});
    policy.filter_list_response(&reader, from, "resources/templates/list", &mut templates);
    assert_eq!(
        templates["result"]["resourceTemplates"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        templates["result"]["resourceTemplates"][0]["name"],
        "public"
    );
}

#[test]
fn error_responses_and_other_methods_are_untouched() {
    let policy = policy();
    let mut error = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "x"}});
    let before = error.clone();
    assert_eq!(
        policy.filter_list_response(
            &principal("a", &[]),
            ip("127.0.0.1"),
            "tools/list",
            &mut error
        ),
        0
    );
    assert_eq!(error, before);

    let mut other = tools_list();
    assert_eq!(
        policy.filter_list_response(
            &principal("a", &[]),
            ip("127.0.0.1"),
            "tools/call",
            &mut other
        ),
        0
    );
    assert_eq!(other, tools_list());
}
