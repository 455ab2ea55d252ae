//! Normal-only baselines (placeholder).
