//! Micro benches: runs the criterion bench targets listed in the budget file, then reads
//! their results and the metric files that benches write for non-time values.
//!
//! Criterion results are read from `CRITERION_HOME/**/new/benchmark.json` (for the full
//! benchmark id) and the `estimates.json` beside it (mean point estimate, nanoseconds per
//! iteration). Only files written during this run count, so a renamed or deleted bench
//! shows as missing instead of reporting an old number.
//!
//! Metric files: while xtask runs a bench it sets [`METRICS_DIR_ENV`] to a directory. A
//! bench that measures something other than time (such as bytes per tracked key) writes
//! one flat JSON object of numbers to `DIR/NAME.json`, and the budget file refers to a
//! value as `NAME/KEY`. xtask empties the directory before the benches run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::budget::{BenchTarget, BudgetFile, MeasureSource, Measured};

/// Environment variable with the directory a bench writes its metric file to.
pub(crate) const METRICS_DIR_ENV: &str = "SHADOWCAT_BENCH_METRICS_DIR";

/// A bench target that did not run to the end, and why.
#[derive(Debug, Clone)]
pub(crate) struct BenchFailure {
    /// The target.
    pub(crate) target: BenchTarget,
    /// Reason for the failure.
    pub(crate) reason: String,
}

/// Runs every bench target with `cargo bench` and returns those that failed.
///
/// Output goes straight to the terminal so progress stays visible.
pub(crate) fn run_benches(
    cargo: &Path,
    workspace: &Path,
    targets: &[BenchTarget],
    criterion_args: &[String],
    criterion_home: &Path,
    metrics_dir: &Path,
) -> Vec<BenchFailure> {
    let mut failures = Vec::new();
    for target in targets {
        eprintln!(
            "xtask bench: cargo bench -p {} --bench {} -- {}",
            target.package,
            target.bench,
            criterion_args.join(" ")
        );
        let status = Command::new(cargo)
            .current_dir(workspace)
            .args([
                "bench",
                "-p",
                &target.package,
                "--bench",
                &target.bench,
                "--",
            ])
            .args(criterion_args)
            .env("CRITERION_HOME", criterion_home)
            .env(METRICS_DIR_ENV, metrics_dir)
            .status();
        let reason = match status {
            Ok(status) if status.success() => continue,
            Ok(status) => format!("cargo bench exited with {status}"),
            Err(error) => format!("could not run cargo bench: {error}"),
        };
        eprintln!(
            "xtask bench: {}/{} failed: {reason}",
            target.package, target.bench
        );
        failures.push(BenchFailure {
            target: target.clone(),
            reason,
        });
    }
    failures
}

#[derive(Deserialize)]
struct BenchmarkFile {
    full_id: String,
}

#[derive(Deserialize)]
struct EstimatesFile {
    mean: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

/// Parses one criterion result: the full id from `benchmark.json` and the mean, in
/// nanoseconds, from `estimates.json`.
///
/// # Errors
///
/// Fails when either text is not the JSON criterion writes.
pub(crate) fn parse_result(
    benchmark_json: &str,
    estimates_json: &str,
) -> anyhow::Result<(String, f64)> {
    let benchmark: BenchmarkFile =
        serde_json::from_str(benchmark_json).context("invalid criterion benchmark.json")?;
    let estimates: EstimatesFile =
        serde_json::from_str(estimates_json).context("invalid criterion estimates.json")?;
    Ok((benchmark.full_id, estimates.mean.point_estimate))
}

/// Reads every criterion result under `criterion_home` written at or after `since`,
/// keyed by full benchmark id.
///
/// # Errors
///
/// Fails when a result file exists but cannot be read or parsed.
pub(crate) fn collect_results(
    criterion_home: &Path,
    since: SystemTime,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut results = BTreeMap::new();
    let mut pending = vec![criterion_home.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name == "new") {
                    if let Some((id, mean)) = read_fresh_result(&path, since)? {
                        results.insert(id, mean);
                    }
                } else {
                    pending.push(path);
                }
            }
        }
    }
    Ok(results)
}

