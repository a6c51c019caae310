//! Starting, running and stopping the proxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::serve::ListenerExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use shadowcat_core::ClientAddrResolver;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, RouteTarget};
use crate::pipeline::{AppState, HostGuard};
use crate::session::{Session, SessionTable};
use crate::upstream::resilience::{MemberConfig, SharedClock};
use crate::upstream::{HttpUpstream, Member, Routes, StdioPool, UpstreamGroup, UpstreamKind};
use sha2::{Digest, Sha256};
use shadowcat_audit::{AuditEvent, AuditHandle, EventKind, SessionCloseReason};

/// Maximum number of live legacy sessions.
const MAX_SESSIONS: usize = 10_000;
/// Sessions unused for this long are ended.
const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often idle sessions and sessions whose stdio child exited are looked for.
const REAP_INTERVAL: Duration = Duration::from_secs(10);

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
        Self::bind_with_clock(config, SharedClock::default()).await
    }

    /// Like [`Proxy::bind`], with the clock that drives circuit breakers, outlier
    /// ejection and retry budgets, so tests can move time by hand.
    ///
    /// # Errors
    ///
    /// Returns [`StartError`] when the configuration is invalid or a listener cannot
    /// bind.
    pub async fn bind_with_clock(config: &Config, clock: SharedClock) -> Result<Self, StartError> {
        config.validate()?;
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
        let routes = build_routes(config, &clock, audit.as_ref())?;
        let state = Arc::new(AppState {
            guard: HostGuard::new(
                config.server.allowed_hosts.clone(),
                config.server.allowed_origins.clone(),
                config.listens_on_loopback(),
            ),
            resolver: ClientAddrResolver::new(config.server.trusted_proxies.clone()),
            max_body_bytes: config.server.max_body_bytes,
            routes,
            sessions: SessionTable::new(MAX_SESSIONS),
            metrics: Default::default(),
            shutdown: CancellationToken::new(),
            audit,
            authenticator,
            policy,
            limits,
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
        for task in background {
            task.abort();
        }
        end_all_sessions(&state).await;
        for group in state.routes.groups() {
            group.shutdown();
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

/// Builds every upstream group and the table of paths they serve.
fn build_routes(
    config: &Config,
    clock: &SharedClock,
    audit: Option<&AuditHandle>,
) -> Result<Routes, StartError> {
    let single = if config.has_single_upstream() {
        Some(UpstreamGroup::single(build_single(config)?))
    } else {
        None
    };
    let mut balanced = Vec::with_capacity(config.upstreams.len());
    for group in &config.upstreams {
        let members = group
            .members
            .iter()
            .map(build_member)
            .collect::<Result<Vec<_>, _>>()?;
        balanced.push(UpstreamGroup::balanced(
            group,
            members,
            clock.clone(),
            audit.cloned(),
        ));
    }
    let paths = config
        .route_table()
        .into_iter()
        .map(|(path, target)| {
            let group = match target {
                RouteTarget::Single => single.clone(),
                RouteTarget::Group(name) => {
                    balanced.iter().find(|group| *group.name == *name).cloned()
                }
            };
            (
                path,
                group.expect("validate checked that every route names a group"),
            )
        })
        .collect();
    let groups = single.into_iter().chain(balanced).collect();
    Ok(Routes::new(paths, groups))
}

/// Builds the one replica of the `[upstream]` table.
fn build_single(config: &Config) -> Result<Member, StartError> {
    let upstream = &config.upstream;
    if let Some(command) = &upstream.command {
        let argv: Arc<[String]> = Arc::from(command.argv());
        let name = argv.first().cloned().unwrap_or_default();
        let pool = StdioPool::new(argv.to_vec(), upstream.stdio_pool_size);
        return Ok(Member::new(
            name,
            UpstreamKind::Stdio { argv, pool },
            upstream.request_timeout,
        ));
    }
    let url = upstream
        .url
        .as_deref()
        .expect("validate checked that url or command is set");
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
    let http = HttpUpstream::new(
        url.parse().expect("validate checked the url"),
        upstream.connect_timeout,
        upstream.request_timeout,
        headers,
    )
    .with_credential(credential(&upstream.auth, "upstream.auth")?);
    Ok(Member::new(
        url,
        UpstreamKind::Http(Box::new(http)),
        upstream.request_timeout,
    ))
}

/// Builds one replica of an `[[upstreams]]` group.
fn build_member(member: &MemberConfig) -> Result<Member, StartError> {
    let kind = match (&member.url, &member.command) {
        (Some(url), _) => {
            let http = HttpUpstream::new(
                url.parse().expect("validate checked the url"),
                member.connect_timeout,
                member.request_timeout,
                HeaderMap::new(),
            )
            .with_credential(credential(&member.auth, "upstreams.members.auth")?);
            UpstreamKind::Http(Box::new(http))
        }
        (None, Some(command)) => {
            let argv: Arc<[String]> = Arc::from(command.argv());
            let pool = StdioPool::new(argv.to_vec(), crate::config::DEFAULT_STDIO_POOL_SIZE);
            UpstreamKind::Stdio { argv, pool }
        }
        (None, None) => unreachable!("validate checked that url or command is set"),
    };
    Ok(Member::new(
        member.display_name(),
        kind,
        member.request_timeout,
    ))
}

fn credential(
    config: &crate::auth::UpstreamCredentialConfig,
    section: &'static str,
) -> Result<crate::auth::UpstreamCredential, StartError> {
    crate::auth::UpstreamCredential::from_config(config).map_err(|error| {
        StartError::Config(crate::config::ConfigError::Section {
            section,
            message: error.to_string(),
        })
    })
}

/// Starts the health checks of every group, the idle-session reaper and the limiter's
/// eviction of idle keys.
fn spawn_background(state: Arc<AppState>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(limits) = &state.limits {
        let limiter = Arc::clone(&limits.limiter);
        let period = limiter.evict_interval();
        tasks.push(every(period, period, &state.shutdown, move || {
            limiter.evict_idle();
            std::future::ready(())
        }));
    }
    for group in state.routes.groups() {
        let group = Arc::clone(group);
        // A single upstream is probed at once to learn its eras; replicas of a group
        // start healthy and are first checked one interval after start.
        let first = if group.is_balanced() {
            group.check_interval()
        } else {
            Duration::ZERO
        };
        tasks.push(every(
            first,
            group.check_interval(),
            &state.shutdown,
            move || {
                let group = Arc::clone(&group);
                async move { group.check_health().await }
            },
        ));
    }
    let reaper_state = Arc::clone(&state);
    tasks.push(every(
        REAP_INTERVAL,
        REAP_INTERVAL,
        &state.shutdown,
        move || {
            for session in reaper_state.sessions.remove_idle(SESSION_IDLE_TIMEOUT) {
                tracing::info!(session_id = %session.id, "session ended: idle or upstream exited");
                session.end_upstream();
                record_session_closed(&reaper_state, &session, SessionCloseReason::Expired);
            }
            std::future::ready(())
        },
    ));
    tasks
}

/// Runs `work` after `first` and then once per `period` until `shutdown` fires. A round
/// that overruns the period delays the next one instead of bunching them.
fn every<F, Fut>(
    first: Duration,
    period: Duration,
    shutdown: &CancellationToken,
    mut work: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + first;
        let mut interval = tokio::time::interval_at(start, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => work().await,
                () = shutdown.cancelled() => break,
            }
        }
    })
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
        ) = (
            &session.group.member(session.replica).kind,
            &session.upstream,
        ) {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                http.send(Method::DELETE, &HeaderMap::new(), Some(id), Body::empty()),
            )
            .await;
        }
    }
}
