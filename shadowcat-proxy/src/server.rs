//! Starting, running and stopping the proxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::serve::ListenerExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use http_body_util::BodyExt;
use shadowcat_core::ClientAddrResolver;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pipeline::{AppState, HostGuard};
use crate::session::{Session, SessionTable};
use crate::upstream::{self, EraSupport, HttpUpstream, StdioPool, UpstreamError, UpstreamKind};
use sha2::{Digest, Sha256};
use shadowcat_audit::{AuditEvent, EventKind, SessionCloseReason};

/// Maximum number of live legacy sessions.
const MAX_SESSIONS: usize = 10_000;
/// Sessions unused for this long are ended.
const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often the upstream is probed until it responds, and re-probed after that.
const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// Errors that stop the proxy from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A listener could not bind its address.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The audit trail could not start.
    #[error("could not start the audit trail: {0}")]
    Audit(String),
    /// An upstream header could not be built.
    #[error("invalid upstream header {name}: {reason}")]
    Header {
        /// The header name.
        name: String,
        /// The reason the header is invalid.
        reason: String,
    },
}

/// A proxy that has bound its listeners and is ready to serve.
pub struct Proxy {
    state: Arc<AppState>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    path: String,
    shutdown_timeout: Duration,
}

impl Proxy {
    /// Validates the configuration, builds the upstream and binds the listeners.
    ///
    /// # Errors
    ///
    /// Returns [`StartError`] when the configuration is invalid or a listener cannot
    /// bind.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        config.validate()?;
        let upstream = build_upstream(config)?;
        let section = |section: &'static str| {
            move |error: &dyn std::fmt::Display| {
                StartError::Config(crate::config::ConfigError::Section {
                    section,
                    message: error.to_string(),
                })
            }
        };
        let authenticator = match &config.auth {
            Some(auth) => Some(
                crate::auth::Authenticator::new(auth)
                    .await
                    .map_err(|error| section("auth")(&error))?,
            ),
            None => None,
        };
        let policy = match &config.policy {
            Some(policy) => Some(
                crate::policy::Policy::new(policy).map_err(|error| section("policy")(&error))?,
            ),
            None => None,
        };
        let audit = match &config.audit {
            Some(audit_config) => Some(
                shadowcat_audit::AuditWriter::new(audit_config.clone())
                    .spawn()
                    .map_err(|error| StartError::Audit(error.to_string()))?,
            ),
            None => None,
        };
        let limits = match &config.ratelimit {
            Some(ratelimit) => Some(crate::pipeline::limits::Limits::new(ratelimit).map_err(
                |error| {
                    StartError::Config(crate::config::ConfigError::Section {
                        section: "ratelimit",
                        message: error.to_string(),
                    })
                },
            )?),
            None => None,
        };
        let upstream_name = match (&config.upstream.url, &config.upstream.command) {
            (Some(url), _) => url.clone(),
            (None, Some(command)) => command.argv().first().cloned().unwrap_or_default(),
            (None, None) => String::new(),
        };
        let state = Arc::new(AppState {
            guard: HostGuard::new(
                config.server.allowed_hosts.clone(),
                config.server.allowed_origins.clone(),
                config.listens_on_loopback(),
            ),
            resolver: ClientAddrResolver::new(config.server.trusted_proxies.clone()),
            max_body_bytes: config.server.max_body_bytes,
            upstream,
            eras: EraSupport::default(),
            sessions: SessionTable::new(MAX_SESSIONS),
            metrics: Default::default(),
            request_timeout: config.upstream.request_timeout,
            shutdown: CancellationToken::new(),
            audit,
            authenticator,
            policy,
            limits,
            upstream_name,
        });

        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let listener = bind(config.server.listen).await?;
        let admin = match config.server.admin_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        if let Some(audit) = &state.audit {
            audit.record(AuditEvent::new(EventKind::ProxyStarted {
                version: env!("CARGO_PKG_VERSION").into(),
                listen: Some(
                    listener
                        .local_addr()
                        .map(|addr| addr.to_string())
                        .unwrap_or_default()
                        .into(),
                ),
            }));
            if let Some(path) = &config.source {
                let digest = std::fs::read(path)
                    .map(|bytes| hex::encode(Sha256::digest(&bytes)))
                    .unwrap_or_default();
                audit.record(AuditEvent::new(EventKind::ConfigLoaded {
                    path: path.display().to_string().into(),
                    digest: digest.into(),
                }));
            }
        }
        Ok(Self {
            state,
            listener,
            admin,
            path: config.server.path.clone(),
            shutdown_timeout: config.server.shutdown_timeout,
        })
    }

    /// Returns the address of the MCP listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Returns the address of the admin listener, if one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .map(|admin| admin.local_addr().expect("a bound listener has an address"))
    }

    /// Returns the shared state, for tests and embedding.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `stop` fires, then drains in-flight requests for up to the shutdown
    /// timeout, ends open streams and sessions, and stops stdio children.
    pub async fn run(self, stop: CancellationToken) {
        let state = Arc::clone(&self.state);
        let background = spawn_background(Arc::clone(&state));
        let addr = self.local_addr();
        tracing::info!(%addr, path = %self.path, "shadowcat listening");

        if let Some(admin) = self.admin {
            let router = crate::admin::router(Arc::clone(&state));
            let admin_stop = stop.clone();
            tracing::info!(addr = %admin.local_addr().expect("bound"), "admin listener started");
            tokio::spawn(async move {
                let _ = axum::serve(admin.tap_io(set_nodelay), router)
                    .with_graceful_shutdown(admin_stop.cancelled_owned())
                    .await;
            });
        }

        let router = crate::pipeline::router(Arc::clone(&state), &self.path);
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let stop_for_serve = stop.clone();
        // Without TCP_NODELAY a streamed response on a reused connection waits about
        // 40 ms for the client's delayed ACK.
        let listener = self.listener.tap_io(set_nodelay);
        let serve = axum::serve(listener, service)
            .with_graceful_shutdown(async move { stop_for_serve.cancelled_owned().await });
        let serve = tokio::spawn(async move { serve.await });

        stop.cancelled().await;
        tracing::info!("shutting down: draining in-flight requests");
        // Event streams never end on their own, so they are closed first; requests
        // that are already running get the drain time.
        state.shutdown.cancel();
        if tokio::time::timeout(self.shutdown_timeout, serve)
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?self.shutdown_timeout, "in-flight requests did not finish in time");
        }
        background.abort();
        end_all_sessions(&state).await;
        if let UpstreamKind::Stdio { pool, .. } = &state.upstream {
            pool.shutdown();
        }
        if let Some(audit) = &state.audit {
            audit.record(AuditEvent::new(EventKind::ProxyStopped {
                reason: "shutdown".into(),
            }));
            if let Err(error) = audit.shutdown().await {
                tracing::error!(%error, "audit trail did not shut down cleanly");
            }
        }
        tracing::info!("shadowcat stopped");
    }
}

