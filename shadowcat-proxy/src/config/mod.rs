//! The `shadowcat.toml` configuration: file format, defaults, validation, and how
//! command-line flags override it.
//!
//! Every table rejects unknown keys, so a misspelled option is an error that names the
//! key instead of a setting that silently does nothing.

mod duration;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

pub use duration::parse_duration;

/// Default address of the MCP listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default maximum size of a request body: 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The name of the group the `[upstream]` table becomes, in metrics and logs.
pub const SINGLE_GROUP_NAME: &str = "default";
/// Default number of stdio children serving modern stateless requests.
pub const DEFAULT_STDIO_POOL_SIZE: usize = 2;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener, request limits and browser protections.
    #[serde(default)]
    pub server: ServerConfig,
    /// The MCP server behind the proxy.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// Log output.
    #[serde(default)]
    pub log: LogConfig,
    /// The security audit trail; off unless this table or `--audit-dir` is given.
    #[serde(default)]
    pub audit: Option<shadowcat_audit::AuditConfig>,
    /// Authentication of clients; every caller is anonymous unless this table is given.
    #[serde(default)]
    pub auth: Option<crate::auth::AuthConfig>,
    /// Authorization rules per JSON-RPC message; off unless this table is given.
    #[serde(default)]
    pub policy: Option<crate::policy::PolicyConfig>,
    /// Multi-tier rate and concurrency limits; off unless this table is given.
    #[serde(default)]
    pub ratelimit: Option<shadowcat_ratelimit::RateLimitConfig>,
    /// Named groups of replicas with load balancing, circuit breakers and health checks.
    #[serde(default)]
    pub upstreams: Vec<crate::upstream::resilience::UpstreamConfig>,
    /// Endpoint paths served by `[[upstreams]]` groups.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// The file this configuration was read from, for the `config.loaded` record.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// The `[server]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the MCP listener. Default `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Path of the MCP endpoint. Default `/mcp`.
    #[serde(default = "default_path")]
    pub path: String,
    /// Address of the admin listener for `/healthz`, `/readyz` and `/metrics`; none by
    /// default.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// Maximum request body size in bytes. Default 4 MiB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Host names (optionally `host:port`) accepted in the `Host` header. When empty, a
    /// loopback listener accepts only loopback names and any other listener accepts all.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) allowed to send requests. When empty, a loopback
    /// listener allows only loopback origins and any other listener rejects every
    /// request that carries an `Origin` header.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` and `Forwarded` headers are trusted.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// How long shutdown waits for in-flight requests before closing them. Default 30 s.
    #[serde(
        default = "default_shutdown_timeout",
        with = "duration::serde_duration"
    )]
    pub shutdown_timeout: Duration,
}

/// The `[upstream]` table: exactly one of `url` or `command`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Streamable HTTP endpoint of the MCP server, such as `http://127.0.0.1:9000/mcp`.
    #[serde(default)]
    pub url: Option<String>,
    /// Command line of a stdio MCP server, split on whitespace (`"server --flag"`), or a
    /// list of arguments.
    #[serde(default)]
    pub command: Option<CommandLine>,
    /// Children kept for modern stateless requests to a stdio upstream. Default 2.
    #[serde(default = "default_stdio_pool_size")]
    pub stdio_pool_size: usize,
    /// Time allowed to connect to an HTTP upstream. Default 5 s.
    #[serde(default = "default_connect_timeout", with = "duration::serde_duration")]
    pub connect_timeout: Duration,
    /// Time allowed for the upstream to start its response (headers for HTTP, the
    /// JSON-RPC response for stdio). Streams may then run for as long as they last.
    /// Default 60 s.
    #[serde(default = "default_request_timeout", with = "duration::serde_duration")]
    pub request_timeout: Duration,
    /// The credential the proxy presents to the upstream: `type = "none"`, `"header"`,
    /// or `"client_credentials"` (an OAuth token the proxy obtains and refreshes).
    #[serde(default)]
    pub auth: crate::auth::UpstreamCredentialConfig,
    /// Headers added to every upstream request, such as a static upstream credential.
    /// Values of the form `env:NAME` are read from the environment at start-up.
    #[serde(default)]
    pub headers: Vec<HeaderSetting>,
}

/// One `[[routes]]` entry: an MCP endpoint path served by an `[[upstreams]]` group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The endpoint path, such as `/mcp/search`.
    pub path: String,
    /// The name of the `[[upstreams]]` group that serves it.
    pub upstream: String,
}

/// The target of one endpoint path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// The `[upstream]` table.
    Single,
    /// The `[[upstreams]]` group with this name.
    Group(String),
}

/// One `{ name = "...", value = "..." }` upstream header.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSetting {
    /// Header name.
    pub name: String,
    /// Header value, or `env:NAME` to read it from the environment.
    pub value: String,
}