fn read_fresh_result(new_dir: &Path, since: SystemTime) -> anyhow::Result<Option<(String, f64)>> {
    let estimates_path = new_dir.join("estimates.json");
    let benchmark_path = new_dir.join("benchmark.json");
    let Ok(metadata) = std::fs::metadata(&estimates_path) else {
        return Ok(None);
    };
    if metadata.modified()? < since || !benchmark_path.exists() {
        return Ok(None);
    }
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))
    };
    let parsed = parse_result(&read(&benchmark_path)?, &read(&estimates_path)?)
        .with_context(|| format!("in {}", new_dir.display()))?;
    Ok(Some(parsed))
}

/// Parses one metric file: a flat JSON object whose values are numbers.
///
/// # Errors
///
/// Fails when the text is not a JSON object or a value is not a number.
pub(crate) fn parse_metric_file(text: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let object: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(text).context("a metric file must be one JSON object")?;
    object
        .into_iter()
        .map(|(key, value)| match value.as_f64() {
            Some(number) => Ok((key, number)),
            None => bail!("metric `{key}` is {value}, not a number"),
        })
        .collect()
}

/// Reads every `*.json` metric file in `dir`, keyed by file stem. A file that cannot be
/// parsed is recorded as an error for its stem so its measures show why they are missing.
pub(crate) fn read_metrics(dir: &Path) -> BTreeMap<String, Result<BTreeMap<String, f64>, String>> {
    let mut files = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for path in entries.flatten().map(|entry| entry.path()) {
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        let parsed = std::fs::read_to_string(&path)
            .map_err(anyhow::Error::from)
            .and_then(|text| parse_metric_file(&text))
            .map_err(|error| format!("{}: {error:#}", path.display()));
        files.insert(stem.to_owned(), parsed);
    }
    files
}

