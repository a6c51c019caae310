//! The `shadowcat` command: see `shadowcat --help`.

use std::process::ExitCode;

use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;

use shadowcat_proxy::cli::{AuditCommand, Cli, Command, ConfigCommand};
use shadowcat_proxy::config::{Config, LogConfig, LogFormat};
use shadowcat_proxy::server::Proxy;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(ConfigCommand::Check { file }) => {
            match Config::load(&file).and_then(|config| config.validate().map(|()| config)) {
                Ok(_) => {
                    println!("{}: OK", file.display());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("{error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Audit(AuditCommand::Verify {
            files,
            public_key,
            prefix,
        }) => verify_audit(&files, public_key.as_deref(), &prefix),
        Command::Reverse(args) => {
            let config = match args
                .effective_config()
                .and_then(|config| config.validate().map(|()| config))
            {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("shadowcat: {error}");
                    return ExitCode::FAILURE;
                }
            };
            init_logging(&config.log);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("the tokio runtime starts");
            runtime.block_on(reverse(config))
        }
    }
}

/// Checks audit files and prints `OK` with the record count, or the first broken
/// record with its file, line and reason.
fn verify_audit(
    inputs: &[PathBuf],
    public_key: Option<&std::path::Path>,
    prefix: &str,
) -> ExitCode {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            match shadowcat_audit::log_files(input, prefix) {
                Ok(found) => files.extend(found),
                Err(error) => {
                    eprintln!("could not list {}: {error}", input.display());
                    return ExitCode::FAILURE;
                }
            }
        } else {
            files.push(input.clone());
        }
    }
    let key = match public_key
        .map(shadowcat_audit::load_verifying_key)
        .transpose()
    {
        Ok(key) => key,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    match shadowcat_audit::verify(&files, key.as_ref()) {
        Ok(report) => {
            println!(
                "OK: {} records in {} files, checkpoints verified: {}, last hash {}",
                report.records,
                report.files,
                report.checkpoints,
                report.last_hash.as_deref().unwrap_or("-")
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            println!("BROKEN: {failure}");
            ExitCode::FAILURE
        }
    }
}

async fn reverse(config: Config) -> ExitCode {
    let proxy = match Proxy::bind(&config).await {
        Ok(proxy) => proxy,
        Err(error) => {
            tracing::error!(%error, "could not start");
            return ExitCode::FAILURE;
        }
    };
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    proxy.run(stop).await;
    ExitCode::SUCCESS
}

/// Cancels `stop` on SIGINT or SIGTERM.
async fn stop_on_signal(stop: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("the SIGTERM handler installs");
        tokio::select! {
            _ = interrupt => tracing::info!(signal = "SIGINT", "stop requested"),
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "stop requested"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    stop.cancel();
}

fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