/// A command line, written either as one string or as a list of arguments.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CommandLine {
    /// `"program arg1 arg2"`, split on whitespace.
    Line(String),
    /// `["program", "arg with spaces"]`.
    Args(Vec<String>),
}

impl CommandLine {
    /// Returns the program and its arguments.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Self::Line(line) => line.split_whitespace().map(str::to_owned).collect(),
            Self::Args(args) => args.clone(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[log]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `shadowcat_proxy=debug`. `RUST_LOG` wins
    /// when set. Default `info`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            path: default_path(),
            admin_listen: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: None,
            command: None,
            stdio_pool_size: DEFAULT_STDIO_POOL_SIZE,
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            auth: Default::default(),
            headers: Vec::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: default_log_level(),
        }
    }
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .expect("the default listen address is valid")
}
fn default_path() -> String {
    "/mcp".to_owned()
}
fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn default_stdio_pool_size() -> usize {
    DEFAULT_STDIO_POOL_SIZE
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_log_level() -> String {
    "info".to_owned()
}

/// A configuration error that names the field and the bad value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("could not read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, which names the key and the line.
        message: String,
    },
    /// A section's own validation failed; the message names the field and value.
    #[error("invalid [{section}] section: {message}")]
    Section {
        /// The table, such as `audit`.
        section: &'static str,
        /// The section's own error message.
        message: String,
    },
    /// A field has a value that parses but cannot work.
    #[error("invalid value for `{field}`: {value:?}: {reason}")]
    Invalid {
        /// Dotted path of the field, such as `upstream.url`.
        field: &'static str,
        /// The value as written.
        value: String,
        /// The reason the value is invalid.
        reason: &'static str,
    },
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError`] when the file cannot be read, does not parse, contains an
    /// unknown key, or has an invalid value.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses configuration text without validating cross-field rules.
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError::Parse`] for invalid TOML, unknown keys and values of the
    /// wrong type.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: PathBuf::new(),
            message: error.to_string().trim_end().replace('\n', " "),
        })
    }

    /// Checks the rules that span fields or need more than a type to express.
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_upstream()?;
        self.validate_groups()?;
        self.validate_server()?;
        self.validate_sections()
    }

    /// Returns true when the `[upstream]` table names a URL or a command.
    pub fn has_single_upstream(&self) -> bool {
        self.upstream.url.is_some() || self.upstream.command.is_some()
    }

    /// Returns the endpoint paths and what serves each. `server.path` goes to
    /// `[upstream]` when it is set; otherwise to a `[[routes]]` entry for it or, without
    /// routes, to the only `[[upstreams]]` group.
    pub fn route_table(&self) -> Vec<(String, RouteTarget)> {
        let mut table = Vec::with_capacity(self.routes.len() + 1);
        if self.has_single_upstream() {
            table.push((self.server.path.clone(), RouteTarget::Single));
        } else if self.routes.is_empty()
            && let [group] = self.upstreams.as_slice()
        {
            table.push((
                self.server.path.clone(),
                RouteTarget::Group(group.name.clone()),
            ));
        }
        for route in &self.routes {
            table.push((
                route.path.clone(),
                RouteTarget::Group(route.upstream.clone()),
            ));
        }
        table
    }

    fn validate_upstream(&self) -> Result<(), ConfigError> {
        let upstream = &self.upstream;
        match (&upstream.url, &upstream.command) {
            (None, None) if !self.upstreams.is_empty() => {}
            (None, None) => {
                return Err(ConfigError::Invalid {
                    field: "upstream",
                    value: String::new(),
                    reason: "set `upstream.url` (or --upstream), `upstream.command` (or --upstream-stdio), or an [[upstreams]] group",
                });
            }
            (Some(url), Some(_)) => {
                return Err(ConfigError::Invalid {
                    field: "upstream.command",
                    value: url.clone(),
                    reason: "`upstream.url` and `upstream.command` are mutually exclusive",
                });
            }
            (Some(url), None) => validate_upstream_url(url)?,
            (None, Some(command)) => {
                if command.argv().is_empty() {
                    return Err(ConfigError::Invalid {
                        field: "upstream.command",
                        value: String::new(),
                        reason: "the command is empty",
                    });
                }
            }
        }
        if upstream.stdio_pool_size == 0 {
            return Err(ConfigError::Invalid {
                field: "upstream.stdio_pool_size",
                value: "0".to_owned(),
                reason: "must be at least 1",
            });
        }
        for header in &upstream.headers {
            if http::HeaderName::from_bytes(header.name.as_bytes()).is_err() {
                return Err(ConfigError::Invalid {
                    field: "upstream.headers.name",
                    value: header.name.clone(),
                    reason: "not a valid HTTP header name",
                });
            }
        }
        Ok(())
    }

    /// Checks each `[[upstreams]]` group and that every route names one.
    fn validate_groups(&self) -> Result<(), ConfigError> {
        let section = |message: String| ConfigError::Section {
            section: "upstreams",
            message,
        };
        let mut names = std::collections::HashSet::new();
        for group in &self.upstreams {
            group
                .validate()
                .map_err(|error| section(error.to_string()))?;
            if self.has_single_upstream() && group.name == SINGLE_GROUP_NAME {
                return Err(section(format!(
                    "the group name {SINGLE_GROUP_NAME:?} is taken by [upstream]; choose another"
                )));
            }
            if !names.insert(group.name.as_str()) {
                return Err(section(format!(
                    "the group name {:?} is used twice",
                    group.name
                )));
            }
            for member in &group.members {
                crate::auth::UpstreamCredential::from_config(&member.auth).map_err(|error| {
                    section(format!(
                        "{}: member {}: {error}",
                        group.name,
                        member.display_name()
                    ))
                })?;
            }
        }
        if !self.has_single_upstream() && self.upstreams.len() > 1 && self.routes.is_empty() {
            return Err(ConfigError::Invalid {
                field: "routes",
                value: String::new(),
                reason: "several [[upstreams]] groups need [[routes]] entries that map paths to them",
            });
        }
        let mut paths = std::collections::HashSet::new();
        if self.has_single_upstream() {
            paths.insert(self.server.path.as_str());
        }
        for route in &self.routes {
            let invalid = |field, reason| ConfigError::Invalid {
                field,
                value: route.path.clone(),
                reason,
            };
            if !route.path.starts_with('/') {
                return Err(invalid("routes.path", "must start with `/`"));
            }
            if !paths.insert(route.path.as_str()) {
                return Err(invalid(
                    "routes.path",
                    "the path is served twice (by another route or by [upstream] at server.path)",
                ));
            }
            if !names.contains(route.upstream.as_str()) {
                return Err(ConfigError::Invalid {
                    field: "routes.upstream",
                    value: route.upstream.clone(),
                    reason: "no [[upstreams]] group has this name",
                });
            }
        }
        Ok(())
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        if !self.server.path.starts_with('/') {
            return Err(ConfigError::Invalid {
                field: "server.path",
                value: self.server.path.clone(),
                reason: "must start with `/`",
            });
        }
        if self.server.max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                field: "server.max_body_bytes",
                value: "0".to_owned(),
                reason: "must be at least 1",
            });
        }
        for origin in &self.server.allowed_origins {
            if origin != "null" && !origin.contains("://") {
                return Err(ConfigError::Invalid {
                    field: "server.allowed_origins",
                    value: origin.clone(),
                    reason: "an origin needs a scheme, such as `https://app.example.com`",
                });
            }
        }
        Ok(())
    }

    /// Runs the own validation of each optional table, and checks the log filter.
    fn validate_sections(&self) -> Result<(), ConfigError> {
        if let Some(audit) = &self.audit {
            audit.validate().map_err(|error| ConfigError::Section {
                section: "audit",
                message: error.to_string(),
            })?;
        }
        if let Some(auth) = &self.auth {
            auth.validate().map_err(|error| ConfigError::Section {
                section: "auth",
                message: error.to_string(),
            })?;
        }
        if let Some(policy) = &self.policy {
            crate::policy::Policy::new(policy).map_err(|error| ConfigError::Section {
                section: "policy",
                message: error.to_string(),
            })?;
        }
        if self.has_single_upstream()
            && let Err(error) = crate::auth::UpstreamCredential::from_config(&self.upstream.auth)
        {
            return Err(ConfigError::Section {
                section: "upstream.auth",
                message: error.to_string(),
            });
        }
        if let Some(ratelimit) = &self.ratelimit {
            shadowcat_ratelimit::MultiTierLimiter::new(ratelimit).map_err(|error| {
                ConfigError::Section {
                    section: "ratelimit",
                    message: error.to_string(),
                }
            })?;
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::Invalid {
                field: "log.level",
                value: self.log.level.clone(),
                reason: "not a valid tracing filter such as `info` or `shadowcat_proxy=debug`",
            });
        }
        Ok(())
    }

    /// Returns true if the MCP listener is bound to a loopback address.
    pub fn listens_on_loopback(&self) -> bool {
        is_loopback(self.server.listen.ip())
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    shadowcat_core::normalize_ip(ip).is_loopback()
}

