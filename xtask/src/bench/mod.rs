//! `cargo xtask bench`: criterion micro benches, end-to-end load through the proxy and a
//! flood test, checked against the budgets in `bench-budgets.toml`.

mod budget;
mod chain_config;
mod criterion;
mod e2e;
mod load;
mod process;
mod report;
mod stats;
mod svg;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};

use budget::{BudgetFile, Measured};
use e2e::{E2eResults, E2eSettings, FloodOutcome, RunKind, RunOutcome};

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Shortened run for a smoke check: short criterion times and short load runs.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Report the results but exit zero even when a budget fails or a measure is missing.
    #[arg(long)]
    pub(crate) no_gate: bool,
    /// Measured length of each end-to-end run, in seconds [default: from the budget file].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub(crate) duration: Option<f64>,
    /// Keep-alive connections of the end-to-end runs, each with one request in flight
    /// [default: from the budget file].
    #[arg(long, value_name = "N", value_parser = parse_connections)]
    pub(crate) concurrency: Option<usize>,
    /// Run only the end-to-end load against this MCP endpoint (`http://HOST:PORT/PATH`)
    /// and report it, without micro benches, local servers or gating.
    #[arg(long, value_name = "URL")]
    pub(crate) target: Option<String>,
    /// Skip the criterion micro benches.
    #[arg(long)]
    pub(crate) skip_micro: bool,
    /// Skip the end-to-end load runs and the flood test.
    #[arg(long)]
    pub(crate) skip_e2e: bool,
    /// Skip the flood test.
    #[arg(long)]
    pub(crate) skip_flood: bool,
    /// Budget file [default: bench-budgets.toml at the workspace root].
    #[arg(long, value_name = "FILE")]
    pub(crate) budgets: Option<PathBuf>,
}

/// Longest `--duration` accepted, in seconds: a load run is meant to be short.
const MAX_DURATION_SECS: f64 = 3_600.0;

fn parse_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("invalid number of seconds `{text}`"))?;
    if seconds > 0.0 && seconds <= MAX_DURATION_SECS {
        Ok(seconds)
    } else {
        Err(format!(
            "`{text}` must be more than 0 and at most {MAX_DURATION_SECS} seconds"
        ))
    }
}

fn parse_connections(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count) if count >= 1 => Ok(count),
        _ => Err(format!(
            "invalid connection count `{text}`: expected a whole number of at least 1"
        )),
    }
}

/// Runs the benches and returns whether every budget passed (always true with
/// `--no-gate` or `--target`).
///
/// # Errors
///
/// Fails when the budget file is invalid, cargo cannot be run, or the report cannot be
/// written. Benches and runs that fail are reported as missing instead.
pub(crate) fn run(args: &BenchArgs) -> anyhow::Result<bool> {
    let workspace = workspace_root();
    let budgets_path = args
        .budgets
        .clone()
        .unwrap_or_else(|| workspace.join("bench-budgets.toml"));
    let builtin: BTreeSet<String> = e2e::measure_names().into_iter().collect();
    let text = std::fs::read_to_string(&budgets_path)
        .with_context(|| format!("could not read {}", budgets_path.display()))?;
    let budgets = BudgetFile::parse(&text, &builtin)
        .with_context(|| format!("in {}", budgets_path.display()))?;

    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let target_dir = cargo_target_dir(&cargo, &workspace)?;
    let out_dir = target_dir.join("xtask-bench");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("could not create {}", out_dir.display()))?;

    let run_micro = args.target.is_none() && !args.skip_micro;
    let run_e2e = args.target.is_some() || !args.skip_e2e;
    let run_flood = args.target.is_none() && !args.skip_e2e && !args.skip_flood;

    let mut measures: BTreeMap<String, Measured> = BTreeMap::new();
    let mut bench_failures = Vec::new();
    if run_micro {
        let (micro, failures) =
            run_micro_benches(&cargo, &workspace, &target_dir, &budgets, args.quick)?;
        measures.extend(micro);
        bench_failures = failures;
    } else {
        for name in budgets.measures.keys() {
            measures.insert(name.clone(), Measured::Skipped);
        }
    }

    let e2e_results = if run_e2e {
        let settings = e2e_settings(&budgets, args);
        Some(run_e2e_part(
            &cargo,
            &workspace,
            &target_dir,
            args,
            settings,
            run_flood,
        )?)
    } else {
        None
    };
    if let Some(results) = &e2e_results {
        measures.extend(e2e::measures(results));
    }
    for name in &builtin {
        measures.entry(name.clone()).or_insert(Measured::Skipped);
    }

    let outcomes = budget::evaluate(&budgets.budgets, &measures);
    let run = RunSummary {
        budgets: &budgets,
        builtin: &builtin,
        bench_failures: &bench_failures,
        e2e: e2e_results.as_ref(),
    };
    publish(args, &run, &outcomes, measures, &out_dir)?;

    let failed = outcomes
        .iter()
        .filter(|outcome| outcome.status.fails_gate())
        .count();
    if failed > 0 {
        println!("{failed} budget(s) failed or could not be checked");
    }
    Ok(failed == 0 || args.no_gate || args.target.is_some())
}

