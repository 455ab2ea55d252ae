//! Episodic meta-training (`docs/ARCHITECTURE.md`, "The method"): a projection head on the frozen features is
//! trained on base defect types with the bidirectional loss, so that support and query align in
//! one metric space; fit/predict/eval then use the trained head.

mod checkpoint;
mod config;
mod data;
mod loss;
mod optim;
mod trainer;

pub use checkpoint::{load_checkpoint, save_checkpoint, Checkpoint, HistoryEntry, TrainState};
pub use config::{TrainConfig, WARMUP_FRACTION};
pub use data::{
    DefectPool, EncodedImage, EpisodeDraw, EpisodeShape, Flip, TrainSet, TrainSource,
    HOLDOUT_FRACTION,
};
pub use loss::{binary_cross_entropy, episode_loss, EpisodeTensors, LossConfig, LossParts};
pub use optim::{Optimizer, OptimizerKind};
pub use trainer::{
    episode_tensors, train, TrainEvent, TrainOutcome, BEST_CHECKPOINT, CONFIG_FILE, HISTORY_FILE,
    LAST_CHECKPOINT,
};
