//! End-to-end load. The bundled example MCP server is driven directly, through Shadowcat
//! with every stage off, and through Shadowcat with the full chain on. Then the flood
//! test has one client address flood the proxy while a second sends a steady rate.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::budget::{Measured, Unit};
use super::chain_config::{self, ChainConfig, ChainSettings};
use super::load::{self, Endpoint, LoadShape, Pace, RequestTemplate};
use super::process::{self, ChildProcess, READY_TIMEOUT};
use super::stats::{REPORTED_PERCENTILES, RunStats};

/// Local address of the well-behaved client in the flood test.
const STEADY_CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// Local address of the flooding client; Linux routes all of 127.0.0.0/8 to loopback.
const FLOOD_CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Connections the steady client spreads its rate over.
const STEADY_CONNECTIONS: usize = 4;

/// One end-to-end configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RunKind {
    /// The example server without a proxy.
    Direct,
    /// Through Shadowcat with every stage off.
    ChainOff,
    /// Through Shadowcat with authentication, policy, rate limits and audit on.
    FullChain,
    /// A user-given `--target` URL.
    Target,
}

impl RunKind {
    /// Returns the name used in measure names and the report.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::ChainOff => "chain_off",
            Self::FullChain => "full_chain",
            Self::Target => "target",
        }
    }
}

/// The result of one run: its statistics, or why it could not run.
#[derive(Debug, Clone)]
pub(crate) enum RunOutcome {
    /// The run finished.
    Done(RunStats),
    /// The run could not be set up, for the given reason.
    Unavailable(String),
}

/// Result of the flood test.
#[derive(Debug, Clone)]
pub(crate) enum FloodOutcome {
    /// The flood test finished.
    Done(Box<FloodRuns>),
    /// The flood test could not be set up, for the given reason.
    Unavailable(String),
}

/// The three clients' results in a finished flood test.
#[derive(Debug, Clone)]
pub(crate) struct FloodRuns {
    /// The steady client alone.
    pub(crate) unloaded: RunStats,
    /// The steady client while the flooder runs.
    pub(crate) loaded: RunStats,
    /// The flooding client.
    pub(crate) flooder: RunStats,
}

/// Load shape shared by every end-to-end run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct E2eSettings {
    /// Measured time of each run.
    pub(crate) duration: Duration,
    /// Unrecorded time before each run.
    pub(crate) warmup: Duration,
    /// Closed-loop connections of the three comparison runs.
    pub(crate) concurrency: usize,
    /// Rate of the steady client in the flood test, in requests per second.
    pub(crate) steady_rate: u32,
    /// Connections of the flooding client.
    pub(crate) flood_connections: usize,
    /// Requests per second the per-IP tier allows each address in the flood test.
    pub(crate) flood_ip_limit: u32,
}

/// The two binaries of `shadowcat-proxy`.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// The `shadowcat` proxy.
    pub(crate) proxy: PathBuf,
    /// The `shadowcat-example-server`.
    pub(crate) example_server: PathBuf,
}

/// Everything the end-to-end part measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct E2eResults {
    /// Comparison runs in the order they ran.
    pub(crate) runs: Vec<(RunKind, RunOutcome)>,
    /// The flood test, when it was part of the run.
    pub(crate) flood: Option<FloodOutcome>,
}

/// Builds `shadowcat` and `shadowcat-example-server` with the release profile, which
/// `cargo bench` also uses, so the dependencies are compiled once for both.
///
/// # Errors
///
/// Fails when cargo fails.
pub(crate) fn build_binaries(
    cargo: &Path,
    workspace: &Path,
    target_dir: &Path,
) -> anyhow::Result<Binaries> {
    eprintln!("xtask bench: cargo build -p shadowcat-proxy --release --bins");
    let status = std::process::Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "-p", "shadowcat-proxy", "--release", "--bins"])
        .status()
        .context("could not run cargo build")?;
    if !status.success() {
        bail!("cargo build -p shadowcat-proxy --release --bins exited with {status}");
    }
    let release = target_dir.join("release");
    Ok(Binaries {
        proxy: release.join("shadowcat"),
        example_server: release.join("shadowcat-example-server"),
    })
}

