//! One file per command; `run` dispatches.

pub mod bench;
mod data;
mod score;
pub mod weights;

use std::process::ExitCode;

use crate::args::{Cli, Command, DataCommand};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Score(args) => score::run(args, cli.quiet),
        Command::Data(DataCommand::Inspect(args)) => data::inspect(args, cli.quiet),
        Command::Data(DataCommand::Synth(args)) => data::synth(args),
        Command::Weights(command) => weights::run(command),
        Command::Bench(command) => bench::run(command),
    }
}
