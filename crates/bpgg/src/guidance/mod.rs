//! Guidance: prototypes to anomaly maps (placeholder).