/// Runs the three comparison runs and, when `with_flood`, the flood test.
///
/// A stage that cannot start is reported as unavailable; only a failure to start the
/// example server itself fails the whole part.
///
/// # Errors
///
/// Fails when the temporary directory or the example server cannot be set up.
pub(crate) async fn run_local(
    binaries: &Binaries,
    settings: E2eSettings,
    with_flood: bool,
) -> anyhow::Result<E2eResults> {
    let work_dir = tempfile::Builder::new()
        .prefix("xtask-bench-")
        .tempdir()
        .context("could not create a temporary directory")?;
    let server_addr = process::free_local_port()?;
    let mut server = ChildProcess::spawn(
        "example-server",
        &binaries.example_server,
        &["--listen".to_owned(), server_addr.to_string()],
        work_dir.path(),
    )?;
    server.wait_ready(server_addr, READY_TIMEOUT).await?;
    let upstream = Endpoint::local_mcp(server_addr);
    let upstream_url = format!("http://{server_addr}/mcp");

    let plain = RequestTemplate::tools_call(None)?;
    let shape = LoadShape {
        connections: settings.concurrency,
        warmup: settings.warmup,
        duration: settings.duration,
        local_ip: None,
    };
    let mut results = E2eResults::default();

    eprintln!("xtask bench: e2e direct");
    let direct = measure(&upstream, &plain, shape).await;
    results.runs.push((RunKind::Direct, direct));

    eprintln!("xtask bench: e2e through shadowcat, every stage off");
    let chain_off = run_chain_off(binaries, work_dir.path(), &upstream_url, &plain, shape).await;
    results
        .runs
        .push((RunKind::ChainOff, unavailable_on_error(chain_off)));

    eprintln!("xtask bench: e2e through shadowcat, full chain");
    let full_settings = ChainSettings {
        upstream_url: upstream_url.clone(),
        ip_requests_per_second: None,
    };
    let full = run_with_config(
        binaries,
        work_dir.path(),
        "full-chain",
        &full_settings,
        |endpoint, template| async move { Ok(measure(&endpoint, &template, shape).await) },
    )
    .await;
    results
        .runs
        .push((RunKind::FullChain, unavailable_on_error(full)));

    if with_flood {
        eprintln!("xtask bench: flood test");
        let flood_settings = ChainSettings {
            upstream_url,
            ip_requests_per_second: Some(settings.flood_ip_limit),
        };
        let flood = run_with_config(
            binaries,
            work_dir.path(),
            "flood",
            &flood_settings,
            |endpoint, template| async move { flood(&endpoint, &template, settings).await },
        )
        .await;
        results.flood =
            Some(flood.unwrap_or_else(|error| FloodOutcome::Unavailable(format!("{error:#}"))));
    }

    server.stop().await;
    Ok(results)
}

/// Starts the proxy with flags only, so every stage is off, and measures through it.
async fn run_chain_off(
    binaries: &Binaries,
    work_dir: &Path,
    upstream_url: &str,
    template: &RequestTemplate,
    shape: LoadShape,
) -> anyhow::Result<RunOutcome> {
    let listen = process::free_local_port()?;
    let args = vec![
        "reverse".to_owned(),
        "--listen".to_owned(),
        listen.to_string(),
        "--upstream".to_owned(),
        upstream_url.to_owned(),
    ];
    let proxy = start_proxy("proxy-chain-off", &binaries.proxy, &args, listen, work_dir).await?;
    let outcome = measure(&Endpoint::local_mcp(listen), template, shape).await;
    proxy.stop().await;
    Ok(outcome)
}

/// Runs the comparison load against a user-given endpoint.
///
/// # Errors
///
/// Fails when the URL is invalid or does not resolve.
pub(crate) async fn run_target(url: &str, settings: E2eSettings) -> anyhow::Result<E2eResults> {
    let endpoint = Endpoint::resolve(url).await?;
    let template = RequestTemplate::tools_call(None)?;
    let shape = LoadShape {
        connections: settings.concurrency,
        warmup: settings.warmup,
        duration: settings.duration,
        local_ip: None,
    };
    eprintln!("xtask bench: e2e against {url}");
    let outcome = measure(&endpoint, &template, shape).await;
    Ok(E2eResults {
        runs: vec![(RunKind::Target, outcome)],
        flood: None,
    })
}

