//! The load generator: HTTP/1.1 keep-alive connections on hyper that send one fixed
//! request, either as fast as the server responds (closed loop) or at a fixed rate.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio::time::{Instant, MissedTickBehavior};

use super::stats::RunStats;

/// Body of the modern-era `tools/call` that every load run sends.
pub(crate) const TOOLS_CALL_BODY: &str = concat!(
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","#,
    r#""arguments":{"text":"hello"},"_meta":{"#,
    r#""io.modelcontextprotocol/protocolVersion":"2026-07-28","#,
    r#""io.modelcontextprotocol/clientInfo":{"name":"xtask-bench","version":"1"},"#,
    r#""io.modelcontextprotocol/clientCapabilities":{}}}}"#
);

/// Maximum wait for one connect or response after the run's deadline has passed.
const RESPONSE_GRACE: Duration = Duration::from_secs(5);

/// Pause after a failed connect, so a dead endpoint is not retried in a busy loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

/// An `http://` endpoint resolved to one socket address.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Address the client connects to.
    pub(crate) addr: SocketAddr,
    /// Value of the `Host` header.
    pub(crate) authority: String,
    /// Request target, such as `/mcp`.
    pub(crate) path: String,
}

impl Endpoint {
    /// Builds the endpoint `http://ADDR/mcp` of a server started on a local port.
    pub(crate) fn local_mcp(addr: SocketAddr) -> Self {
        Self {
            addr,
            authority: addr.to_string(),
            path: "/mcp".to_owned(),
        }
    }

    /// Parses and resolves an `http://HOST[:PORT]/PATH` URL.
    ///
    /// # Errors
    ///
    /// Fails for another scheme, a URL without a host, or a host that does not resolve.
    pub(crate) async fn resolve(url: &str) -> anyhow::Result<Self> {
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("invalid URL `{url}`"))?;
        if uri.scheme_str() != Some("http") {
            bail!("URL `{url}` must start with http:// (the load generator has no TLS)");
        }
        let Some(authority) = uri.authority() else {
            bail!("URL `{url}` has no host");
        };
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((authority.host(), port))
            .await
            .with_context(|| format!("could not resolve `{}`", authority.host()))?
            .next()
            .with_context(|| format!("`{}` resolved to no address", authority.host()))?;
        let path = uri
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_owned();
        Ok(Self {
            addr,
            authority: authority.as_str().to_owned(),
            path,
        })
    }
}

/// The one request a run sends, prepared once and cloned per request.
#[derive(Debug, Clone)]
pub(crate) struct RequestTemplate {
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl RequestTemplate {
    /// Builds the modern-era `tools/call` of the `echo` tool with its mirrored headers,
    /// plus `Authorization: Bearer TOKEN` when a token is given.
    ///
    /// # Errors
    ///
    /// Fails when the token is not a valid header value.
    pub(crate) fn tools_call(bearer_token: Option<&str>) -> anyhow::Result<Self> {
        let mut headers = vec![
            (
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                hyper::header::ACCEPT,
                HeaderValue::from_static("application/json, text/event-stream"),
            ),
            (
                HeaderName::from_static("mcp-protocol-version"),
                HeaderValue::from_static("2026-07-28"),
            ),
            (
                HeaderName::from_static("mcp-method"),
                HeaderValue::from_static("tools/call"),
            ),
            (
                HeaderName::from_static("mcp-name"),
                HeaderValue::from_static("echo"),
            ),
        ];
        if let Some(token) = bearer_token {
            let value = HeaderValue::try_from(format!("Bearer {token}"))
                .context("the bearer token is not a valid header value")?;
            headers.push((hyper::header::AUTHORIZATION, value));
        }
        Ok(Self {
            headers,
            body: Bytes::from_static(TOOLS_CALL_BODY.as_bytes()),
        })
    }

    /// Builds one request to `endpoint`.
    pub(crate) fn build(&self, endpoint: &Endpoint) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = hyper::Uri::try_from(endpoint.path.as_str())
            .unwrap_or_else(|_| hyper::Uri::from_static("/"));
        let headers = request.headers_mut();
        if let Ok(host) = HeaderValue::try_from(endpoint.authority.as_str()) {
            headers.insert(hyper::header::HOST, host);
        }
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        request
    }
}

/// Shape of one load run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadShape {
    /// Keep-alive connections, each with one request in flight at a time.
    pub(crate) connections: usize,
    /// Unrecorded time before measuring starts.
    pub(crate) warmup: Duration,
    /// Measured time.
    pub(crate) duration: Duration,
    /// Local address the client sockets bind to; `None` lets the OS choose.
    pub(crate) local_ip: Option<IpAddr>,
}

/// Sending pace of each connection.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// The next request leaves as soon as the previous response is read.
    ClosedLoop,
    /// Requests leave at this total rate (requests per second) spread over the
    /// connections; a connection whose response is late sends its next request at once.
    Rate(u32),
}

