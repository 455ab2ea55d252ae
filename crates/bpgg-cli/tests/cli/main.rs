//! End-to-end tests of the `bpgg` binary on data the tests make themselves.

mod bad_input;
mod data;
mod device;
mod pipeline;
mod predict_batches;
mod report;
mod score;
// Unix only: signals through `kill`.
#[cfg(unix)]
mod serve;
mod train;
mod util;
mod weights;
