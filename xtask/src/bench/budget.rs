//! The budget file (`bench-budgets.toml`): which criterion benches to run, where each
//! named measure comes from, and the limits that gate a run.
//!
//! Budgets compare values measured in the same run (a ratio of two measures), so a slow
//! or busy machine moves both sides together. A budget without `relative_to` compares one
//! measure against an absolute bound, which suits non-time values such as bytes per key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{Context, bail};
use serde::Deserialize;

/// The parsed budget file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetFile {
    /// Arguments passed to every criterion bench binary.
    #[serde(default)]
    pub(crate) criterion: CriterionSettings,
    /// Default load shape of the end-to-end runs.
    #[serde(default)]
    pub(crate) load: LoadSettings,
    /// Criterion bench targets to run, in order.
    #[serde(default, rename = "bench")]
    pub(crate) benches: Vec<BenchTarget>,
    /// Named measures read from criterion results or bench-written metric files.
    #[serde(default)]
    pub(crate) measures: BTreeMap<String, MeasureSpec>,
    /// The budgets that gate a run.
    #[serde(default, rename = "budget")]
    pub(crate) budgets: Vec<Budget>,
}

/// Criterion command-line arguments for full and `--quick` runs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CriterionSettings {
    /// Arguments for a full run.
    #[serde(default)]
    pub(crate) args: Vec<String>,
    /// Arguments for a `--quick` run.
    #[serde(default)]
    pub(crate) quick_args: Vec<String>,
}

/// Load shape of the end-to-end and flood runs; command-line flags override it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoadSettings {
    /// Length of each measured end-to-end run in a full run, in seconds.
    pub(crate) duration_secs: f64,
    /// Length of each measured end-to-end run with `--quick`, in seconds.
    pub(crate) quick_duration_secs: f64,
    /// Open keep-alive connections, each with one request in flight at a time.
    pub(crate) concurrency: usize,
    /// Request rate of the well-behaved client in the flood test, in requests per second.
    pub(crate) steady_rate: u32,
    /// Connections the flooding client keeps busy.
    pub(crate) flood_connections: usize,
    /// Requests per second the per-IP tier allows each client address in the flood test.
    pub(crate) flood_ip_limit: u32,
}

impl Default for LoadSettings {
    fn default() -> Self {
        Self {
            duration_secs: 10.0,
            quick_duration_secs: 2.0,
            concurrency: 16,
            steady_rate: 200,
            flood_connections: 8,
            flood_ip_limit: 1000,
        }
    }
}

/// One `cargo bench -p PACKAGE --bench NAME` invocation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BenchTarget {
    /// Cargo package that owns the bench.
    pub(crate) package: String,
    /// Name of the `[[bench]]` target.
    pub(crate) bench: String,
}

/// Source of a named measure, as written in the budget file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MeasureSpec {
    /// Full criterion benchmark id as criterion prints it (`group/function/parameter`);
    /// the measure is the mean time per iteration in nanoseconds.
    pub(crate) criterion: Option<String>,
    /// `FILE/KEY`: number `KEY` of the metric file `FILE.json` that a bench wrote.
    pub(crate) metric: Option<String>,
    /// With `criterion`, reports iterations per second (`1e9 / mean`) instead of the
    /// mean time, for benches that time one event per iteration.
    #[serde(default)]
    pub(crate) per_second: bool,
    /// Unit of a metric or `per_second` value; other criterion measures are always
    /// nanoseconds.
    pub(crate) unit: Option<Unit>,
    /// One line on what the measure is, shown in the report.
    pub(crate) about: Option<String>,
}

/// A resolved measure source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MeasureSource {
    /// Mean of a criterion benchmark, by its full id.
    Criterion(String),
    /// A number in a bench-written metric file.
    Metric {
        /// File stem under the metrics directory.
        file: String,
        /// Key of the number inside the file's JSON object.
        key: String,
    },
}

