//! `bpgg`: few-shot anomaly localization from the command line.

mod args;
mod commands;
mod logging;
mod model_args;
mod progress;
mod results_log;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
