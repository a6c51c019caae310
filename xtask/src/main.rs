//! Developer tasks for the Shadowcat workspace: `cargo xtask <TASK>`.

mod bench;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Developer tasks for the Shadowcat workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Option<Task>,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run the micro benches and the end-to-end load, and check them against
    /// bench-budgets.toml.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.task {
        None => {
            // With no task, list the tasks and succeed, as `cargo xtask` always has.
            let _ = Cli::command().print_help();
            ExitCode::SUCCESS
        }
        Some(Task::Bench(args)) => match bench::run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_flags_parse() {
        let cli = Cli::try_parse_from([
            "cargo xtask",
            "bench",
            "--quick",
            "--no-gate",
            "--duration",
            "2",
        ])
        .unwrap();
        let Some(Task::Bench(args)) = cli.task else {
            panic!("expected the bench task");
        };
        assert!(args.quick);
        assert!(args.no_gate);
        assert_eq!(args.duration, Some(2.0));
    }

    #[test]
    fn bench_rejects_invalid_load_shape() {
        for bad in [
            ["--duration", "0"],
            ["--duration", "-1"],
            ["--duration", "inf"],
            ["--duration", "NaN"],
            ["--concurrency", "0"],
        ] {
            let parsed = Cli::try_parse_from(["cargo xtask", "bench", bad[0], bad[1]]);
            assert!(parsed.is_err(), "{bad:?} was accepted");
        }
    }
}
