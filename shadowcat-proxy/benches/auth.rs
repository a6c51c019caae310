//! Authentication and authorization hot paths.
//!
//! Run with `cargo bench -p shadowcat-proxy --bench auth`. Keys are the test fixtures
//! under `tests/fixtures/auth`.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use shadowcat_core::{AuthMethod, JsonRpcBody, Principal};
use shadowcat_proxy::auth::{AuthConfig, Authenticator};
use shadowcat_proxy::policy::{Policy, PolicyConfig};

const RSA_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/auth/rsa_a.key.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../tests/fixtures/auth/rsa_a.pub.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/auth/ec_a.key.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../tests/fixtures/auth/ec_a.pub.pem");

fn authenticator(directory: &Path, cache_entries: usize) -> Authenticator {
    let rsa_path = directory.join("rsa.pem");
    let ec_path = directory.join("ec.pem");
    std::fs::write(&rsa_path, RSA_PUBLIC).unwrap();
    std::fs::write(&ec_path, EC_PUBLIC).unwrap();
    let text = format!(
        r#"
        [jwt]
        issuer = "https://idp.bench"
        audience = "https://mcp.bench"
        token_cache_max_entries = {cache_entries}
        public_keys = [
            {{ kid = "rsa", pem_file = "{}", algorithm = "RS256" }},
            {{ kid = "ec", pem_file = "{}", algorithm = "ES256" }},
        ]
        "#,
        rsa_path.display(),
        ec_path.display()
    );
    let config: AuthConfig = toml::from_str(&text).unwrap();
    Authenticator::new(&config)
        .now_or_never()
        .expect("no JWKS URL, so nothing to wait for")
        .unwrap()
}

fn bearer(algorithm: Algorithm, kid: &str, key: &EncodingKey) -> HeaderMap {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": "https://idp.bench", "aud": "https://mcp.bench", "sub": "bench-user",
        "scope": "mcp:read mcp:write", "iat": now, "exp": now + 3600,
    });
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    let token = jsonwebtoken::encode(&header, &claims, key).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

fn authenticate(authenticator: &Authenticator, headers: &HeaderMap) {
    let result = authenticator
        .authenticate(black_box(headers), "/mcp")
        .now_or_never()
        .expect("static keys never wait");
    black_box(result.unwrap());
}

fn bench_jwt(c: &mut Criterion) {
    let directory = tempfile::tempdir().unwrap();
    let rsa = bearer(
        Algorithm::RS256,
        "rsa",
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    );
    let ec = bearer(
        Algorithm::ES256,
        "ec",
        &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
    );

    let cached = authenticator(directory.path(), 1024);
    authenticate(&cached, &rsa);
    c.bench_function("jwt_cached_rs256", |b| {
        b.iter(|| authenticate(&cached, &rsa))
    });

    let uncached = authenticator(directory.path(), 0);
    c.bench_function("jwt_uncached_rs256", |b| {
        b.iter(|| authenticate(&uncached, &rsa))
    });
    c.bench_function("jwt_uncached_es256", |b| {
        b.iter(|| authenticate(&uncached, &ec))
    });
}

/// 100 rules: 98 that never match the benchmarked call, then the deciding pair.
fn hundred_rule_policy() -> Policy {
    let mut text = String::from("default = \"deny\"\n");
    for index in 0..98 {
        text.push_str(&format!(
            "[[rules]]\nid = \"rule-{index}\"\naction = \"allow\"\ntools = [\"tool_{index}_*\", \"exact_{index}\"]\nscopes = [\"scope-{index}\"]\nsubjects = [\"team-{index}-*\"]\n"
        ));
    }
    text.push_str("[[rules]]\nid = \"deny-internal\"\naction = \"deny\"\ntools = [\"internal_*\"]\nclient_ips = [\"0.0.0.0/0\"]\n");
    text.push_str("[[rules]]\nid = \"readers\"\naction = \"allow\"\nmethods = [\"tools/*\"]\ntools = [\"read_*\"]\nscopes = [\"mcp:read\"]\n");
    let config: PolicyConfig = toml::from_str(&text).unwrap();
    let policy = Policy::new(&config).unwrap();
    assert_eq!(policy.len(), 100);
    policy
}

fn bench_policy(c: &mut Criterion) {
    let policy = hundred_rule_policy();
    let principal = Principal {
        subject: "alice".to_owned(),
        issuer: Some("https://idp.bench".to_owned()),
        client_id: None,
        scopes: vec!["mcp:read".to_owned()],
        method: AuthMethod::Jwt,
    };
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}"#;
    let parsed = JsonRpcBody::parse(body).unwrap();
    let message = &parsed.messages()[0];
    let client: IpAddr = [198, 51, 100, 7].into();
    assert!(policy.evaluate(&principal, client, message).allowed);

    c.bench_function("policy_100_rules_last_match", |b| {
        b.iter(|| black_box(policy.evaluate(black_box(&principal), client, black_box(message))))
    });
}

criterion_group!(benches, bench_jwt, bench_policy);
criterion_main!(benches);