/// Results of one run, for printing and the report.
struct RunSummary<'a> {
    budgets: &'a BudgetFile,
    builtin: &'a BTreeSet<String>,
    bench_failures: &'a [criterion::BenchFailure],
    e2e: Option<&'a E2eResults>,
}

/// Prints the table and the missing reasons, and writes the report and the plot.
fn publish(
    args: &BenchArgs,
    run: &RunSummary<'_>,
    outcomes: &[budget::Outcome],
    measures: BTreeMap<String, Measured>,
    out_dir: &Path,
) -> anyhow::Result<()> {
    // Unmeasured built-in names (such as the `target` run in a normal run) add only noise.
    let shown: BTreeMap<String, Measured> = measures
        .into_iter()
        .filter(|(name, measured)| !(run.builtin.contains(name) && *measured == Measured::Skipped))
        .collect();
    let rows = report::table_rows(outcomes, &shown);
    let missing = report::missing_groups(outcomes, &shown);

    println!("{}", report::render_text_table(&rows));
    for failure in run.bench_failures {
        println!(
            "bench {}/{} did not run: {}",
            failure.target.package, failure.target.bench, failure.reason
        );
    }
    for group in &missing {
        println!("missing: {}", first_line(&group.reason));
        println!("  rows: {}", group.rows.join(", "));
    }

    let plot_file = match run.e2e {
        Some(results) => Some(write_plot(out_dir, results)?),
        None => None,
    };
    let descriptions: BTreeMap<String, String> = run
        .budgets
        .measures
        .iter()
        .filter_map(|(name, spec)| Some((name.clone(), spec.about.clone()?)))
        .collect();
    let report_text = report::render_markdown(&report::Report {
        command: command_line(),
        machine: machine_description(),
        quick: args.quick,
        rows: &rows,
        missing: &missing,
        bench_failures: run.bench_failures,
        e2e: run.e2e,
        plot_file: plot_file.as_deref(),
        descriptions: &descriptions,
    });
    let report_path = out_dir.join("report.md");
    std::fs::write(&report_path, report_text)
        .with_context(|| format!("could not write {}", report_path.display()))?;
    println!("\nreport: {}", report_path.display());
    if let Some(plot) = &plot_file {
        println!("latency plot: {}", out_dir.join(plot).display());
    }

    Ok(())
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Returns the workspace root: the parent of the xtask package.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Asks cargo for the target directory, which honours `CARGO_TARGET_DIR` and config.
fn cargo_target_dir(cargo: &Path, workspace: &Path) -> anyhow::Result<PathBuf> {
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("could not run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("invalid cargo metadata output")?;
    let Some(dir) = metadata["target_directory"].as_str() else {
        bail!("cargo metadata output has no target_directory");
    };
    Ok(PathBuf::from(dir))
}

type MicroResults = (BTreeMap<String, Measured>, Vec<criterion::BenchFailure>);

fn run_micro_benches(
    cargo: &Path,
    workspace: &Path,
    target_dir: &Path,
    budgets: &BudgetFile,
    quick: bool,
) -> anyhow::Result<MicroResults> {
    let criterion_home = target_dir.join("criterion");
    let metrics_dir = target_dir.join("xtask-bench").join("metrics");
    if metrics_dir.exists() {
        std::fs::remove_dir_all(&metrics_dir)
            .with_context(|| format!("could not empty {}", metrics_dir.display()))?;
    }
    std::fs::create_dir_all(&metrics_dir)?;

    let args = if quick {
        &budgets.criterion.quick_args
    } else {
        &budgets.criterion.args
    };
    // Criterion rewrites a result's files on every run, so anything older than this is
    // from an earlier run. One second of slack covers file systems with coarse times.
    let started = SystemTime::now() - Duration::from_secs(1);
    let failures = criterion::run_benches(
        cargo,
        workspace,
        &budgets.benches,
        args,
        &criterion_home,
        &metrics_dir,
    );
    let results = criterion::collect_results(&criterion_home, started)?;
    let metrics = criterion::read_metrics(&metrics_dir);
    Ok((
        criterion::resolve_measures(budgets, &results, &metrics),
        failures,
    ))
}

fn e2e_settings(budgets: &BudgetFile, args: &BenchArgs) -> E2eSettings {
    let load = &budgets.load;
    let default_secs = if args.quick {
        load.quick_duration_secs
    } else {
        load.duration_secs
    };
    let seconds = args.duration.unwrap_or(default_secs);
    let duration = Duration::from_secs_f64(seconds.clamp(0.1, MAX_DURATION_SECS));
    E2eSettings {
        duration,
        warmup: (duration / 5).min(Duration::from_secs(1)),
        concurrency: args.concurrency.unwrap_or(load.concurrency),
        steady_rate: load.steady_rate,
        flood_connections: load.flood_connections,
        flood_ip_limit: load.flood_ip_limit,
    }
}

fn run_e2e_part(
    cargo: &Path,
    workspace: &Path,
    target_dir: &Path,
    args: &BenchArgs,
    settings: E2eSettings,
    with_flood: bool,
) -> anyhow::Result<E2eResults> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the tokio runtime")?;
    if let Some(url) = &args.target {
        return runtime.block_on(with_interrupt(e2e::run_target(url, settings)));
    }

    let binaries = match e2e::build_binaries(cargo, workspace, target_dir) {
        Ok(binaries) => binaries,
        Err(error) => return Ok(all_unavailable(&format!("{error:#}"), with_flood)),
    };
    // Children are killed when their handles drop, which also happens on Ctrl-C because
    // the interrupted future is dropped before the runtime shuts down.
    let results = runtime.block_on(with_interrupt(e2e::run_local(
        &binaries, settings, with_flood,
    )));
    match results {
        Ok(results) => Ok(results),
        Err(error) if error.is::<Interrupted>() => Err(error),
        Err(error) => Ok(all_unavailable(&format!("{error:#}"), with_flood)),
    }
}

fn all_unavailable(why: &str, with_flood: bool) -> E2eResults {
    E2eResults {
        runs: [RunKind::Direct, RunKind::ChainOff, RunKind::FullChain]
            .into_iter()
            .map(|kind| (kind, RunOutcome::Unavailable(why.to_owned())))
            .collect(),
        flood: with_flood.then(|| FloodOutcome::Unavailable(why.to_owned())),
    }
}

/// The run was stopped with Ctrl-C.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted by Ctrl-C; child processes were stopped")
    }
}

