//! Anomaly-localization metrics on plain `f32` slices (placeholder, filled in by the metrics work).

/// Errors of the metrics crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Inputs of different lengths.
    #[error("length mismatch: {what}")]
    LengthMismatch { what: String },
}