impl MeasureSpec {
    /// Resolves the spec into exactly one source.
    ///
    /// # Errors
    ///
    /// Fails when the spec names no source, both sources, or a metric without `/`.
    pub(crate) fn source(&self, name: &str) -> anyhow::Result<MeasureSource> {
        match (&self.criterion, &self.metric) {
            (Some(id), None) => Ok(MeasureSource::Criterion(id.clone())),
            (None, Some(_)) if self.per_second => {
                bail!("measure `{name}`: `per_second` applies only to criterion measures")
            }
            (None, Some(metric)) => {
                let Some((file, key)) = metric.split_once('/') else {
                    bail!("measure `{name}`: metric `{metric}` must be written as FILE/KEY");
                };
                if file.is_empty() || key.is_empty() {
                    bail!("measure `{name}`: metric `{metric}` must be written as FILE/KEY");
                }
                Ok(MeasureSource::Metric {
                    file: file.to_owned(),
                    key: key.to_owned(),
                })
            }
            (None, None) => bail!("measure `{name}` needs either `criterion` or `metric`"),
            (Some(_), Some(_)) => {
                bail!("measure `{name}` sets both `criterion` and `metric`; keep one")
            }
        }
    }

    /// Returns the unit of the measure's values.
    pub(crate) fn unit(&self) -> Unit {
        if self.criterion.is_some() && self.per_second {
            self.unit.unwrap_or(Unit::EventsPerSecond)
        } else if self.criterion.is_some() {
            Unit::Nanoseconds
        } else {
            self.unit.unwrap_or(Unit::Count)
        }
    }
}

/// Unit of a measured value, used for display only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Unit {
    /// Time in nanoseconds.
    Nanoseconds,
    /// Time in microseconds.
    Microseconds,
    /// Bytes.
    Bytes,
    /// Requests per second.
    RequestsPerSecond,
    /// Events per second.
    EventsPerSecond,
    /// A plain count.
    Count,
    /// A dimensionless ratio of two measures.
    Ratio,
}

impl Unit {
    /// Formats `value` in this unit with a readable magnitude.
    pub(crate) fn format(self, value: f64) -> String {
        match self {
            Self::Nanoseconds => format_duration_ns(value),
            Self::Microseconds => format_duration_ns(value * 1_000.0),
            Self::Bytes => format!("{} B", format_number(value)),
            Self::RequestsPerSecond => format!("{} req/s", format_number(value)),
            Self::EventsPerSecond => format!("{} events/s", format_number(value)),
            Self::Count => format_number(value),
            Self::Ratio => format!("{value:.2}x"),
        }
    }
}

fn format_duration_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else {
        format!("{:.2} s", ns / 1_000_000_000.0)
    }
}

fn format_number(value: f64) -> String {
    if value.fract() == 0.0 || value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// One limit from the budget file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Budget {
    /// Row label in the report.
    pub(crate) name: String,
    /// The measure that is checked.
    pub(crate) measure: String,
    /// When set, the checked value is `measure / relative_to` from the same run.
    pub(crate) relative_to: Option<String>,
    /// Inclusive upper bound.
    pub(crate) max: Option<f64>,
    /// Inclusive lower bound.
    pub(crate) min: Option<f64>,
}

impl Budget {
    /// Renders the bound, such as `<= 3.00x` or `>= 0.90x`.
    pub(crate) fn bound_text(&self, unit: Unit) -> String {
        let unit = if self.relative_to.is_some() {
            Unit::Ratio
        } else {
            unit
        };
        let mut parts = Vec::new();
        if let Some(min) = self.min {
            parts.push(format!(">= {}", unit.format(min)));
        }
        if let Some(max) = self.max {
            parts.push(format!("<= {}", unit.format(max)));
        }
        parts.join(", ")
    }
}

