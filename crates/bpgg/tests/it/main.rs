//! All integration tests of the `bpgg` crate share this one test binary.

mod effnet;
