//! The results table printed to the terminal and the Markdown report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::budget::{Measured, Outcome, Status};
use super::criterion::BenchFailure;
use super::e2e::{E2eResults, FloodOutcome, FloodRuns, RunKind, RunOutcome};
use super::stats::{REPORTED_PERCENTILES, RunStats};

/// One row of the results table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    /// Name of the budget or measure.
    pub(crate) measure: String,
    /// The value, formatted with its unit.
    pub(crate) value: String,
    /// The bound, or `-` for a measure without a budget.
    pub(crate) budget: String,
    /// `pass`, `FAIL`, `missing`, `skipped`, or `info` for a measure without a budget.
    pub(crate) status: String,
}

/// Builds the table: budget rows first, then every measure of the run for reference.
pub(crate) fn table_rows(outcomes: &[Outcome], measures: &BTreeMap<String, Measured>) -> Vec<Row> {
    let mut rows: Vec<Row> = outcomes
        .iter()
        .map(|outcome| Row {
            measure: outcome.name.clone(),
            value: outcome.value.clone(),
            budget: outcome.bound.clone(),
            status: outcome.status.to_string(),
        })
        .collect();
    for (name, measured) in measures {
        let (value, status) = match measured {
            Measured::Value(value, unit) => (unit.format(*value), "info"),
            Measured::Missing(_) => ("-".to_owned(), "missing"),
            Measured::Skipped => ("-".to_owned(), "skipped"),
        };
        rows.push(Row {
            measure: name.clone(),
            value,
            budget: "-".to_owned(),
            status: status.to_owned(),
        });
    }
    rows
}

/// One reason why rows are missing, with the rows it affects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MissingGroup {
    /// Reason the rows are missing. It may span lines, such as a child's log tail.
    pub(crate) reason: String,
    /// Budget names and measure names that are missing for this reason.
    pub(crate) rows: Vec<String>,
}

/// Groups every missing budget and measure by reason, in order of first appearance, so
/// one unavailable run is explained once instead of once per row.
pub(crate) fn missing_groups(
    outcomes: &[Outcome],
    measures: &BTreeMap<String, Measured>,
) -> Vec<MissingGroup> {
    let budgets = outcomes.iter().filter_map(|outcome| match &outcome.status {
        Status::Missing(why) => Some((outcome.name.as_str(), why.as_str())),
        _ => None,
    });
    let values = measures
        .iter()
        .filter_map(|(name, measured)| match measured {
            Measured::Missing(why) => Some((name.as_str(), why.as_str())),
            _ => None,
        });

    let mut groups: Vec<MissingGroup> = Vec::new();
    for (row, reason) in budgets.chain(values) {
        match groups.iter_mut().find(|group| group.reason == reason) {
            Some(group) => group.rows.push(row.to_owned()),
            None => groups.push(MissingGroup {
                reason: reason.to_owned(),
                rows: vec![row.to_owned()],
            }),
        }
    }
    groups
}

/// Renders rows as a plain-text table with aligned columns.
pub(crate) fn render_text_table(rows: &[Row]) -> String {
    let header = ["measure", "value", "budget", "result"];
    let cells = |row: &Row| {
        [
            row.measure.clone(),
            row.value.clone(),
            row.budget.clone(),
            row.status.clone(),
        ]
    };
    let mut widths = header.map(|title| title.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(cells(row)) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |values: [String; 4]| {
        let padded: Vec<String> = values
            .iter()
            .zip(widths)
            .map(|(value, width)| format!("{value}{}", " ".repeat(width - value.chars().count())))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut text = line(header.map(str::to_owned));
    text.push('\n');
    text.push_str(&line(widths.map(|width| "-".repeat(width))));
    text.push('\n');
    for row in rows {
        text.push_str(&line(cells(row)));
        text.push('\n');
    }
    text
}

/// Renders rows as a Markdown table.
pub(crate) fn render_markdown_table(rows: &[Row]) -> String {
    let mut text = String::from("| measure | value | budget | result |\n|---|---:|---|---|\n");
    for row in rows {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} |",
            escape_cell(&row.measure),
            escape_cell(&row.value),
            escape_cell(&row.budget),
            row.status
        );
    }
    text
}

fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Everything the Markdown report shows.
#[derive(Debug, Clone)]
pub(crate) struct Report<'a> {
    /// The command line that produced the report.
    pub(crate) command: String,
    /// Logical CPUs and CPU model.
    pub(crate) machine: String,
    /// Whether this was a `--quick` run.
    pub(crate) quick: bool,
    /// Table rows.
    pub(crate) rows: &'a [Row],
    /// Reasons for missing rows.
    pub(crate) missing: &'a [MissingGroup],
    /// Bench targets that failed.
    pub(crate) bench_failures: &'a [BenchFailure],
    /// End-to-end results, when that part ran.
    pub(crate) e2e: Option<&'a E2eResults>,
    /// File name of the latency plot beside the report, when one was written.
    pub(crate) plot_file: Option<&'a str>,
    /// One-line descriptions of measures, by name, from the budget file.
    pub(crate) descriptions: &'a BTreeMap<String, String>,
}

