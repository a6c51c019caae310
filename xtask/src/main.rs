//! Developer tasks for the Shadowcat workspace: `cargo xtask <TASK>`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        None | Some("help" | "--help" | "-h") => {
            print_help();
            ExitCode::SUCCESS
        }
        Some("bench") => {
            eprintln!(
                "cargo xtask bench is not implemented yet: it will run the criterion benches \
                 and the end-to-end load comparison and gate them on bench-budgets.toml"
            );
            ExitCode::FAILURE
        }
        Some(other) => {
            eprintln!("unknown task `{other}`");
            print_help();
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!("Usage: cargo xtask <TASK>\n");
    println!("Tasks:");
    println!(
        "  bench    run benchmarks and check them against bench-budgets.toml (not implemented yet)"
    );
}
