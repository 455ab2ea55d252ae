//! The few-shot evaluation protocol: episodes per defect type and seed, every image encoded
//! once, metrics per type with mean and standard deviation over seeds.

mod protocol;
mod stats;
mod summary;
mod table;

pub use protocol::{
    evaluate_category, CompareAt, EpisodeMaps, EpisodeResult, EvalConfig, EvalEvent, EvalReport,
    SkippedImage,
};
pub use stats::{MeanStd, MetricStats};
pub use summary::{summarize, MetricValues, ScoredImage, Summary};
