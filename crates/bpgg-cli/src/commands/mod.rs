//! One file per command; `run` dispatches.

pub mod bench;
mod data;
mod demo;
mod eval;
mod fit;
mod predict;
mod score;
mod serve;
mod train;
pub mod weights;

use std::process::ExitCode;

use crate::args::{Cli, Command, DataCommand};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Score(args) => score::run(args, cli.quiet),
        Command::Data(DataCommand::Inspect(args)) => data::inspect(args, cli.quiet),
        Command::Data(DataCommand::Synth(args)) => data::synth(args),
        Command::Fit(args) => fit::run(args),
        Command::Predict(args) => predict::run(args, cli.quiet),
        Command::Eval(args) => eval::run(args, cli.quiet),
        Command::Demo(args) => demo::run(args, cli.quiet),
        Command::Train(args) => train::run(args, cli.quiet),
        Command::Weights(command) => weights::run(command),
        Command::Bench(command) => bench::run(command),
        Command::Serve(args) => serve::run(args),
    }
}
