//! `bpgg`: few-shot anomaly localization from the command line.

mod args;
mod commands;
mod logging;
mod malloc_tuning;
mod model_args;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    malloc_tuning::keep_freed_buffers();
    let cli = args::Cli::parse();
    logging::init(cli.verbose);
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
