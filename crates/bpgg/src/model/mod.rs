//! The whole few-shot pipeline as one object: encode supports once ([`fit`]), keep what scoring
//! needs in a [`FittedModel`] (a file on disk), and turn new images into anomaly maps.

mod config;
mod encoder;
mod file;
mod fit;
mod fitted;
pub mod head;
mod image_score;
mod prediction;
mod resolution;
pub mod tiling;

pub use config::{validate_image_size, ModelConfig, Scoring};
pub use encoder::Encoder;
pub use file::{MODEL_FORMAT, MODEL_VERSION};
pub(crate) use fit::stack_supports;
pub(crate) use fit::{encode_flipped, flipped_stacks};
pub use fit::{fit, fit_features, EncodedSupports, SupportSet};
pub use fitted::{FittedModel, ScoredMaps, ThresholdRule};
pub use head::{load_head, HeadConfig, ProjectionHead, DEFAULT_HEAD_HIDDEN, HEAD_TENSORS};
pub use image_score::{image_score, image_scores, image_threshold, top_mean, ImageScoreConfig};
pub use prediction::{Prediction, Region, Thresholds};
pub use resolution::{
    InputSize, TileConfig, DEFAULT_IMAGE_SIZE, DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE,
    INPUT_MULTIPLE, MAX_UNTILED_PIXELS,
};
pub use tiling::{PreparedImage, Stitcher, TileLayout};