/// Sends `template` to `endpoint` with the given shape and pace, and returns what the
/// measured window saw.
///
/// Only responses that end inside the measured window are counted, so the request rate is
/// the count divided by the window's length.
///
/// # Errors
///
/// Fails only when a worker task panics; request failures are counted, not returned.
pub(crate) async fn run(
    endpoint: &Endpoint,
    template: &RequestTemplate,
    shape: LoadShape,
    pace: Pace,
) -> anyhow::Result<RunStats> {
    let start = Instant::now();
    let measure_from = start + shape.warmup;
    let deadline = measure_from + shape.duration;

    let mut workers = Vec::with_capacity(shape.connections);
    for index in 0..shape.connections {
        let worker = Worker {
            endpoint: endpoint.clone(),
            template: template.clone(),
            local_ip: shape.local_ip,
            measure_from,
            deadline,
        };
        let schedule = match pace {
            Pace::ClosedLoop => None,
            Pace::Rate(rate) => Some(connection_schedule(start, rate, shape.connections, index)),
        };
        workers.push(tokio::spawn(worker.run(schedule)));
    }

    let mut ok = 0;
    let mut error_statuses = BTreeMap::new();
    let mut transport_errors = 0;
    let mut latencies = Vec::new();
    for worker in workers {
        let tally = worker.await.context("a load worker panicked")?;
        ok += tally.ok;
        transport_errors += tally.transport_errors;
        for (status, count) in tally.error_statuses {
            *error_statuses.entry(status).or_insert(0) += count;
        }
        latencies.extend(tally.latencies_ns);
    }
    Ok(RunStats::new(
        ok,
        error_statuses,
        transport_errors,
        shape.duration,
        latencies,
    ))
}

/// Returns the first send time and the period of connection `index` when `connections`
/// connections share `rate` requests per second, staggered evenly.
fn connection_schedule(
    start: Instant,
    rate: u32,
    connections: usize,
    index: usize,
) -> (Instant, Duration) {
    let rate = f64::from(rate.max(1));
    let period = Duration::from_secs_f64(connections as f64 / rate);
    let offset = period.mul_f64(index as f64 / connections as f64);
    (start + offset, period)
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    error_statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    latencies_ns: Vec<u64>,
}

struct Worker {
    endpoint: Endpoint,
    template: RequestTemplate,
    local_ip: Option<IpAddr>,
    measure_from: Instant,
    deadline: Instant,
}

enum Reply {
    Success,
    Status(u16),
}

impl Worker {
    async fn run(self, schedule: Option<(Instant, Duration)>) -> Tally {
        let mut tally = Tally::default();
        let mut sender: Option<SendRequest<Full<Bytes>>> = None;
        let mut ticker = schedule.map(|(first, period)| {
            let mut ticker = tokio::time::interval_at(first, period);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticker
        });

        loop {
            if let Some(ticker) = ticker.as_mut() {
                ticker.tick().await;
            }
            if Instant::now() >= self.deadline {
                break;
            }

            let ready = match sender.take() {
                Some(existing) if !existing.is_closed() => existing,
                _ => {
                    let limit =
                        self.deadline.saturating_duration_since(Instant::now()) + RESPONSE_GRACE;
                    match tokio::time::timeout(limit, connect(&self.endpoint, self.local_ip)).await
                    {
                        Ok(Ok(fresh)) => fresh,
                        Ok(Err(_)) | Err(_) => {
                            self.count_failure(&mut tally);
                            tokio::time::sleep(RECONNECT_PAUSE).await;
                            continue;
                        }
                    }
                }
            };

            let sent_at = Instant::now();
            let limit = self.deadline.saturating_duration_since(sent_at) + RESPONSE_GRACE;
            let (reply, kept) = match tokio::time::timeout(limit, self.exchange(ready)).await {
                Ok(Ok((reply, kept))) => (reply, kept),
                Ok(Err(_)) | Err(_) => {
                    self.count_failure(&mut tally);
                    continue;
                }
            };
            sender = kept;

            let done_at = Instant::now();
            if sent_at < self.measure_from || done_at > self.deadline {
                continue;
            }
            match reply {
                Reply::Success => {
                    tally.ok += 1;
                    let nanos = done_at.duration_since(sent_at).as_nanos();
                    tally
                        .latencies_ns
                        .push(u64::try_from(nanos).unwrap_or(u64::MAX));
                }
                Reply::Status(status) => {
                    *tally.error_statuses.entry(status).or_insert(0) += 1;
                }
            }
        }
        tally
    }

    fn count_failure(&self, tally: &mut Tally) {
        let now = Instant::now();
        if now >= self.measure_from && now <= self.deadline {
            tally.transport_errors += 1;
        }
    }