/// Turns off Nagle's algorithm on an accepted connection, so small response chunks such
/// as SSE events leave at once.
pub fn set_nodelay(stream: &mut tokio::net::TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY on an accepted connection");
    }
}

fn build_upstream(config: &Config) -> Result<UpstreamKind, StartError> {
    let upstream = &config.upstream;
    if let Some(command) = &upstream.command {
        let argv: Arc<[String]> = Arc::from(command.argv());
        let pool = StdioPool::new(argv.to_vec(), upstream.stdio_pool_size);
        return Ok(UpstreamKind::Stdio { argv, pool });
    }
    let url = upstream
        .url
        .as_deref()
        .expect("validate checked that url or command is set");
    let uri = url.parse().expect("validate checked the url");
    let mut headers = HeaderMap::new();
    for setting in &upstream.headers {
        let header_error = |reason: String| StartError::Header {
            name: setting.name.clone(),
            reason,
        };
        let value = match setting.value.strip_prefix("env:") {
            Some(variable) => std::env::var(variable)
                .map_err(|_| header_error(format!("environment variable {variable} is not set")))?,
            None => setting.value.clone(),
        };
        let name = HeaderName::from_bytes(setting.name.as_bytes())
            .map_err(|error| header_error(error.to_string()))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| header_error("the value is not a valid header value".to_owned()))?;
        headers.insert(name, value);
    }
    let credential =
        crate::auth::UpstreamCredential::from_config(&upstream.auth).map_err(|error| {
            StartError::Config(crate::config::ConfigError::Section {
                section: "upstream.auth",
                message: error.to_string(),
            })
        })?;
    Ok(UpstreamKind::Http(Box::new(
        HttpUpstream::new(
            uri,
            upstream.connect_timeout,
            upstream.request_timeout,
            headers,
        )
        .with_credential(credential),
    )))
}

