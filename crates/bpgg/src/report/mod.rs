//! Reports: heat-map panels, curves and the HTML page. A report only renders what `eval`
//! (metrics, summaries, episode maps) and `model` (maps) produced.

pub mod curves;
pub mod heatmap;
pub mod html;
pub mod panel;

pub use html::{ReportConfig, ReportWriter, RunInfo};
pub use panel::panel;