impl std::error::Error for Interrupted {}

/// Runs `work` until it finishes or Ctrl-C arrives, whichever is first.
async fn with_interrupt<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => Err(Interrupted.into()),
    }
}

/// Writes the latency plot of the end-to-end runs and the flood test, and returns its
/// file name.
fn write_plot(out_dir: &Path, results: &E2eResults) -> anyhow::Result<String> {
    let mut series = Vec::new();
    for (kind, outcome) in &results.runs {
        if let RunOutcome::Done(stats) = outcome {
            series.push(svg::Series {
                name: kind.name().to_owned(),
                points: stats::percentile_curve(&stats.latencies_ns),
            });
        }
    }
    if let Some(FloodOutcome::Done(runs)) = &results.flood {
        for (name, stats) in [
            ("steady, unloaded", &runs.unloaded),
            ("steady, flood", &runs.loaded),
        ] {
            series.push(svg::Series {
                name: name.to_owned(),
                points: stats::percentile_curve(&stats.latencies_ns),
            });
        }
    }
    let file_name = "latency.svg";
    let path = out_dir.join(file_name);
    let svg = svg::render_latency_plot("Latency percentiles of the end-to-end runs", &series);
    std::fs::write(&path, svg).with_context(|| format!("could not write {}", path.display()))?;
    Ok(file_name.to_owned())
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo xtask {}", args.join(" "))
}

/// Describes the machine as `N logical CPUs, MODEL`.
fn machine_description() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU model".to_owned());
    format!("{cpus} logical CPUs, {model}")
}