/// Renders the Markdown report.
pub(crate) fn render_markdown(report: &Report<'_>) -> String {
    let mut text = String::from("# Shadowcat benchmark report\n\n");
    let _ = writeln!(text, "- command: `{}`", report.command);
    let _ = writeln!(text, "- machine: {}", report.machine);
    if report.quick {
        text.push_str(
            "- quick run: short criterion times and short load runs, for a smoke check only\n",
        );
    }
    text.push_str("\n## Results\n\n");
    text.push_str(&render_markdown_table(report.rows));

    if !report.missing.is_empty() || !report.bench_failures.is_empty() {
        text.push_str("\n## Missing\n\n");
        for failure in report.bench_failures {
            let _ = writeln!(
                text,
                "- bench `{}` of `{}`: {}",
                failure.target.bench, failure.target.package, failure.reason
            );
        }
        for group in report.missing {
            let (first, rest) = group
                .reason
                .split_once('\n')
                .unwrap_or((group.reason.as_str(), ""));
            let _ = writeln!(text, "- {first}\n  (rows: {})", group.rows.join(", "));
            if !rest.trim().is_empty() {
                let _ = writeln!(text, "\n  ```text");
                for line in rest.lines() {
                    let _ = writeln!(text, "  {line}");
                }
                let _ = writeln!(text, "  ```");
            }
        }
    }

    if !report.descriptions.is_empty() {
        text.push_str("\n## Measures\n\n");
        for (name, description) in report.descriptions {
            let _ = writeln!(text, "- `{name}`: {description}");
        }
    }

    if let Some(e2e) = report.e2e {
        text.push_str("\n## End-to-end load\n\n");
        text.push_str(&render_e2e(e2e));
        if let Some(plot) = report.plot_file {
            let _ = writeln!(text, "\n![latency percentiles]({plot})");
        }
    }
    text
}

/// Renders the per-run latency table, the ratios between runs and the flood result.
pub(crate) fn render_e2e(results: &E2eResults) -> String {
    let mut text =
        String::from("| run | req/s | p50 | p90 | p99 | p99.9 | non-2xx | transport errors |\n");
    text.push_str("|---|---:|---:|---:|---:|---:|---|---:|\n");
    let mut done: BTreeMap<RunKind, &RunStats> = BTreeMap::new();
    for (kind, outcome) in &results.runs {
        match outcome {
            RunOutcome::Done(stats) => {
                done.insert(*kind, stats);
                let _ = writeln!(text, "{}", stats_row(kind.name(), stats));
            }
            RunOutcome::Unavailable(why) => {
                let _ = writeln!(
                    text,
                    "| {} | unavailable: {} | | | | | | |",
                    kind.name(),
                    escape_cell(&why.replace('\n', " "))
                );
            }
        }
    }

    let pairs = [
        (RunKind::ChainOff, RunKind::Direct),
        (RunKind::FullChain, RunKind::Direct),
        (RunKind::FullChain, RunKind::ChainOff),
    ];
    let mut ratios = String::new();
    for (run, base) in pairs {
        let (Some(run_stats), Some(base_stats)) = (done.get(&run), done.get(&base)) else {
            continue;
        };
        let throughput = run_stats.requests_per_second() / base_stats.requests_per_second();
        let p99 = match (
            run_stats.percentile_us(99.0),
            base_stats.percentile_us(99.0),
        ) {
            (Some(run_p99), Some(base_p99)) if base_p99 > 0.0 => {
                format!("{:.2}x", run_p99 / base_p99)
            }
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            ratios,
            "| {} / {} | {throughput:.2}x | {p99} |",
            run.name(),
            base.name()
        );
    }
    if !ratios.is_empty() {
        text.push_str("\n| ratio | req/s | p99 |\n|---|---:|---:|\n");
        text.push_str(&ratios);
    }

    match &results.flood {
        Some(FloodOutcome::Done(runs)) => {
            let FloodRuns {
                unloaded,
                loaded,
                flooder,
            } = runs.as_ref();
            text.push_str("\nFlood test: a steady client (127.0.0.1) alone, then while a second address (127.0.0.2) floods the proxy.\n\n");
            text.push_str(
                "| client | req/s | p50 | p90 | p99 | p99.9 | non-2xx | transport errors |\n",
            );
            text.push_str("|---|---:|---:|---:|---:|---:|---|---:|\n");
            let _ = writeln!(text, "{}", stats_row("steady, unloaded", unloaded));
            let _ = writeln!(text, "{}", stats_row("steady, during flood", loaded));
            let _ = writeln!(text, "{}", stats_row("flooder", flooder));
        }
        Some(FloodOutcome::Unavailable(why)) => {
            let _ = writeln!(text, "\nFlood test unavailable: {}", why.replace('\n', " "));
        }
        None => {}
    }
    text
}

