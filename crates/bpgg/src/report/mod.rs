//! Reports: metric summaries per defect type, heat-map panels, curves and the HTML page.

pub mod curves;
pub mod heatmap;
pub mod html;
pub mod panel;
pub mod summary;

pub use html::{ReportConfig, ReportWriter, RunInfo};
pub use panel::panel;
pub use summary::{summarize, MetricValues, ScoredImage, Summary};
