//! `bpgg`: few-shot anomaly localization from the command line.

mod args;
mod commands;
mod device_args;
mod hints;
mod logging;
mod malloc_tuning;
mod model_args;
mod progress;
mod results_log;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    malloc_tuning::keep_freed_buffers();
    let cli = args::Cli::parse();
    logging::init(cli.verbose);
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", hints::with_hint(&one_line(&err), &err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, like `{err:#}`, but without repeating a cause that the
/// message before it already quotes (library errors name their file *and* keep their source).
fn one_line(err: &anyhow::Error) -> String {
    let mut text = err.to_string().trim_end().to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        let cause = cause.trim_end();
        if !text.contains(cause) {
            text.push_str(": ");
            text.push_str(cause);
        }
    }
    text.replace('\n', " ")
}
