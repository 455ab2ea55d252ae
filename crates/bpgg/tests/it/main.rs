//! The one integration-test binary of the `bpgg` crate; each module tests one area.

mod architecture;
mod bad_input;
mod device;
mod effnet;
mod model;
mod pickles;
mod torchvision;
mod train;
mod weights;
