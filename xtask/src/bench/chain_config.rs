//! The proxy configuration of the full-chain and flood runs. It turns on JWT
//! authentication with one token reused for every request, so the proxy's token cache is
//! hit. It adds 20 policy rules, every rate-limit tier with limits that do not reject, and
//! a lossless audit log in a temporary directory.
//!
//! This module is the only place that writes the `shadowcat.toml` tables of those stages.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// Private key that signs the bench token; it protects nothing (see `xtask/keys`).
const BENCH_PRIVATE_KEY: &str = include_str!("../../keys/bench-es256-private.pem");
/// Public key the proxy verifies the bench token with.
const BENCH_PUBLIC_KEY: &str = include_str!("../../keys/bench-es256-public.pem");
/// Key id of the bench key, sent in the token's `kid` header.
const KEY_ID: &str = "xtask-bench";
/// Issuer, audience and subject of the bench token.
const TOKEN_ISSUER: &str = "https://xtask-bench.invalid";
const TOKEN_AUDIENCE: &str = "shadowcat-bench";
const TOKEN_SUBJECT: &str = "bench-client";
/// Lifetime of the bench token: longer than any run.
const TOKEN_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// Rate of every tier that must not reject, in requests per second: far above what two
/// cores can serve.
const UNLIMITED_RATE: u32 = 10_000_000;

/// Number of policy rules, so the policy engine does real matching work.
const POLICY_RULES: usize = 20;

/// Settings that differ between the runs that use a generated config.
#[derive(Debug, Clone)]
pub(crate) struct ChainSettings {
    /// The example server's MCP endpoint.
    pub(crate) upstream_url: String,
    /// Per-IP limit in requests per second for the flood test. `None` sets the per-IP
    /// limits as high as the others, so they never reject.
    pub(crate) ip_requests_per_second: Option<u32>,
}

/// A generated config and the token the load generator sends with it.
#[derive(Debug, Clone)]
pub(crate) struct ChainConfig {
    /// Contents of `shadowcat.toml`.
    pub(crate) toml: String,
    /// Bearer token accepted by the config's authentication.
    pub(crate) bearer_token: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    scope: &'a str,
    iat: u64,
    exp: u64,
}

/// Signs the bench token with the bench key (ES256).
///
/// # Errors
///
/// Fails when the key cannot be parsed or the system clock is before 1970.
pub(crate) fn sign_bench_token(now: SystemTime) -> anyhow::Result<String> {
    let issued_at = now.duration_since(UNIX_EPOCH)?.as_secs();
    let claims = Claims {
        iss: TOKEN_ISSUER,
        aud: TOKEN_AUDIENCE,
        sub: TOKEN_SUBJECT,
        scope: "mcp:tools",
        iat: issued_at,
        exp: issued_at + TOKEN_LIFETIME.as_secs(),
    };
    let key = EncodingKey::from_ec_pem(BENCH_PRIVATE_KEY.as_bytes())
        .context("invalid bench private key")?;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(KEY_ID.to_owned());
    jsonwebtoken::encode(&header, &claims, &key).context("could not sign the bench token")
}

/// Writes the full-chain config for a proxy on `listen`, with its key file and audit log
/// under `dir`.
///
/// # Errors
///
/// Fails when a file cannot be written, a path is not valid UTF-8 or the token cannot
/// be signed.
pub(crate) fn full_chain_config(
    settings: &ChainSettings,
    listen: SocketAddr,
    dir: &Path,
) -> anyhow::Result<ChainConfig> {
    let audit_dir = dir.join("audit");
    std::fs::create_dir_all(&audit_dir)?;
    let key_path = dir.join("bench-es256-public.pem");
    std::fs::write(&key_path, BENCH_PUBLIC_KEY)?;
    let as_text = |path: &Path| {
        path.to_str()
            .map(str::to_owned)
            .with_context(|| format!("{} is not valid UTF-8", path.display()))
    };
    let (audit_dir, key_path) = (as_text(&audit_dir)?, as_text(&key_path)?);

    let mut toml = String::new();
    writeln!(toml, "[server]\nlisten = \"{listen}\"\n")?;
    writeln!(toml, "[upstream]\nurl = \"{}\"\n", settings.upstream_url)?;
    writeln!(toml, "[log]\nlevel = \"warn\"\n")?;

    writeln!(
        toml,
        "[auth.jwt]\nissuer = \"{TOKEN_ISSUER}\"\naudience = \"{TOKEN_AUDIENCE}\"\n\
         algorithms = [\"ES256\"]\npublic_keys = [\n  \
         {{ kid = \"{KEY_ID}\", pem_file = \"{key_path}\", algorithm = \"ES256\" }},\n]\n"
    )?;
    write_policy(&mut toml)?;

    write_rate_limits(&mut toml, settings.ip_requests_per_second)?;
    writeln!(
        toml,
        "[audit]\nfile = true\ndir = \"{audit_dir}\"\nmode = \"lossless\"\n"
    )?;

    let token = sign_bench_token(SystemTime::now())?;
    Ok(ChainConfig {
        toml,
        bearer_token: Some(token),
    })
}

