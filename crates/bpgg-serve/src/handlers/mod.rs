//! The handlers: each parses its request, calls the store, the engine or the library, and
//! answers; errors become answers in one place ([`crate::error`]).

pub mod fit;
pub mod images;
pub mod predict;
pub mod projects;
pub mod system;
