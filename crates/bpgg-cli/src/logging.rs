//! Logs through `tracing` to stderr: warnings by default, what is loaded with `-v`, timings
//! with `-vv`. Results go to stdout, never through the log.

use tracing::Level;

/// Installs the stderr subscriber for `verbose` repetitions of `-v`.
pub fn init(verbose: u8) {
    let level = match verbose {
        0 => Level::WARN,
        1 => Level::INFO,
        _ => Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .init();
}

/// The command line as typed (for reports), arguments with spaces quoted.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.contains(char::is_whitespace) || a.is_empty() {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
