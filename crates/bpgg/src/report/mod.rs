//! Reports: metric summaries per defect type (and, later, heatmaps and HTML).

pub mod heatmap;
pub mod summary;

pub use summary::{summarize, MetricValues, ScoredImage, Summary};
