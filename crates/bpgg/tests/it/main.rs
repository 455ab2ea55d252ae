//! The one integration-test binary of the `bpgg` crate; each module tests one area.

mod effnet;
mod model;
mod torchvision;
mod train;
mod weights;
