//! End-to-end tests of the `bpgg` binary on data the tests make themselves.

mod data;
mod pipeline;
mod report;
mod score;
mod train;
mod util;
mod weights;