impl BudgetFile {
    /// Parses and checks a budget file.
    ///
    /// `builtin` lists the measures that xtask produces itself (the end-to-end runs), so a
    /// budget may name them without a `[measures]` entry.
    ///
    /// # Errors
    ///
    /// Fails on invalid TOML, an unknown field, a measure without exactly one source, or
    /// a budget that names an unknown measure or has neither `min` nor `max`.
    pub(crate) fn parse(text: &str, builtin: &BTreeSet<String>) -> anyhow::Result<Self> {
        let file: Self = toml::from_str(text).context("invalid budget file")?;
        for (name, spec) in &file.measures {
            spec.source(name)?;
            if builtin.contains(name) {
                bail!("measure `{name}` is produced by xtask itself; remove it from [measures]");
            }
        }
        for budget in &file.budgets {
            if budget.min.is_none() && budget.max.is_none() {
                bail!("budget `{}` needs `min`, `max` or both", budget.name);
            }
            let referenced = std::iter::once(&budget.measure).chain(&budget.relative_to);
            for measure in referenced {
                if !file.measures.contains_key(measure) && !builtin.contains(measure) {
                    bail!(
                        "budget `{}` names unknown measure `{measure}`; define it under \
                         [measures] or use one of: {}",
                        budget.name,
                        builtin.iter().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
        }
        let load = &file.load;
        if load.concurrency == 0 || load.flood_connections == 0 {
            bail!("[load] concurrency and flood_connections must be at least 1");
        }
        if load.steady_rate == 0 || load.flood_ip_limit == 0 {
            bail!("[load] steady_rate and flood_ip_limit must be at least 1");
        }
        let durations = [load.duration_secs, load.quick_duration_secs];
        if durations
            .iter()
            .any(|secs| !(secs.is_finite() && *secs > 0.0))
        {
            bail!("[load] duration_secs and quick_duration_secs must be more than 0");
        }
        Ok(file)
    }
}

/// A measured value, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Measured {
    /// The value and its unit.
    Value(f64, Unit),
    /// The measure was not produced, for the given reason.
    Missing(String),
    /// The part of the run that produces it was not selected.
    Skipped,
}

/// Outcome of one budget.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Status {
    /// Within the budget.
    Pass,
    /// Outside the budget.
    Fail,
    /// A measure was missing, so the budget could not be checked; gating fails.
    Missing(String),
    /// The part of the run was not selected; gating ignores it.
    Skipped,
}

impl Status {
    /// Returns whether the status fails a gated run.
    pub(crate) fn fails_gate(&self) -> bool {
        matches!(self, Self::Fail | Self::Missing(_))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pass => f.write_str("pass"),
            Self::Fail => f.write_str("FAIL"),
            Self::Missing(_) => f.write_str("missing"),
            Self::Skipped => f.write_str("skipped"),
        }
    }
}

/// One evaluated budget: what was checked, against what, with which result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// The budget's label.
    pub(crate) name: String,
    /// The checked value, formatted, or `-` when missing.
    pub(crate) value: String,
    /// The bound, formatted.
    pub(crate) bound: String,
    /// Pass, fail, missing or skipped.
    pub(crate) status: Status,
}

/// Evaluates every budget against the measures of one run.
///
/// A measure absent from `measures` counts as missing.
pub(crate) fn evaluate(budgets: &[Budget], measures: &BTreeMap<String, Measured>) -> Vec<Outcome> {
    budgets
        .iter()
        .map(|budget| evaluate_one(budget, measures))
        .collect()
}

