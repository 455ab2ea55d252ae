//! The integration tests of `bpgg`, one binary (one module per topic).

mod torchvision;
