//! The one integration-test binary of the `bpgg` crate; each module tests one area.

mod bad_input;
mod effnet;
mod model;
mod torchvision;
mod weights;
