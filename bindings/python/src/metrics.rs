//! `bpgg.metrics.evaluate`: the localization metrics of a test set (what `bpgg eval` reports).

use bpgg_metrics::{evaluate as evaluate_maps, MapRef};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{list_from_py, map_from_py, mask_from_py};
use crate::error::{metrics_to_py, value_error};

/// Pixel AUROC, AUPRO (to `fpr_limit`), pixel AP, pixel F1-max (with its threshold) and image
/// AUROC of anomaly maps against ground-truth masks.
///
/// Arguments:
///   maps: float32 (or float64) (H, W) anomaly maps, higher = more anomalous (a list, or one
///     (N, H, W) array);
///   masks: one bool or uint8 (H, W) mask per map, of the map's size (uint8: defect where
///     > 127); an all-normal mask marks a defect-free image (a list, or one (N, H, W) array);
///   fpr_limit: the false-positive-rate limit of AUPRO (0.3, as MVTec AD's evaluation);
///   image_labels: one bool per map (True = defective); default: defective when its mask has a
///     defect pixel.
///
/// Returns a dict with pixel_auroc, aupro, pixel_ap, f1_max, f1_threshold and image_auroc
/// (None when all images have the same label). Raises ValueError for empty lists, NaN maps,
/// masks of the wrong size, or a test set without defect or normal pixels.
#[pyfunction]
#[pyo3(signature = (maps, masks, fpr_limit=bpgg_metrics::DEFAULT_FPR_LIMIT, image_labels=None))]
pub fn evaluate<'py>(
    py: Python<'py>,
    maps: &Bound<'py, PyAny>,
    masks: &Bound<'py, PyAny>,
    fpr_limit: f64,
    image_labels: Option<Vec<bool>>,
) -> PyResult<Bound<'py, PyDict>> {
    let maps = list_from_py(maps, "maps", map_from_py)?;
    let masks = list_from_py(masks, "masks", mask_from_py)?;
    if maps.is_empty() {
        return Err(value_error("maps: no maps given"));
    }
    if maps.len() != masks.len() {
        return Err(value_error(format!(
            "{} map(s) but {} mask(s): give one mask per map",
            maps.len(),
            masks.len()
        )));
    }
    for (i, (map, mask)) in maps.iter().zip(&masks).enumerate() {
        if (map.width, map.height) != (mask.width as usize, mask.height as usize) {
            return Err(value_error(format!(
                "masks[{i}] is {}x{} but maps[{i}] is {}x{}",
                mask.width, mask.height, map.width, map.height
            )));
        }
    }
    let labels = image_labels.unwrap_or_default();
    let metrics = py
        .detach(|| {
            let refs = maps
                .iter()
                .zip(&masks)
                .map(|(map, mask)| MapRef::new(&map.data, &mask.pixels, map.width, map.height))
                .collect::<bpgg_metrics::Result<Vec<_>>>()?;
            evaluate_maps(&refs, &labels, fpr_limit)
        })
        .map_err(metrics_to_py)?;
    let out = PyDict::new(py);
    out.set_item("pixel_auroc", metrics.pixel_auroc)?;
    out.set_item("aupro", metrics.aupro)?;
    out.set_item("pixel_ap", metrics.pixel_ap)?;
    out.set_item("f1_max", metrics.f1_max)?;
    out.set_item("f1_threshold", metrics.f1_threshold)?;
    out.set_item("image_auroc", metrics.image_auroc)?;
    Ok(out)
}
