//! End-to-end tests of the `bpgg` binary on data the tests make themselves.

mod data;
mod pipeline;
mod predict_batches;
mod report;
mod score;
mod util;
mod weights;
