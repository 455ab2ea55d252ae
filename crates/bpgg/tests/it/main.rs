//! The one integration-test binary of the `bpgg` crate; each module tests one area.

mod architecture;
mod bad_input;
mod device;
mod effnet;
mod formats;
mod model;
mod pickles;
mod resolution;
mod torchvision;
mod train;
mod weights;
