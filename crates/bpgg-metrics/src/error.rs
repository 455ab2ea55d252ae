//! The one error type of the metrics crate.

/// Errors of the metrics crate: every metric validates its inputs once and reports what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Inputs that must have equal lengths do not (e.g. scores vs labels, map vs `width * height`).
    #[error("length mismatch: {what}")]
    LengthMismatch { what: String },

    /// The metric needs both classes but only one is present (e.g. AUROC with no normal pixel).
    #[error("only one class present: {what}")]
    SingleClass { what: String },

    /// A score is NaN; NaN has no place in a ranking, so the metric is undefined.
    #[error("score at index {index} is NaN")]
    NanScore {
        /// Position of the first NaN in the (pooled) score order given by the caller.
        index: usize,
    },

    /// No scores, labels or maps were given.
    #[error("empty input: {what}")]
    EmptyInput { what: String },

    /// A map's declared shape is impossible (zero width or height, or `width * height` overflows).
    #[error("bad map shape: {what}")]
    BadShape { what: String },

    /// The FPR integration limit of AUPRO is not a finite number in `(0, 1]`.
    #[error("FPR limit {limit} is not in (0, 1]")]
    BadFprLimit { limit: f64 },

    /// More ground-truth regions than a `u32` region id can number.
    #[error("too many ground-truth regions ({count}) for u32 region ids")]
    TooManyRegions { count: u64 },
}

/// Result alias of the metrics crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
