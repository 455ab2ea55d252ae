//! Shared test support: the deterministic case generator and the committed golden values.

pub mod cases;
pub mod golden_values;
