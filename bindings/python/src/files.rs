//! Images and maps on disk through the library's readers and writers (the CLI's), so that a
//! Python pipeline decodes images exactly as `bpgg predict` does.

use std::path::PathBuf;

use bpgg::data::float_map::FloatMap;
use bpgg::data::image_io::{load_rgb, ImageLimits, DEFAULT_MAX_PIXELS};
use numpy::{PyArray2, PyArray3};
use pyo3::prelude::*;

use crate::convert::{image_to_py, map_from_py, map_to_py};
use crate::error::{to_py, value_error};

/// Decodes an image file (PNG, JPEG or TIFF, detected from its bytes) as uint8 (H, W, 3), as
/// `bpgg predict` does (gray is replicated, 16-bit scaled down, alpha dropped). Files declaring
/// more than `max_pixels` pixels are refused (`--max-pixels`).
///
/// Raises OSError when the file cannot be read, ValueError when it is not a decodable image.
#[pyfunction]
#[pyo3(signature = (path, *, max_pixels=DEFAULT_MAX_PIXELS))]
pub fn read_image(
    py: Python<'_>,
    path: PathBuf,
    max_pixels: u64,
) -> PyResult<Bound<'_, PyArray3<u8>>> {
    let image = py
        .detach(|| load_rgb(&path, ImageLimits { max_pixels }))
        .map_err(to_py)?;
    Ok(image_to_py(py, image))
}

/// Reads an anomaly map: a float32 TIFF (as `bpgg predict` writes) or a `.npy` file.
#[pyfunction]
pub fn read_map(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyArray2<f32>>> {
    let map = py.detach(|| FloatMap::read(&path)).map_err(to_py)?;
    Ok(map_to_py(py, map))
}

/// Writes an anomaly map as a float32 TIFF (`.tiff`/`.tif`, as `bpgg predict` does) or `.npy`,
/// atomically: a temporary file in the same folder (`.<name>.tmp-<pid>-<n>`), then a rename, so
/// a reader never sees a half-written map.
#[pyfunction]
pub fn write_map(py: Python<'_>, path: PathBuf, map: &Bound<'_, PyAny>) -> PyResult<()> {
    let map = map_from_py(map, "map")?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("tif" | "tiff") => py.detach(|| map.write_tiff(&path)).map_err(to_py),
        Some("npy") => py.detach(|| map.write_npy(&path)).map_err(to_py),
        _ => Err(value_error(format!(
            "{}: anomaly maps are written as .tiff, .tif or .npy",
            path.display()
        ))),
    }
}