fn unavailable_on_error(result: anyhow::Result<RunOutcome>) -> RunOutcome {
    result.unwrap_or_else(|error| RunOutcome::Unavailable(format!("{error:#}")))
}

/// Writes the config of `settings`, starts the proxy with it, calls `body` with the
/// proxy's endpoint and the request to send, and stops the proxy.
async fn run_with_config<T, F, Fut>(
    binaries: &Binaries,
    work_dir: &Path,
    name: &str,
    settings: &ChainSettings,
    body: F,
) -> anyhow::Result<T>
where
    F: FnOnce(Endpoint, RequestTemplate) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let listen = process::free_local_port()?;
    let dir = work_dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let ChainConfig { toml, bearer_token } =
        chain_config::full_chain_config(settings, listen, &dir)?;
    let config_path = dir.join("shadowcat.toml");
    std::fs::write(&config_path, toml)
        .with_context(|| format!("could not write {}", config_path.display()))?;

    let args = vec![
        "reverse".to_owned(),
        "--config".to_owned(),
        config_path.display().to_string(),
    ];
    let proxy = start_proxy(
        &format!("proxy-{name}"),
        &binaries.proxy,
        &args,
        listen,
        work_dir,
    )
    .await?;
    let template = RequestTemplate::tools_call(bearer_token.as_deref())?;
    let result = body(Endpoint::local_mcp(listen), template).await;
    proxy.stop().await;
    result
}

async fn start_proxy(
    name: &str,
    program: &Path,
    args: &[String],
    listen: SocketAddr,
    log_dir: &Path,
) -> anyhow::Result<ChildProcess> {
    let mut proxy = ChildProcess::spawn(name, program, args, log_dir)?;
    proxy
        .wait_ready(listen, READY_TIMEOUT)
        .await
        .with_context(|| format!("shadowcat {} did not start", args.join(" ")))?;
    Ok(proxy)
}

/// Checks with one request that the endpoint returns 2xx, then runs the closed-loop load.
async fn measure(endpoint: &Endpoint, template: &RequestTemplate, shape: LoadShape) -> RunOutcome {
    if let Err(why) = probe(endpoint, template).await {
        return RunOutcome::Unavailable(why);
    }
    match load::run(endpoint, template, shape, Pace::ClosedLoop).await {
        Ok(stats) => RunOutcome::Done(stats),
        Err(error) => RunOutcome::Unavailable(format!("{error:#}")),
    }
}

/// Sends one request and returns an error with the status and the start of the body
/// unless the response is 2xx.
async fn probe(endpoint: &Endpoint, template: &RequestTemplate) -> Result<(), String> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(endpoint.addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<bytes::Bytes>>(TokioIo::new(stream))
                .await?;
        tokio::spawn(connection);
        let response = sender.send_request(template.build(endpoint)).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    match tokio::time::timeout(READY_TIMEOUT, attempt).await {
        Ok(Ok((status, _))) if status.is_success() => Ok(()),
        Ok(Ok((status, body))) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            Err(format!("the first request got {status}: {}", text.trim()))
        }
        Ok(Err(error)) => Err(format!("the first request failed: {error:#}")),
        Err(_) => Err(format!(
            "the first request timed out after {} s",
            READY_TIMEOUT.as_secs()
        )),
    }
}

/// Measures the steady client alone, then again while the flooder runs.
async fn flood(
    endpoint: &Endpoint,
    template: &RequestTemplate,
    settings: E2eSettings,
) -> anyhow::Result<FloodOutcome> {
    if let Err(why) = probe(endpoint, template).await {
        return Ok(FloodOutcome::Unavailable(why));
    }
    let steady_shape = LoadShape {
        connections: STEADY_CONNECTIONS,
        warmup: settings.warmup,
        duration: settings.duration,
        local_ip: Some(STEADY_CLIENT_IP),
    };
    let flood_shape = LoadShape {
        connections: settings.flood_connections,
        local_ip: Some(FLOOD_CLIENT_IP),
        ..steady_shape
    };
    let steady_pace = Pace::Rate(settings.steady_rate);

    let unloaded = run_on_own_thread(endpoint, template, steady_shape, steady_pace).await?;
    let (loaded, flooder) = tokio::join!(
        run_on_own_thread(endpoint, template, steady_shape, steady_pace),
        run_on_own_thread(endpoint, template, flood_shape, Pace::ClosedLoop),
    );
    let flooder = flooder?;
    if flooder.error_statuses.get(&429).copied().unwrap_or(0) == 0 {
        return Ok(FloodOutcome::Unavailable(format!(
            "the flooding client got no 429 (errors: {}), so the per-IP limit was not in effect",
            flooder.error_summary()
        )));
    }
    Ok(FloodOutcome::Done(Box::new(FloodRuns {
        unloaded,
        loaded: loaded?,
        flooder,
    })))
}