/// Starts the upstream prober, the idle-session reaper and the limiter's eviction of
/// idle keys.
fn spawn_background(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    if let Some(limits) = &state.limits {
        let limiter = Arc::clone(&limits.limiter);
        let shutdown = state.shutdown.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(limiter.evict_interval());
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => limiter.evict_idle(),
                    () = shutdown.cancelled() => break,
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(PROBE_INTERVAL);
        loop {
            interval.tick().await;
            match probe(&state.upstream).await {
                Ok((modern, legacy)) => {
                    if !state.eras.is_known() {
                        tracing::info!(modern, legacy, "upstream probed");
                    }
                    state.eras.set(modern, legacy);
                }
                Err(error) => tracing::warn!(%error, "upstream probe failed"),
            }
            for session in state.sessions.remove_idle(SESSION_IDLE_TIMEOUT) {
                tracing::info!(session_id = %session.id, "session ended: idle or upstream exited");
                session.end_upstream();
                record_session_closed(&state, &session, SessionCloseReason::Expired);
            }
        }
    })
}

/// Asks the upstream which protocol versions it serves, with `server/discover`.
///
/// # Errors
///
/// Returns an [`UpstreamError`] when the upstream cannot be reached.
pub async fn probe(upstream: &UpstreamKind) -> Result<(bool, bool), UpstreamError> {
    let response = match upstream {
        UpstreamKind::Stdio { pool, .. } => pool.discover(upstream::PROBE_TIMEOUT).await?,
        UpstreamKind::Http(http) => {
            let request = upstream::discover_request();
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(
                header::ACCEPT,
                HeaderValue::from_static("application/json, text/event-stream"),
            );
            headers.insert(
                "mcp-protocol-version",
                HeaderValue::from_static("2026-07-28"),
            );
            headers.insert("mcp-method", HeaderValue::from_static("server/discover"));
            let response = tokio::time::timeout(
                upstream::PROBE_TIMEOUT,
                http.send(
                    Method::POST,
                    &headers,
                    None,
                    Body::from(request.to_string()),
                ),
            )
            .await
            .map_err(|_| UpstreamError::Timeout)??;
            let status = response.status();
            let bytes =
                tokio::time::timeout(upstream::PROBE_TIMEOUT, response.into_body().collect())
                    .await
                    .map_err(|_| UpstreamError::Timeout)?
                    .map_err(|error| UpstreamError::Failed(error.to_string()))?
                    .to_bytes();
            if !status.is_success() {
                // A legacy-only server rejects the unknown method or version.
                return Ok((false, true));
            }
            parse_probe_body(&bytes)
        }
    };
    Ok(upstream::eras_from_discover(&response))
}

/// Reads a probe response that is either JSON or a short event stream.
fn parse_probe_body(bytes: &[u8]) -> serde_json::Value {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return value;
    }
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data.trim()).ok())
        .find(|value| value.get("id").is_some())
        .unwrap_or_default()
}

/// Writes a `session.closed` record, when the audit trail is on.
pub fn record_session_closed(state: &AppState, session: &Session, reason: SessionCloseReason) {
    if let Some(audit) = &state.audit {
        let mut event = AuditEvent::new(EventKind::SessionClosed { reason })
            .with_session_id(session.id)
            .with_client_ip(session.client_ip);
        if let Some(subject) = &session.subject {
            event = event.with_subject(subject.as_str());
        }
        audit.record(event);
    }
}

async fn end_all_sessions(state: &AppState) {
    for session in state.sessions.drain() {
        session.end_upstream();
        record_session_closed(state, &session, SessionCloseReason::Shutdown);
        if let (
            UpstreamKind::Http(http),
            crate::session::SessionUpstream::Http {
                upstream_session: Some(id),
            },
        ) = (&state.upstream, &session.upstream)
        {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                http.send(Method::DELETE, &HeaderMap::new(), Some(id), Body::empty()),
            )
            .await;
        }
    }
}