/// Writes `[policy]`: deny by default, 19 deny rules for other tools that the request
/// must be checked against first, and a last rule that allows `echo`.
fn write_policy(toml: &mut String) -> std::fmt::Result {
    writeln!(toml, "[policy]\ndefault = \"deny\"\n")?;
    for index in 0..POLICY_RULES - 1 {
        writeln!(
            toml,
            "[[policy.rules]]\nid = \"deny-blocked-{index}\"\naction = \"deny\"\n\
             methods = [\"tools/call\"]\ntools = [\"blocked_{index}_*\"]\n"
        )?;
    }
    writeln!(
        toml,
        "[[policy.rules]]\nid = \"allow-echo\"\naction = \"allow\"\n\
         methods = [\"tools/call\"]\ntools = [\"echo\"]\nsubjects = [\"{TOKEN_SUBJECT}\"]\n"
    )
}

/// Writes `[ratelimit]` with every tier and concurrency limit on. Only the per-IP
/// limits use `ip_rate` when given.
fn write_rate_limits(toml: &mut String, ip_rate: Option<u32>) -> std::fmt::Result {
    let ip_rate = ip_rate.unwrap_or(UNLIMITED_RATE);
    let quota = |rate: u32| format!("requests = {rate}\nper = \"1s\"\nburst = {rate}\n");
    writeln!(toml, "[ratelimit.pre_auth]\n{}", quota(ip_rate))?;
    for (tier, rate) in [
        ("global", UNLIMITED_RATE),
        ("ip", ip_rate),
        ("subject", UNLIMITED_RATE),
        ("session", UNLIMITED_RATE),
        ("route", UNLIMITED_RATE),
        ("mcp_method", UNLIMITED_RATE),
        ("tool", UNLIMITED_RATE),
    ] {
        writeln!(toml, "[ratelimit.tiers.{tier}]\n{}", quota(rate))?;
    }
    writeln!(
        toml,
        "[ratelimit.concurrency]\nin_flight_total = {UNLIMITED_RATE}\n\
         in_flight_per_subject = {UNLIMITED_RATE}\nstreams_total = {UNLIMITED_RATE}\n\
         streams_per_subject = {UNLIMITED_RATE}\n"
    )
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    fn config(ip_rate: Option<u32>) -> (tempfile::TempDir, ChainConfig, toml::Table) {
        let dir = tempfile::tempdir().unwrap();
        let settings = ChainSettings {
            upstream_url: "http://127.0.0.1:9/mcp".into(),
            ip_requests_per_second: ip_rate,
        };
        let listen: SocketAddr = "127.0.0.1:8".parse().unwrap();
        let config = full_chain_config(&settings, listen, dir.path()).unwrap();
        let table: toml::Table = config.toml.parse().unwrap();
        (dir, config, table)
    }

    #[test]
    fn config_enables_every_stage() {
        let (dir, _, table) = config(None);
        assert_eq!(table["server"]["listen"].as_str(), Some("127.0.0.1:8"));
        assert_eq!(
            table["upstream"]["url"].as_str(),
            Some("http://127.0.0.1:9/mcp")
        );
        let jwt = &table["auth"]["jwt"];
        assert_eq!(jwt["issuer"].as_str(), Some(TOKEN_ISSUER));
        let key = &jwt["public_keys"][0];
        assert_eq!(key["kid"].as_str(), Some(KEY_ID));
        let pem_file = key["pem_file"].as_str().unwrap();
        let written = std::fs::read_to_string(pem_file).unwrap();
        assert_eq!(written, BENCH_PUBLIC_KEY);
        let rules = table["policy"]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), POLICY_RULES);
        let last = rules.last().unwrap();
        assert_eq!(last["action"].as_str(), Some("allow"));
        assert_eq!(last["tools"][0].as_str(), Some("echo"));
        let tiers = table["ratelimit"]["tiers"].as_table().unwrap();
        assert_eq!(tiers.len(), 7);
        assert_eq!(table["audit"]["mode"].as_str(), Some("lossless"));
        let audit_dir = table["audit"]["dir"].as_str().unwrap();
        assert!(Path::new(audit_dir).starts_with(dir.path()));
    }

    #[test]
    fn flood_config_limits_only_per_ip() {
        let (_dir, _, table) = config(Some(50));
        let ratelimit = &table["ratelimit"];
        assert_eq!(ratelimit["pre_auth"]["requests"].as_integer(), Some(50));
        assert_eq!(ratelimit["tiers"]["ip"]["requests"].as_integer(), Some(50));
        let global = ratelimit["tiers"]["global"]["requests"].as_integer();
        assert_eq!(global, Some(i64::from(UNLIMITED_RATE)));
    }

    #[test]
    fn token_verifies_with_public_key() {
        let (_dir, config, _) = config(None);
        let token = config.bearer_token.unwrap();
        let key = DecodingKey::from_ec_pem(BENCH_PUBLIC_KEY.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[TOKEN_AUDIENCE]);
        validation.set_issuer(&[TOKEN_ISSUER]);
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims["sub"], TOKEN_SUBJECT);
        assert_eq!(data.header.kid.as_deref(), Some(KEY_ID));
    }
}