/// Runs one client on a single-threaded runtime of its own, on a dedicated thread.
///
/// Both clients of the flood test run this way. The steady client's requests and latency
/// timestamps then never wait in a run queue behind the flooder's tasks, which no
/// separate client machine would add to its p99. The flooder's own client-side work can
/// take at most one of the machine's cores away from the proxy.
async fn run_on_own_thread(
    endpoint: &Endpoint,
    template: &RequestTemplate,
    shape: LoadShape,
    pace: Pace,
) -> anyhow::Result<RunStats> {
    let endpoint = endpoint.clone();
    let template = template.clone();
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start a tokio runtime for the steady client")?;
        runtime.block_on(load::run(&endpoint, &template, shape, pace))
    })
    .await
    .context("the steady client's thread panicked")?
}

/// Percentile measures of a run: `(suffix, percentile)`.
const PERCENTILE_MEASURES: [(&str, f64); 4] = [
    ("p50_us", REPORTED_PERCENTILES[0]),
    ("p90_us", REPORTED_PERCENTILES[1]),
    ("p99_us", REPORTED_PERCENTILES[2]),
    ("p99_9_us", REPORTED_PERCENTILES[3]),
];

/// Returns the names of every measure the end-to-end part produces, for checking the
/// budget file.
pub(crate) fn measure_names() -> Vec<String> {
    let mut names = Vec::new();
    for kind in [
        RunKind::Direct,
        RunKind::ChainOff,
        RunKind::FullChain,
        RunKind::Target,
    ] {
        for suffix in ["rps", "errors"]
            .into_iter()
            .chain(PERCENTILE_MEASURES.map(|(suffix, _)| suffix))
        {
            names.push(format!("e2e.{}.{suffix}", kind.name()));
        }
    }
    for name in [
        "unloaded_p99_us",
        "loaded_p99_us",
        "flooder_limited",
        "flooder_ok",
    ] {
        names.push(format!("flood.{name}"));
    }
    names
}

