//! The `shadowcat` command: see `shadowcat --help`.

use std::process::ExitCode;

use clap::Parser;
use shadowcat_proxy::cli::{Cli, Command, ConfigCommand};
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
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
