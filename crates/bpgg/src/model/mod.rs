//! The whole few-shot pipeline as one object: encode supports once ([`fit`]), keep what scoring
//! needs in a [`FittedModel`] (a file on disk), and turn new images into anomaly maps.

mod config;
mod encoder;
mod file;
mod fit;
mod fitted;
pub mod head;
mod prediction;

pub use config::{validate_image_size, ModelConfig, Scoring, DEFAULT_IMAGE_SIZE};
pub use encoder::Encoder;
pub use file::{MODEL_FORMAT, MODEL_VERSION};
pub use fit::{fit, fit_features, SupportSet};
pub use fitted::{FittedModel, ThresholdRule};
pub use head::{load_head, HeadConfig, ProjectionHead, DEFAULT_HEAD_HIDDEN, HEAD_TENSORS};
pub use prediction::{image_score, Prediction, PreparedImage, Region};
