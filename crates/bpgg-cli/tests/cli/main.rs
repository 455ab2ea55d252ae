//! End-to-end tests of the `bpgg` binary on data the tests make themselves.

// Unix only: non-UTF-8 file names (and, for the CLI, SIGKILL).
#[cfg(unix)]
mod bad_input;
mod data;
mod pipeline;
mod predict_batches;
mod report;
mod score;
mod train;
mod util;
mod weights;
