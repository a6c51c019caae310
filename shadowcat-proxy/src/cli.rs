//! The `shadowcat` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{CommandLine, Config, ConfigError, LogFormat};

/// Shadowcat: a reverse proxy that adds authentication, rate limits and an audit trail
/// to MCP servers.
#[derive(Debug, Parser)]
#[command(name = "shadowcat", version)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the reverse proxy in front of an MCP server.
    Reverse(ReverseArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Work with audit trail files.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `shadowcat audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of audit files, in the order given, and name the first
    /// broken record.
    Verify {
        /// Audit files (`.jsonl`), oldest first; a directory means all its audit files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Ed25519 public key (PEM) to check checkpoint signatures with.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// File name prefix used when a directory is given.
        #[arg(long, default_value = "audit")]
        prefix: String,
    },
}

/// `shadowcat config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file and name the first bad field and value.
    Check {
        /// The file, such as shadowcat.toml.
        file: PathBuf,
    },
}

/// Flags of `shadowcat reverse`. Each one overrides the same setting from the file.
#[derive(Debug, Args)]
pub struct ReverseArgs {
    /// Configuration file (TOML).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the MCP listener [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Streamable HTTP endpoint of the MCP server, such as http://127.0.0.1:9000/mcp.
    #[arg(long, value_name = "URL", conflicts_with = "upstream_stdio")]
    pub upstream: Option<String>,
    /// Command line of a stdio MCP server, such as "my-server --flag".
    #[arg(long, value_name = "COMMAND")]
    pub upstream_stdio: Option<String>,
    /// Address of the admin listener for /healthz, /readyz and /metrics.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, such as info or shadowcat_proxy=debug (RUST_LOG wins when set).
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Directory of the audit trail; turns the audit trail on with default settings.
    #[arg(long, value_name = "DIR")]
    pub audit_dir: Option<PathBuf>,
}

impl ReverseArgs {
    /// Builds the effective configuration: the file (or defaults), then every flag that
    /// was given.
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError`] when the file cannot be read or parsed.
    pub fn effective_config(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(url) = &self.upstream {
            config.upstream.url = Some(url.clone());
            config.upstream.command = None;
        }
        if let Some(command) = &self.upstream_stdio {
            config.upstream.command = Some(CommandLine::Line(command.clone()));
            config.upstream.url = None;
        }
        if let Some(admin) = self.admin_listen {
            config.server.admin_listen = Some(admin);
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
        if let Some(level) = &self.log_level {
            config.log.level = level.clone();
        }
        if let Some(dir) = &self.audit_dir {
            config.audit.get_or_insert_with(Default::default).dir = dir.clone();
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn parse(args: &[&str]) -> ReverseArgs {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Reverse(args) => args,
            other => panic!("expected reverse, got {other:?}"),
        }
    }

    #[test]
    fn flags_override_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "[server]\nlisten = \"127.0.0.1:7000\"\nmax_body_bytes = 100\n[upstream]\nurl = \"http://127.0.0.1:1/mcp\""
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let args = parse(&[
            "shadowcat",
            "reverse",
            "--config",
            path,
            "--listen",
            "127.0.0.1:7001",
        ]);
        let config = args.effective_config().unwrap();
        assert_eq!(config.server.listen.port(), 7001);
        assert_eq!(config.server.max_body_bytes, 100);
        assert_eq!(
            config.upstream.url.as_deref(),
            Some("http://127.0.0.1:1/mcp")
        );
    }

    #[test]
    fn stdio_flag_replaces_file_url() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[upstream]\nurl = \"http://127.0.0.1:1/mcp\"").unwrap();
        let path = file.path().to_str().unwrap();
        let args = parse(&[
            "shadowcat",
            "reverse",
            "-c",
            path,
            "--upstream-stdio",
            "server --x",
        ]);
        let config = args.effective_config().unwrap();
        assert!(config.upstream.url.is_none());
        config.validate().unwrap();
    }

    #[test]
    fn upstream_flags_conflict() {
        let result = Cli::try_parse_from([
            "shadowcat",
            "reverse",
            "--upstream",
            "http://127.0.0.1:1/mcp",
            "--upstream-stdio",
            "x",
        ]);
        assert!(result.is_err());
    }
}