    /// Sends one request and reads the whole response body. Returns the sender again when
    /// the connection can carry another request.
    async fn exchange(
        &self,
        mut sender: SendRequest<Full<Bytes>>,
    ) -> anyhow::Result<(Reply, Option<SendRequest<Full<Bytes>>>)> {
        sender.ready().await?;
        let response = sender
            .send_request(self.template.build(&self.endpoint))
            .await?;
        let status = response.status();
        response.into_body().collect().await?;
        let reply = if status.is_success() {
            Reply::Success
        } else {
            Reply::Status(status.as_u16())
        };
        let kept = (!sender.is_closed()).then_some(sender);
        Ok((reply, kept))
    }
}

/// Opens one HTTP/1.1 connection, bound to `local_ip` when given.
async fn connect(
    endpoint: &Endpoint,
    local_ip: Option<IpAddr>,
) -> io::Result<SendRequest<Full<Bytes>>> {
    let socket = if endpoint.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local_ip {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(endpoint.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        // The connection ends when the sender is dropped or the server closes it. The
        // worker notices either through the sender, so the result is not needed here.
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_valid_json_rpc_tools_call() {
        let body: serde_json::Value = serde_json::from_str(TOOLS_CALL_BODY).unwrap();
        assert_eq!(body["method"], "tools/call");
        assert_eq!(body["params"]["name"], "echo");
        assert_eq!(
            body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
            "2026-07-28"
        );
    }

    #[test]
    fn template_carries_mirrored_headers_and_token() {
        let endpoint = Endpoint::local_mcp("127.0.0.1:4000".parse().unwrap());
        let request = RequestTemplate::tools_call(Some("abc"))
            .unwrap()
            .build(&endpoint);
        let headers = request.headers();
        assert_eq!(request.uri(), "/mcp");
        assert_eq!(headers["host"], "127.0.0.1:4000");
        assert_eq!(headers["mcp-method"], "tools/call");
        assert_eq!(headers["mcp-name"], "echo");
        assert_eq!(headers["mcp-protocol-version"], "2026-07-28");
        assert_eq!(headers["accept"], "application/json, text/event-stream");
        assert_eq!(headers["authorization"], "Bearer abc");
    }

    #[test]
    fn schedule_staggers_connections() {
        let start = Instant::now();
        let (first, period) = connection_schedule(start, 200, 4, 0);
        assert_eq!(first, start);
        assert_eq!(period, Duration::from_millis(20));
        let (second, _) = connection_schedule(start, 200, 4, 1);
        assert_eq!(second - start, Duration::from_millis(5));
    }

    /// Serves HTTP/1.1 on 127.0.0.1: each response's status is the next one from
    /// `statuses`, and its body names the peer's IP address.
    async fn serve_statuses(statuses: Vec<u16>) -> SocketAddr {
        use std::sync::{Arc, Mutex};

        use hyper::service::service_fn;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let statuses = Arc::new(Mutex::new(statuses.into_iter()));
        tokio::spawn(async move {
            loop {
                let (stream, peer) = listener.accept().await.unwrap();
                let statuses = Arc::clone(&statuses);
                let service = service_fn(move |_request| {
                    let status = statuses.lock().unwrap().next().unwrap_or(500);
                    let body = Full::new(Bytes::from(peer.ip().to_string()));
                    let mut response = hyper::Response::new(body);
                    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        addr
    }

    fn worker(endpoint: Endpoint) -> Worker {
        let now = Instant::now();
        Worker {
            endpoint,
            template: RequestTemplate::tools_call(None).unwrap(),
            local_ip: None,
            measure_from: now,
            deadline: now + Duration::from_secs(3_600),
        }
    }

    #[tokio::test]
    async fn exchange_reuses_connection_and_reads_status() {
        let endpoint = Endpoint::local_mcp(serve_statuses(vec![200, 429]).await);
        let worker = worker(endpoint.clone());
        let sender = connect(&endpoint, None).await.unwrap();

        let (first, kept) = worker.exchange(sender).await.unwrap();
        assert!(matches!(first, Reply::Success));
        let sender = kept.expect("keep-alive connection closed after the first response");

        let (second, kept) = worker.exchange(sender).await.unwrap();
        assert!(matches!(second, Reply::Status(429)));
        assert!(kept.is_some());
    }

    #[tokio::test]
    async fn connect_binds_given_local_address() {
        let endpoint = Endpoint::local_mcp(serve_statuses(vec![200]).await);
        let mut sender = connect(&endpoint, Some("127.0.0.2".parse().unwrap()))
            .await
            .unwrap();
        let template = RequestTemplate::tools_call(None).unwrap();
        let response = sender
            .send_request(template.build(&endpoint))
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"127.0.0.2");
    }

    #[tokio::test]
    async fn resolve_rejects_https_and_splits_path() {
        assert!(Endpoint::resolve("https://127.0.0.1/mcp").await.is_err());
        let endpoint = Endpoint::resolve("http://127.0.0.1:8123/mcp?x=1")
            .await
            .unwrap();
        assert_eq!(endpoint.addr, "127.0.0.1:8123".parse().unwrap());
        assert_eq!(endpoint.authority, "127.0.0.1:8123");
        assert_eq!(endpoint.path, "/mcp?x=1");
    }
}