/// Looks up every measure of the budget file in this run's criterion results and metric
/// files.
pub(crate) fn resolve_measures(
    budgets: &BudgetFile,
    results: &BTreeMap<String, f64>,
    metrics: &BTreeMap<String, Result<BTreeMap<String, f64>, String>>,
) -> BTreeMap<String, Measured> {
    let mut measures = BTreeMap::new();
    for (name, spec) in &budgets.measures {
        let unit = spec.unit();
        let measured = match spec.source(name) {
            Ok(MeasureSource::Criterion(id)) => match results.get(&id) {
                Some(&mean) if spec.per_second && mean > 0.0 => Measured::Value(1e9 / mean, unit),
                Some(&mean) if spec.per_second => {
                    Measured::Missing(format!("criterion result `{id}` has a mean of {mean} ns"))
                }
                Some(&mean) => Measured::Value(mean, unit),
                None => Measured::Missing(format!("no criterion result `{id}` in this run")),
            },
            Ok(MeasureSource::Metric { file, key }) => match metrics.get(&file) {
                Some(Ok(values)) => match values.get(&key) {
                    Some(&value) => Measured::Value(value, unit),
                    None => Measured::Missing(format!("metric file `{file}.json` has no `{key}`")),
                },
                Some(Err(why)) => Measured::Missing(why.clone()),
                None => Measured::Missing(format!("no metric file `{file}.json` in this run")),
            },
            Err(error) => Measured::Missing(error.to_string()),
        };
        measures.insert(name.clone(), measured);
    }
    measures
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::bench::budget::Unit;

    const BENCHMARK: &str = r#"{"group_id":"limiter","function_id":"full_check","value_str":"100000",
        "throughput":null,"full_id":"limiter/full_check/100000","directory_name":"limiter/full_check/100000",
        "title":"limiter/full_check/100000"}"#;
    const ESTIMATES: &str = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,
        "lower_bound":10.0,"upper_bound":12.0},"point_estimate":11.5,"standard_error":0.2},
        "median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":10.0,
        "upper_bound":12.0},"point_estimate":11.0,"standard_error":0.2}}"#;

    #[test]
    fn parse_result_reads_id_and_mean() {
        let (id, mean) = parse_result(BENCHMARK, ESTIMATES).unwrap();
        assert_eq!(id, "limiter/full_check/100000");
        assert_eq!(mean, 11.5);
    }

    #[test]
    fn parse_result_rejects_other_json() {
        assert!(parse_result("{}", ESTIMATES).is_err());
        assert!(parse_result(BENCHMARK, "[]").is_err());
    }

    #[test]
    fn collect_results_skips_stale_files() {
        let home = tempfile::tempdir().unwrap();
        let new_dir = home.path().join("limiter/full_check/100000/new");
        std::fs::create_dir_all(&new_dir).unwrap();
        std::fs::write(new_dir.join("benchmark.json"), BENCHMARK).unwrap();
        std::fs::write(new_dir.join("estimates.json"), ESTIMATES).unwrap();
        let base_dir = home.path().join("limiter/full_check/100000/base");
        std::fs::create_dir_all(&base_dir).unwrap();
        std::fs::write(base_dir.join("estimates.json"), "not read").unwrap();

        let before = SystemTime::now() - Duration::from_secs(3_600);
        let fresh = collect_results(home.path(), before).unwrap();
        assert_eq!(fresh.get("limiter/full_check/100000"), Some(&11.5));
        assert_eq!(fresh.len(), 1);

        let after = SystemTime::now() + Duration::from_secs(3_600);
        assert!(collect_results(home.path(), after).unwrap().is_empty());
    }

    #[test]
    fn metric_file_must_be_object_of_numbers() {
        let parsed = parse_metric_file(r#"{"bytes_per_key": 48.5, "keys": 100000}"#).unwrap();
        assert_eq!(parsed["bytes_per_key"], 48.5);
        assert_eq!(parsed["keys"], 100_000.0);
        assert!(parse_metric_file(r#"{"bytes_per_key": "48"}"#).is_err());
        assert!(parse_metric_file("[1, 2]").is_err());
    }

    #[test]
    fn resolve_reports_each_missing_reason() {
        let text = r#"
            [measures]
            full = { criterion = "limiter/full_check/100000" }
            raw = { criterion = "limiter/raw_check" }
            key_bytes = { metric = "limiter/bytes_per_key", unit = "bytes" }
            events = { metric = "audit/events_per_s", unit = "events_per_second" }
            broken = { metric = "broken/x" }
            rate = { criterion = "limiter/full_check/100000", per_second = true }
        "#;
        let budgets = BudgetFile::parse(text, &BTreeSet::new()).unwrap();
        let results = BTreeMap::from([("limiter/full_check/100000".to_owned(), 11.5)]);
        let metrics = BTreeMap::from([
            (
                "limiter".to_owned(),
                Ok(BTreeMap::from([("bytes_per_key".to_owned(), 48.0)])),
            ),
            ("broken".to_owned(), Err("broken.json: invalid".to_owned())),
        ]);
        let measures = resolve_measures(&budgets, &results, &metrics);
        assert_eq!(measures["full"], Measured::Value(11.5, Unit::Nanoseconds));
        assert_eq!(
            measures["rate"],
            Measured::Value(1e9 / 11.5, Unit::EventsPerSecond)
        );
        assert_eq!(measures["key_bytes"], Measured::Value(48.0, Unit::Bytes));
        assert!(
            matches!(&measures["raw"], Measured::Missing(why) if why.contains("limiter/raw_check"))
        );
        assert!(
            matches!(&measures["events"], Measured::Missing(why) if why.contains("audit.json"))
        );
        assert!(matches!(&measures["broken"], Measured::Missing(why) if why.contains("invalid")));
    }
}
