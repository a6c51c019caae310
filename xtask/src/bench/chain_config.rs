//! The proxy configuration of the full-chain and flood runs: JWT authentication with a
//! token that is reused (so the proxy's token cache is hit), 20 policy rules, every
//! rate-limit tier with limits that do not reject, and a lossless audit log in a
//! temporary directory.
//!
//! This module is the only place that knows the `shadowcat.toml` format of those stages.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

/// What differs between the runs that use a generated config.
#[derive(Debug, Clone)]
pub(crate) struct ChainSettings {
    /// The example server's MCP endpoint.
    pub(crate) upstream_url: String,
    /// Per-IP limit in requests per second for the flood test; `None` sets the per-IP
    /// tier as high as the others, so it never rejects.
    pub(crate) ip_requests_per_second: Option<u32>,
}

/// A generated config and the token the load generator sends with it.
#[derive(Debug, Clone)]
pub(crate) struct ChainConfig {
    /// Contents of `shadowcat.toml`.
    pub(crate) toml: String,
    /// Bearer token accepted by the config's authentication, if it requires one.
    pub(crate) bearer_token: Option<String>,
}

/// Rate of every tier that must not reject, in requests per second: far above what two
/// cores can serve.
const UNLIMITED_RATE: u32 = 10_000_000;

/// Number of policy rules, so the policy engine does real matching work.
const POLICY_RULES: usize = 20;

/// Writes the full-chain config for a proxy on `listen`, with its audit log under `dir`.
///
/// # Errors
///
/// Fails when a path is not valid UTF-8 or the token cannot be signed.
pub(crate) fn full_chain_config(
    settings: &ChainSettings,
    listen: SocketAddr,
    dir: &Path,
) -> anyhow::Result<ChainConfig> {
    let audit_dir = dir.join("audit");
    std::fs::create_dir_all(&audit_dir)?;
    let audit_dir = audit_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not valid UTF-8", audit_dir.display()))?;

    let mut toml = String::new();
    writeln!(toml, "[server]\nlisten = \"{listen}\"\n")?;
    writeln!(toml, "[upstream]\nurl = \"{}\"\n", settings.upstream_url)?;
    writeln!(toml, "[log]\nlevel = \"warn\"\n")?;
    // TODO: the [auth], [policy], [ratelimit] and [audit] tables follow a draft of the
    // format; align them with the proxy's config module once it has those tables.
    writeln!(
        toml,
        "[audit]\nmode = \"lossless\"\ndir = \"{audit_dir}\"\n"
    )?;
    let ip_rate = settings.ip_requests_per_second.unwrap_or(UNLIMITED_RATE);
    for (tier, rate) in [
        ("global", UNLIMITED_RATE),
        ("ip", ip_rate),
        ("subject", UNLIMITED_RATE),
        ("route", UNLIMITED_RATE),
        ("mcp_method", UNLIMITED_RATE),
        ("tool", UNLIMITED_RATE),
    ] {
        writeln!(
            toml,
            "[ratelimit.{tier}]\nrequests = {rate}\nper = \"1s\"\nburst = {rate}\n"
        )?;
    }
    writeln!(toml, "[policy]\ndefault = \"deny\"\n")?;
    for index in 0..POLICY_RULES - 1 {
        writeln!(
            toml,
            "[[policy.rules]]\neffect = \"deny\"\nmethod = \"tools/call\"\ntool = \"blocked_{index}\"\n"
        )?;
    }
    writeln!(
        toml,
        "[[policy.rules]]\neffect = \"allow\"\nmethod = \"tools/call\"\ntool = \"echo\"\n"
    )?;
    Ok(ChainConfig {
        toml,
        bearer_token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_valid_toml_with_every_stage() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ChainSettings {
            upstream_url: "http://127.0.0.1:9/mcp".into(),
            ip_requests_per_second: Some(50),
        };
        let config = full_chain_config(
            &settings,
            "127.0.0.1:8/mcp"
                .parse()
                .unwrap_or(([127, 0, 0, 1], 8).into()),
            dir.path(),
        )
        .unwrap();
        let table: toml::Table = config.toml.parse().unwrap();
        assert_eq!(
            table["upstream"]["url"].as_str(),
            Some("http://127.0.0.1:9/mcp")
        );
        assert_eq!(table["ratelimit"]["ip"]["requests"].as_integer(), Some(50));
        assert_eq!(
            table["policy"]["rules"].as_array().map(Vec::len),
            Some(POLICY_RULES)
        );
        assert!(table.contains_key("audit"));
    }
}
