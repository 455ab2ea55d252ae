//! Data (placeholder).