/// Turns the results into named measures. Runs that were not part of this invocation
/// are absent, and the caller marks them skipped.
pub(crate) fn measures(results: &E2eResults) -> BTreeMap<String, Measured> {
    let mut measures = BTreeMap::new();
    for (kind, outcome) in &results.runs {
        let prefix = format!("e2e.{}", kind.name());
        match outcome {
            RunOutcome::Done(stats) => {
                measures.insert(
                    format!("{prefix}.rps"),
                    Measured::Value(stats.requests_per_second(), Unit::RequestsPerSecond),
                );
                let errors = stats.error_responses() + stats.transport_errors;
                measures.insert(
                    format!("{prefix}.errors"),
                    Measured::Value(errors as f64, Unit::Count),
                );
                for (suffix, p) in PERCENTILE_MEASURES {
                    let value = match stats.percentile_us(p) {
                        Some(us) => Measured::Value(us, Unit::Microseconds),
                        None => {
                            Measured::Missing(format!("{} had no successful response", kind.name()))
                        }
                    };
                    measures.insert(format!("{prefix}.{suffix}"), value);
                }
            }
            RunOutcome::Unavailable(why) => {
                let why = format!("{} run unavailable: {why}", kind.name());
                measures.insert(format!("{prefix}.rps"), Measured::Missing(why.clone()));
                measures.insert(format!("{prefix}.errors"), Measured::Missing(why.clone()));
                for (suffix, _) in PERCENTILE_MEASURES {
                    measures.insert(format!("{prefix}.{suffix}"), Measured::Missing(why.clone()));
                }
            }
        }
    }
    match &results.flood {
        Some(FloodOutcome::Done(runs)) => {
            let FloodRuns {
                unloaded,
                loaded,
                flooder,
            } = runs.as_ref();
            let p99 = |stats: &RunStats| match stats.percentile_us(99.0) {
                Some(us) => Measured::Value(us, Unit::Microseconds),
                None => {
                    Measured::Missing("the steady client had no successful response".to_owned())
                }
            };
            measures.insert("flood.unloaded_p99_us".to_owned(), p99(unloaded));
            measures.insert("flood.loaded_p99_us".to_owned(), p99(loaded));
            let limited = flooder.error_statuses.get(&429).copied().unwrap_or(0);
            measures.insert(
                "flood.flooder_limited".to_owned(),
                Measured::Value(limited as f64, Unit::Count),
            );
            measures.insert(
                "flood.flooder_ok".to_owned(),
                Measured::Value(flooder.ok as f64, Unit::Count),
            );
        }
        Some(FloodOutcome::Unavailable(why)) => {
            let why = format!("flood test unavailable: {why}");
            for name in [
                "unloaded_p99_us",
                "loaded_p99_us",
                "flooder_limited",
                "flooder_ok",
            ] {
                measures.insert(format!("flood.{name}"), Measured::Missing(why.clone()));
            }
        }
        None => {}
    }
    measures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(latencies_us: &[u64]) -> RunStats {
        let latencies = latencies_us.iter().map(|us| us * 1_000).collect();
        RunStats::new(
            latencies_us.len() as u64,
            BTreeMap::from([(429, 2)]),
            1,
            Duration::from_secs(1),
            latencies,
        )
    }

    #[test]
    fn measures_of_done_and_unavailable_runs() {
        let results = E2eResults {
            runs: vec![
                (
                    RunKind::Direct,
                    RunOutcome::Done(stats(&[100, 200, 300, 400])),
                ),
                (
                    RunKind::FullChain,
                    RunOutcome::Unavailable("config rejected".into()),
                ),
            ],
            flood: None,
        };
        let measures = measures(&results);
        assert_eq!(
            measures["e2e.direct.rps"],
            Measured::Value(4.0, Unit::RequestsPerSecond)
        );
        assert_eq!(
            measures["e2e.direct.p50_us"],
            Measured::Value(200.0, Unit::Microseconds)
        );
        assert_eq!(
            measures["e2e.direct.p99_9_us"],
            Measured::Value(400.0, Unit::Microseconds)
        );
        assert_eq!(
            measures["e2e.direct.errors"],
            Measured::Value(3.0, Unit::Count)
        );
        assert!(matches!(
            &measures["e2e.full_chain.rps"],
            Measured::Missing(why) if why.contains("config rejected")
        ));
        assert!(!measures.contains_key("e2e.chain_off.rps"));
        assert!(!measures.contains_key("flood.loaded_p99_us"));
    }

    #[test]
    fn measures_of_flood() {
        let results = E2eResults {
            runs: Vec::new(),
            flood: Some(FloodOutcome::Done(Box::new(FloodRuns {
                unloaded: stats(&[100; 100]),
                loaded: stats(&[150; 100]),
                flooder: stats(&[]),
            }))),
        };
        let measures = measures(&results);
        assert_eq!(
            measures["flood.unloaded_p99_us"],
            Measured::Value(100.0, Unit::Microseconds)
        );
        assert_eq!(
            measures["flood.loaded_p99_us"],
            Measured::Value(150.0, Unit::Microseconds)
        );
        assert_eq!(
            measures["flood.flooder_limited"],
            Measured::Value(2.0, Unit::Count)
        );
    }

    #[test]
    fn every_produced_measure_is_listed() {
        let names = measure_names();
        let results = E2eResults {
            runs: vec![(RunKind::ChainOff, RunOutcome::Done(stats(&[1])))],
            flood: Some(FloodOutcome::Unavailable("no".into())),
        };
        for name in measures(&results).keys() {
            assert!(names.contains(name), "{name} is not in measure_names()");
        }
    }
}