fn evaluate_one(budget: &Budget, measures: &BTreeMap<String, Measured>) -> Outcome {
    let lookup = |name: &str| {
        measures
            .get(name)
            .cloned()
            .unwrap_or_else(|| Measured::Missing(format!("`{name}` was not measured")))
    };
    let outcome = |value: String, unit: Unit, status: Status| Outcome {
        name: budget.name.clone(),
        value,
        bound: budget.bound_text(unit),
        status,
    };

    let (value, unit) = match lookup(&budget.measure) {
        Measured::Value(value, unit) => (value, unit),
        Measured::Missing(why) => return outcome("-".into(), Unit::Count, Status::Missing(why)),
        Measured::Skipped => return outcome("-".into(), Unit::Count, Status::Skipped),
    };
    let (checked, shown_unit) = match &budget.relative_to {
        None => (value, unit),
        Some(base_name) => match lookup(base_name) {
            Measured::Value(base, _) if base > 0.0 && base.is_finite() => {
                (value / base, Unit::Ratio)
            }
            Measured::Value(base, _) => {
                let why = format!("`{base_name}` is {base}, so the ratio is undefined");
                return outcome("-".into(), Unit::Ratio, Status::Missing(why));
            }
            Measured::Missing(why) => {
                return outcome("-".into(), Unit::Ratio, Status::Missing(why));
            }
            Measured::Skipped => return outcome("-".into(), Unit::Ratio, Status::Skipped),
        },
    };

    let within = checked.is_finite()
        && budget.min.is_none_or(|min| checked >= min)
        && budget.max.is_none_or(|max| checked <= max);
    let status = if within { Status::Pass } else { Status::Fail };
    outcome(shown_unit.format(checked), shown_unit, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> BTreeSet<String> {
        ["e2e.direct.rps", "e2e.chain_off.rps"]
            .into_iter()
            .map(String::from)
            .collect()
    }

    const SAMPLE: &str = r#"
        [criterion]
        args = ["--measurement-time", "3"]
        quick_args = ["--measurement-time", "1"]

        [[bench]]
        package = "shadowcat-ratelimit"
        bench = "limiter"

        [measures]
        raw = { criterion = "limiter/raw_check" }
        full = { criterion = "limiter/full_check/100000" }
        key_bytes = { metric = "limiter/bytes_per_key", unit = "bytes" }

        [[budget]]
        name = "full check vs raw check"
        measure = "full"
        relative_to = "raw"
        max = 3.0

        [[budget]]
        name = "bytes per key"
        measure = "key_bytes"
        max = 64

        [[budget]]
        name = "proxy vs direct throughput"
        measure = "e2e.chain_off.rps"
        relative_to = "e2e.direct.rps"
        min = 0.6
    "#;

    #[test]
    fn parse_reads_every_section() {
        let file = BudgetFile::parse(SAMPLE, &builtin()).unwrap();
        assert_eq!(file.criterion.quick_args, ["--measurement-time", "1"]);
        assert_eq!(
            file.benches,
            [BenchTarget {
                package: "shadowcat-ratelimit".into(),
                bench: "limiter".into()
            }]
        );
        assert_eq!(file.budgets.len(), 3);
        assert_eq!(file.load.concurrency, LoadSettings::default().concurrency);
        assert_eq!(
            file.measures["key_bytes"].source("key_bytes").unwrap(),
            MeasureSource::Metric {
                file: "limiter".into(),
                key: "bytes_per_key".into()
            }
        );
        assert_eq!(file.measures["key_bytes"].unit(), Unit::Bytes);
        assert_eq!(file.measures["raw"].unit(), Unit::Nanoseconds);
    }

    #[test]
    fn parse_rejects_unknown_measure() {
        let text = "[[budget]]\nname = \"x\"\nmeasure = \"nope\"\nmax = 1.0\n";
        let error = BudgetFile::parse(text, &builtin()).unwrap_err();
        assert!(
            error.to_string().contains("unknown measure `nope`"),
            "{error}"
        );
    }

    #[test]
    fn parse_rejects_budget_without_bound() {
        let text = "[[budget]]\nname = \"x\"\nmeasure = \"e2e.direct.rps\"\n";
        let error = BudgetFile::parse(text, &builtin()).unwrap_err();
        assert!(error.to_string().contains("needs `min`, `max`"), "{error}");
    }

    #[test]
    fn parse_rejects_measure_with_two_sources() {
        let text = "[measures]\nx = { criterion = \"a\", metric = \"f/k\" }\n";
        assert!(BudgetFile::parse(text, &builtin()).is_err());
        let text = "[measures]\nx = { metric = \"no-slash\" }\n";
        assert!(BudgetFile::parse(text, &builtin()).is_err());
        let text = "[measures]\nx = { unit = \"bytes\" }\n";
        assert!(BudgetFile::parse(text, &builtin()).is_err());
        let text = "[measures]\nx = { metric = \"f/k\", per_second = true }\n";
        assert!(BudgetFile::parse(text, &builtin()).is_err());
    }

    #[test]
    fn parse_rejects_invalid_load_shape() {
        let valid = [
            ("duration_secs", "1.0"),
            ("quick_duration_secs", "1.0"),
            ("concurrency", "1"),
            ("steady_rate", "1"),
            ("flood_connections", "1"),
            ("flood_ip_limit", "1"),
        ];
        let invalid = [
            ("duration_secs", "0.0"),
            ("quick_duration_secs", "-1.0"),
            ("concurrency", "0"),
            ("steady_rate", "0"),
            ("flood_connections", "0"),
            ("flood_ip_limit", "0"),
        ];
        let table = |replaced: Option<(&str, &str)>| {
            let mut text = String::from("[load]\n");
            for (key, value) in valid {
                let value = match replaced {
                    Some((bad_key, bad_value)) if bad_key == key => bad_value,
                    _ => value,
                };
                text.push_str(&format!("{key} = {value}\n"));
            }
            text
        };
        assert!(BudgetFile::parse(&table(None), &builtin()).is_ok());
        for (key, value) in invalid {
            let parsed = BudgetFile::parse(&table(Some((key, value))), &builtin());
            assert!(parsed.is_err(), "{key} = {value} was accepted");
        }
    }

    #[test]
    fn parse_rejects_unknown_field() {
        let text = "[[budget]]\nname = \"x\"\nmeasure = \"e2e.direct.rps\"\nmaximum = 1\n";
        assert!(BudgetFile::parse(text, &builtin()).is_err());
    }

    fn measures(entries: &[(&str, Measured)]) -> BTreeMap<String, Measured> {
        entries
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    }

    #[test]
    fn evaluate_checks_ratio_against_max() {
        let file = BudgetFile::parse(SAMPLE, &builtin()).unwrap();
        let within = measures(&[
            ("raw", Measured::Value(100.0, Unit::Nanoseconds)),
            ("full", Measured::Value(300.0, Unit::Nanoseconds)),
        ]);
        let outcome = &evaluate(&file.budgets[..1], &within)[0];
        assert_eq!(outcome.status, Status::Pass);
        assert_eq!(outcome.value, "3.00x");
        assert_eq!(outcome.bound, "<= 3.00x");

        let over = measures(&[
            ("raw", Measured::Value(100.0, Unit::Nanoseconds)),
            ("full", Measured::Value(301.0, Unit::Nanoseconds)),
        ]);
        assert_eq!(evaluate(&file.budgets[..1], &over)[0].status, Status::Fail);
    }

    #[test]
    fn evaluate_checks_min_and_absolute_bounds() {
        let file = BudgetFile::parse(SAMPLE, &builtin()).unwrap();
        let values = measures(&[
            ("key_bytes", Measured::Value(80.0, Unit::Bytes)),
            (
                "e2e.direct.rps",
                Measured::Value(1000.0, Unit::RequestsPerSecond),
            ),
            (
                "e2e.chain_off.rps",
                Measured::Value(700.0, Unit::RequestsPerSecond),
            ),
        ]);
        let outcomes = evaluate(&file.budgets[1..], &values);
        assert_eq!(outcomes[0].status, Status::Fail);
        assert_eq!(outcomes[0].value, "80 B");
        assert_eq!(outcomes[0].bound, "<= 64 B");
        assert_eq!(outcomes[1].status, Status::Pass);
        assert_eq!(outcomes[1].value, "0.70x");
    }

    #[test]
    fn evaluate_reports_missing_and_skipped() {
        let file = BudgetFile::parse(SAMPLE, &builtin()).unwrap();
        let values = measures(&[
            ("full", Measured::Value(300.0, Unit::Nanoseconds)),
            ("e2e.direct.rps", Measured::Skipped),
            (
                "e2e.chain_off.rps",
                Measured::Value(1.0, Unit::RequestsPerSecond),
            ),
        ]);
        let outcomes = evaluate(&file.budgets, &values);
        assert!(matches!(&outcomes[0].status, Status::Missing(why) if why.contains("`raw`")));
        assert!(matches!(outcomes[1].status, Status::Missing(_)));
        assert_eq!(outcomes[2].status, Status::Skipped);
        assert!(outcomes[0].status.fails_gate());
        assert!(!outcomes[2].status.fails_gate());
    }

    #[test]
    fn evaluate_treats_zero_base_as_missing() {
        let file = BudgetFile::parse(SAMPLE, &builtin()).unwrap();
        let values = measures(&[
            ("raw", Measured::Value(0.0, Unit::Nanoseconds)),
            ("full", Measured::Value(300.0, Unit::Nanoseconds)),
        ]);
        let outcome = &evaluate(&file.budgets[..1], &values)[0];
        assert!(matches!(outcome.status, Status::Missing(_)));
    }

    #[test]
    fn unit_formats_magnitudes() {
        assert_eq!(Unit::Nanoseconds.format(12.34), "12.3 ns");
        assert_eq!(Unit::Nanoseconds.format(1_500.0), "1.50 µs");
        assert_eq!(Unit::Microseconds.format(2_500.0), "2.50 ms");
        assert_eq!(Unit::RequestsPerSecond.format(1234.6), "1235 req/s");
        assert_eq!(Unit::Ratio.format(0.9), "0.90x");
    }
}
