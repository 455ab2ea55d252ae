//! End-to-end tests of the `bpgg` binary on data the tests make themselves.

mod bad_input;
mod data;
mod pipeline;
mod report;
mod score;
mod util;
mod weights;
