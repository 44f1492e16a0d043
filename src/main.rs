use std::process::ExitCode;

use clap::Parser;

mod cli;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    match cli::run(cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes joined. candle appends a backtrace to its
            // errors when RUST_BACKTRACE is set; that stays available at debug level.
            let full = format!("{e:#}");
            tracing::debug!("full error: {full}");
            eprintln!("error: {}", full.lines().next().unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}
