//! Upstream replicas for resilience tests: real rmcp servers on 127.0.0.1. Each runs on
//! its own runtime thread, so a test can kill one outright. A switch in front makes the
//! replica return 400, 429 or 500, or hold requests until released.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use http::StatusCode;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::sync::{Notify, oneshot};

use super::CountingServer;

/// How a replica responds to MCP requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The rmcp server handles the request.
    Serve,
    /// Every request gets `400`.
    BadRequest,
    /// Every request gets `429` with `Retry-After: 7`.
    TooMany,
    /// Every request gets `500`.
    Fail,
    /// Every request waits until [`Replica::release`], then gets `500`.
    StallThenFail,
}

struct Shared {
    mode: AtomicU8,
    /// Requests that reached the switch, health checks excluded.
    hits: AtomicUsize,
    /// Signalled when a request arrives.
    arrived: Notify,
    released: AtomicBool,
    release: Notify,
}

impl Shared {
    async fn wait_for_release(&self) {
        loop {
            let released = self.release.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.released.load(Ordering::SeqCst) {
                return;
            }
            released.await;
        }
    }
}

/// One running replica.
pub struct Replica {
    /// The replica's MCP endpoint.
    pub url: String,
    /// The rmcp server, whose tools count their calls.
    pub server: CountingServer,
    shared: Arc<Shared>,
    kill: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const MODES: [Mode; 5] = [
    Mode::Serve,
    Mode::BadRequest,
    Mode::TooMany,
    Mode::Fail,
    Mode::StallThenFail,
];

impl Replica {
    /// Starts a replica on an ephemeral port, in legacy and modern mode.
    pub fn start() -> Self {
        let server = CountingServer::new();
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(0),
            hits: AtomicUsize::new(0),
            arrived: Notify::new(),
            released: AtomicBool::new(false),
            release: Notify::new(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let (kill, killed) = oneshot::channel::<()>();
        let thread_server = server.clone();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let config = StreamableHttpServerConfig::default()
                    .with_legacy_session_mode(true)
                    .with_sse_keep_alive(None);
                let service: StreamableHttpService<CountingServer, LocalSessionManager> =
                    StreamableHttpService::new(
                        move || Ok(thread_server.clone()),
                        Default::default(),
                        config,
                    );
                let router = axum::Router::new()
                    .nest_service("/mcp", service)
                    .layer(middleware::from_fn_with_state(thread_shared, switch));
                tokio::select! {
                    _ = axum::serve(listener, router) => {}
                    _ = killed => {}
                }
            });
            // Dropping the runtime here closes the listener and every open connection.
        });
        Self {
            url,
            server,
            shared,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// Changes how the replica responds.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.released.store(false, Ordering::SeqCst);
        let index = MODES.iter().position(|known| *known == mode).unwrap();
        self.shared.mode.store(index as u8, Ordering::SeqCst);
    }

    /// Returns the requests that reached the replica, health checks excluded.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Waits until the replica has received `count` requests in total.
    pub async fn wait_for_hits(&self, count: usize) {
        loop {
            let arrived = self.shared.arrived.notified();
            if self.hits() >= count {
                return;
            }
            arrived.await;
        }
    }

    /// Lets every held request go on.
    pub fn release(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
        self.shared.release.notify_waiters();
    }

    /// Stops the replica: its port refuses connections and open ones are closed.
    pub fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.release();
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

async fn switch(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let is_check = request
        .headers()
        .get("mcp-method")
        .is_some_and(|method| method == "server/discover" || method == "ping");
    let mode = MODES[usize::from(shared.mode.load(Ordering::SeqCst))];
    if !is_check && request.method() == http::Method::POST {
        shared.hits.fetch_add(1, Ordering::SeqCst);
        shared.arrived.notify_waiters();
    }
    let status = match mode {
        Mode::Serve => return next.run(request).await,
        Mode::BadRequest => StatusCode::BAD_REQUEST,
        Mode::TooMany => StatusCode::TOO_MANY_REQUESTS,
        Mode::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Mode::StallThenFail => {
            if !is_check {
                shared.wait_for_release().await;
            }
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let mut response = Response::new(Body::from("test replica refused the request"));
    *response.status_mut() = status;
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("7"));
    }
    response
}
