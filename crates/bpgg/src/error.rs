//! The one error type of the `bpgg` library.
//!
//! Every error that concerns a file carries that file's path, so a message such as
//! `ground_truth/crack/003_mask.png: mask is 320x200 but its image is 256x256` tells the
//! user what to fix without a debugger.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `bpgg`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An image file could not be decoded (corrupt, truncated, unsupported format).
    /// (Some decoders end their messages with a newline: trimmed to keep errors on one line.)
    #[error("{}: cannot decode image: {}", path.display(), source.to_string().trim_end())]
    ImageDecode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    /// A data set, image, mask or prediction file is well-formed but unusable
    /// (a mask of the wrong size, a defect image without a mask, an empty category, ...).
    #[error("{}: {problem}", path.display())]
    InvalidData { path: PathBuf, problem: String },

    /// A weight file or checkpoint is malformed, truncated or asks for something a state dict
    /// never needs (hostile pickles are refused here, never executed).
    #[error("{}: invalid weight file: {problem}", path.display())]
    InvalidWeights { path: PathBuf, problem: String },

    /// A configuration value is out of range or inconsistent (caught once, at the boundary).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A metric could not be computed (for example no defect pixel in the ground truth).
    #[error(transparent)]
    Metrics(#[from] bpgg_metrics::Error),

    /// A device cannot be had: a GPU asked for in a build without CUDA support, or one that does
    /// not answer.
    #[error("{0}")]
    Device(String),

    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),

    /// A JSON document could not be read or written.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A state dict lacks a tensor that a network needs, or holds it with another shape.
    /// `key` is the tensor's name relative to the network (`layer1.0.conv1.weight`).
    #[error("weight tensor `{key}`: {problem}")]
    WeightTensor { key: String, problem: String },

    /// Tensors handed to a pipeline stage do not fit together (batch, channels or grid sizes
    /// differ where they must agree); the message names the function and both shapes. The one
    /// variant for shape problems of our own checks (candle's own land in [`Error::Tensor`]).
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),

    /// An image declares more pixels than the decoding limit (a decompression bomb, or a genuine
    /// image larger than the limit allows).
    #[error(
        "{}: image declares {width}x{height} = {} pixels, more than the limit of {limit}",
        path.display(),
        u64::from(*width) * u64::from(*height)
    )]
    ImageTooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        limit: u64,
    },

    /// The supports cannot give the requested scoring: `bpgg` and `hybrid` need defect images
    /// with masks, `knn` and `hybrid` need normal pixels (a normal image, or defect images whose
    /// masks leave some background).
    #[error("scoring `{scoring}` needs {needs}")]
    MissingSupports {
        scoring: crate::model::Scoring,
        needs: String,
        /// Whether defect images (rather than normal images) are what is missing.
        defects: bool,
    },

    /// A model, or a training run, is in a state that cannot do what was asked: a model file
    /// without the part its scoring needs, a training loss that is no longer finite.
    #[error("{0}")]
    State(String),

    /// A training run folder does not fit the request: `--resume`-style continuation of a folder
    /// without a checkpoint, or a new run into a folder that already holds one.
    #[error("{}: {}", path.display(), if *exists {
        "already holds a training run"
    } else {
        "nothing to resume (no checkpoint)"
    })]
    TrainingRun {
        path: PathBuf,
        /// Whether the folder already holds a run (`true`) or holds none (`false`).
        exists: bool,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A data problem with the file it concerns.
    pub fn invalid_data(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::InvalidData {
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// A weight-file problem with the file it concerns.
    pub fn invalid_weights(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::InvalidWeights {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// Something the library left out or worked around instead of failing (an empty `good`
/// folder, a defect support whose mask has no defect pixel), for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The file or folder concerned.
    pub path: PathBuf,
    /// What was done, in words.
    pub message: String,
}

impl Warning {
    /// A warning about `path`.
    pub fn new(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}
