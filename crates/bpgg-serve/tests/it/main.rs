//! Integration tests of the service: a real server on an ephemeral loopback port, driven over
//! HTTP (the crate's own small client), on data the tests make themselves.

mod api;
mod bad_input;
mod concurrency;
mod studio;
mod util;
