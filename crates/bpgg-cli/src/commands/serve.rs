//! `bpgg serve`: the HTTP service (crate `bpgg-serve`) with the command line's settings.

use std::io::Write;
use std::process::ExitCode;

use crate::args::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.to_config()?;
    let data_dir = config.data_dir.clone();
    // Whoever started the server may have stopped reading its output: a failed write to
    // stdout must not turn a clean stop into a panic.
    let say = |line: String| {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    let outcome = bpgg_serve::serve_until_signal(config, |addr| {
        say(format!(
            "bpgg serve: listening on http://{addr} (data dir {}); SIGTERM or Ctrl-C stops it",
            data_dir.display()
        ));
    });
    match outcome {
        Ok(()) => {
            say("bpgg serve: stopped".into());
            Ok(ExitCode::SUCCESS)
        }
        // Settings that must not start a server at all: the usage-error status, as clap's.
        Err(e @ (bpgg_serve::Error::InsecureBind(_) | bpgg_serve::Error::Config(_))) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}
