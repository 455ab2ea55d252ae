//! The one integration-test binary of the `bpgg` crate; each module tests one area.

mod architecture;
// Unix only: non-UTF-8 file names (and, for the CLI, SIGKILL).
#[cfg(unix)]
mod bad_input;
mod effnet;
mod model;
mod torchvision;
mod train;
mod weights;