fn stats_row(name: &str, stats: &RunStats) -> String {
    let mut row = format!("| {name} | {:.0} |", stats.requests_per_second());
    for p in REPORTED_PERCENTILES {
        match stats.percentile_us(p) {
            Some(us) => {
                let _ = write!(row, " {} |", super::budget::Unit::Microseconds.format(us));
            }
            None => row.push_str(" - |"),
        }
    }
    let _ = write!(
        row,
        " {} | {} |",
        stats.error_summary(),
        stats.transport_errors
    );
    row
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bench::budget::Unit;

    fn outcomes() -> Vec<Outcome> {
        vec![
            Outcome {
                name: "full check vs raw".into(),
                value: "2.10x".into(),
                bound: "<= 3.00x".into(),
                status: Status::Pass,
            },
            Outcome {
                name: "bytes per key".into(),
                value: "-".into(),
                bound: "<= 64 B".into(),
                status: Status::Missing("no metric file `limiter.json` in this run".into()),
            },
        ]
    }

    fn measures() -> BTreeMap<String, Measured> {
        BTreeMap::from([
            (
                "e2e.direct.rps".to_owned(),
                Measured::Value(1234.0, Unit::RequestsPerSecond),
            ),
            ("flood.loaded_p99_us".to_owned(), Measured::Skipped),
        ])
    }

    #[test]
    fn rows_list_budgets_then_measures() {
        let rows = table_rows(&outcomes(), &measures());
        let statuses: Vec<&str> = rows.iter().map(|row| row.status.as_str()).collect();
        assert_eq!(statuses, ["pass", "missing", "info", "skipped"]);
        assert_eq!(rows[2].value, "1234 req/s");
        assert_eq!(rows[2].budget, "-");
    }

    #[test]
    fn text_table_aligns_columns() {
        let rows = table_rows(&outcomes(), &measures());
        let text = render_text_table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + rows.len());
        let value_column = lines[0].find("value").unwrap();
        assert_eq!(lines[2].find("2.10x"), Some(value_column));
        assert!(lines[3].ends_with("missing"));
    }

    #[test]
    fn missing_groups_share_one_reason() {
        let mut measures = measures();
        let why = "no metric file `limiter.json` in this run";
        measures.insert(
            "limiter_bytes_per_key".into(),
            Measured::Missing(why.into()),
        );
        measures.insert("other".into(), Measured::Missing("run failed".into()));
        let groups = missing_groups(&outcomes(), &measures);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].reason, why);
        assert_eq!(groups[0].rows, ["bytes per key", "limiter_bytes_per_key"]);
        assert_eq!(groups[1].rows, ["other"]);
    }

    #[test]
    fn markdown_shows_log_tail_as_code() {
        let missing = [MissingGroup {
            reason: "proxy did not start; log:\nerror: bad key".into(),
            rows: vec!["e2e.full_chain.rps".into()],
        }];
        let text = render_markdown(&Report {
            command: "cargo xtask bench".into(),
            machine: "2 logical CPUs".into(),
            quick: false,
            rows: &[],
            missing: &missing,
            bench_failures: &[],
            e2e: None,
            plot_file: None,
            descriptions: &BTreeMap::from([("x".to_owned(), "what x is".to_owned())]),
        });
        assert!(text.contains("- `x`: what x is"), "{text}");
        assert!(
            text.contains("- proxy did not start; log:\n  (rows: e2e.full_chain.rps)"),
            "{text}"
        );
        assert!(
            text.contains("  ```text\n  error: bad key\n  ```"),
            "{text}"
        );
    }

    #[test]
    fn markdown_escapes_pipes() {
        let rows = vec![Row {
            measure: "a|b".into(),
            value: "1".into(),
            budget: "-".into(),
            status: "info".into(),
        }];
        assert!(render_markdown_table(&rows).contains("| a\\|b | 1 | - | info |"));
    }

    #[test]
    fn e2e_section_shows_ratios_and_unavailable_runs() {
        let stats = |rps: u64, latency_us: u64| {
            RunStats::new(
                rps,
                BTreeMap::new(),
                0,
                Duration::from_secs(1),
                vec![latency_us * 1_000; 10],
            )
        };
        let results = E2eResults {
            runs: vec![
                (RunKind::Direct, RunOutcome::Done(stats(1000, 100))),
                (RunKind::ChainOff, RunOutcome::Done(stats(800, 150))),
                (
                    RunKind::FullChain,
                    RunOutcome::Unavailable("bad config".into()),
                ),
            ],
            flood: Some(FloodOutcome::Unavailable("no 429".into())),
        };
        let text = render_e2e(&results);
        assert!(
            text.contains("| chain_off / direct | 0.80x | 1.50x |"),
            "{text}"
        );
        assert!(!text.contains("full_chain / direct"));
        assert!(text.contains("| full_chain | unavailable: bad config |"));
        assert!(text.contains("Flood test unavailable: no 429"));
        assert!(text.contains("| direct | 1000 | 100.00 µs |"), "{text}");
    }
}
