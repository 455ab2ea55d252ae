//! The native module `bpgg._bpgg` behind the Python package `bpgg`: conversions between numpy
//! and the library's types, and errors as Python exceptions. All the work is the library's
//! (`bpgg::model::fit`, `FittedModel::predict_images`, `bpgg_metrics::evaluate`), so results
//! equal the CLI's by construction.

mod config;
mod convert;
mod error;
mod files;
mod metrics;
mod model;

use pyo3::prelude::*;

/// The library's default model configuration, as a dict (the keyword arguments of
/// `Model.fit` and their defaults).
#[pyfunction]
fn default_config(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    config::config_to_py(py, &bpgg::model::ModelConfig::default())
}

#[pymodule]
fn _bpgg(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MODEL_FORMAT_VERSION", bpgg::model::MODEL_VERSION)?;
    m.add("DEFAULT_FPR_LIMIT", bpgg_metrics::DEFAULT_FPR_LIMIT)?;
    m.add(
        "DEFAULT_MAX_PIXELS",
        bpgg::data::image_io::DEFAULT_MAX_PIXELS,
    )?;
    m.add_class::<model::PyModel>()?;
    m.add_class::<model::PyPrediction>()?;
    m.add_function(wrap_pyfunction!(default_config, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(files::read_image, m)?)?;
    m.add_function(wrap_pyfunction!(files::read_map, m)?)?;
    m.add_function(wrap_pyfunction!(files::write_map, m)?)?;
    Ok(())
}