fn validate_upstream_url(url: &str) -> Result<(), ConfigError> {
    let invalid = |reason| ConfigError::Invalid {
        field: "upstream.url",
        value: url.to_owned(),
        reason,
    };
    let uri: http::Uri = url.parse().map_err(|_| invalid("not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(invalid(
                "https upstreams are not supported yet; use http to a local or sidecar endpoint",
            ));
        }
        _ => return Err(invalid("the URL must start with http://")),
    }
    if uri.authority().is_none() {
        return Err(invalid("the URL has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_validates() {
        let config = Config::parse("[upstream]\nurl = \"http://127.0.0.1:9000/mcp\"\n").unwrap();
        config.validate().unwrap();
        assert_eq!(config.server.listen, default_listen());
        assert_eq!(config.server.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn unknown_key_is_named() {
        let error = Config::parse("[server]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(error.to_string().contains("listen_addr"), "{error}");
    }

    #[test]
    fn bad_value_names_field_and_value() {
        let config = Config::parse("[upstream]\nurl = \"ftp://x/mcp\"\n").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("upstream.url"), "{error}");
        assert!(error.contains("ftp://x/mcp"), "{error}");
    }

    #[test]
    fn command_accepts_line_or_list() {
        let line = Config::parse("[upstream]\ncommand = \"server --stdio\"\n").unwrap();
        assert_eq!(line.upstream.command.unwrap().argv(), ["server", "--stdio"]);
        let list = Config::parse("[upstream]\ncommand = [\"my server\", \"-v\"]\n").unwrap();
        assert_eq!(list.upstream.command.unwrap().argv(), ["my server", "-v"]);
    }

    #[test]
    fn durations_parse_units() {
        let config = Config::parse(
            "[server]\nshutdown_timeout = \"2m\"\n[upstream]\nurl = \"http://127.0.0.1:1/mcp\"\nrequest_timeout = \"1500ms\"\n",
        )
        .unwrap();
        assert_eq!(config.server.shutdown_timeout, Duration::from_secs(120));
        assert_eq!(config.upstream.request_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn bundled_example_config_validates() {
        let text = include_str!("../../../examples/shadowcat.toml");
        let config = Config::parse(text).unwrap();
        config.validate().unwrap();
        assert!(config.audit.is_some());
        assert!(config.auth.is_some());
        assert!(config.policy.is_some());
        assert!(config.ratelimit.is_some());
        assert_eq!(config.upstreams.len(), 1);
        assert_eq!(config.route_table().len(), 2);
    }

    #[test]
    fn routes_map_paths_to_groups() {
        let text = r#"
            [[upstreams]]
            name = "search"
            members = [{ url = "http://127.0.0.1:9001/mcp" }, { command = "server --stdio" }]

            [[upstreams]]
            name = "files"
            policy = "round_robin"
            members = [{ url = "http://127.0.0.1:9002/mcp", weight = 2 }]

            [[routes]]
            path = "/mcp"
            upstream = "search"

            [[routes]]
            path = "/mcp/files"
            upstream = "files"
        "#;
        let config = Config::parse(text).unwrap();
        config.validate().unwrap();
        assert_eq!(
            config.route_table(),
            [
                ("/mcp".to_owned(), RouteTarget::Group("search".to_owned())),
                (
                    "/mcp/files".to_owned(),
                    RouteTarget::Group("files".to_owned())
                ),
            ]
        );

        let unknown = Config::parse(&text.replace("upstream = \"files\"", "upstream = \"nope\""))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("routes.upstream") && unknown.contains("nope"),
            "{unknown}"
        );
        let twice = Config::parse(&text.replace("/mcp/files", "/mcp"))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(twice.contains("served twice"), "{twice}");
    }

    #[test]
    fn one_group_serves_the_endpoint_without_routes() {
        let config = Config::parse(
            "[[upstreams]]\nname = \"only\"\nmembers = [{ url = \"http://127.0.0.1:9001/mcp\" }]\n",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(
            config.route_table(),
            [("/mcp".to_owned(), RouteTarget::Group("only".to_owned()))]
        );
    }

    #[test]
    fn group_name_of_upstream_is_reserved() {
        let text = "[upstream]\nurl = \"http://127.0.0.1:9000/mcp\"\n[[upstreams]]\nname = \"default\"\nmembers = [{ url = \"http://127.0.0.1:9001/mcp\" }]\n[[routes]]\npath = \"/other\"\nupstream = \"default\"\n";
        let error = Config::parse(text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(error.contains("taken by [upstream]"), "{error}");
    }

    #[test]
    fn member_needs_url_or_command() {
        let error = Config::parse("[[upstreams]]\nname = \"g\"\nmembers = [{ weight = 2 }]\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(error.contains("upstreams.g.members[0]"), "{error}");
    }

    #[test]
    fn missing_upstream_is_invalid() {
        let error = Config::default().validate().unwrap_err().to_string();
        assert!(error.contains("upstream"), "{error}");
    }
}
