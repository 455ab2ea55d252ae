//! `bpgg.Model` (a fitted model with its loaded backbone) and `bpgg.Prediction`.
//!
//! Inputs are converted while the GIL is held; every library call runs with the GIL released
//! (`Python::detach`), so threads calling `predict` on one model run in parallel. A model is
//! immutable (a new threshold makes a new model sharing the backbone), hence safe to share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bpgg::model::{fit, load_head, Encoder, FittedModel, SupportSet, ThresholdRule};
use candle_core::Device;
use image::RgbImage;
use numpy::{PyArray1, PyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::config::{config_from_kwargs, config_to_py};
use crate::convert::{images_from_py, list_from_py, map_to_py, mask_from_py, mask_to_py};
use crate::error::{to_py, value_error};

/// A fitted few-shot model with its backbone loaded (once, when the model is made).
///
/// Make one with `Model.fit` or `Model.load`; it predicts anomaly maps of numpy images. The
/// same model file as `bpgg fit` writes and `bpgg predict` reads. Thread-safe: several threads
/// may call `predict` at once (the GIL is released while the model computes). Picklable (as the
/// model file's bytes), so Ray, multiprocessing or Spark can ship it.
#[pyclass(frozen, module = "bpgg", name = "Model")]
pub struct PyModel {
    fitted: Arc<FittedModel>,
    encoder: Arc<Encoder>,
}

impl PyModel {
    fn from_fitted(py: Python<'_>, fitted: FittedModel) -> PyResult<Self> {
        let encoder = py.detach(|| fitted.encoder(&Device::Cpu)).map_err(to_py)?;
        Ok(Self {
            fitted: Arc::new(fitted),
            encoder: Arc::new(encoder),
        })
    }

    /// The library's predictions of `images` (GIL released).
    fn predict_images(
        &self,
        py: Python<'_>,
        images: &[RgbImage],
        threshold: Option<f32>,
    ) -> PyResult<Vec<bpgg::model::Prediction>> {
        if let Some(t) = threshold {
            check_threshold(t)?;
        }
        let (fitted, encoder) = (&*self.fitted, &*self.encoder);
        py.detach(|| fitted.predict_images(encoder, images, threshold))
            .map_err(to_py)
    }
}

fn check_threshold(t: f32) -> PyResult<()> {
    if t.is_finite() {
        Ok(())
    } else {
        Err(value_error(format!("threshold must be finite, got {t}")))
    }
}

#[pymethods]
impl PyModel {
    /// Fits a model on support images: what `bpgg fit` does.
    ///
    /// Arguments:
    ///   defects: defect images, each a uint8 array (H, W) or (H, W, 3);
    ///   masks: one mask per defect image, bool or uint8 (H, W) of the image's size (uint8: defect
    ///     where > 127, as in a mask PNG), in a list or one (N, H, W) array;
    ///   normals: defect-free images;
    ///   checkpoint: a projection head trained by `bpgg train` (`--checkpoint`);
    ///   **config: the model configuration by its JSON keys (`bpgg.default_config()` lists them
    ///     with the defaults). Missing keys take the defaults of `bpgg fit`; an unknown key is an
    ///     error. The flags of `bpgg fit` are:
    ///       scoring="auto"|"bpgg"|"knn"|"hybrid"           --scoring
    ///       size="256x256" | 256 | "native"              --size (exact, the default | long
    ///                                                      side | native resolution)
    ///       size={"scale": 0.5}                            --scale
    ///       tile={"size": 256, "overlap": 32}              --tile, --tile-overlap
    ///       tau=20.0                                       --tau
    ///       backbone={"kind": ..., "weights": ..., "layers": [...]}
    ///                                                      --backbone, --weights, --layers
    ///       prototype={"prototypes_per_class": 1}          --prototypes
    ///       prototype={"normal_source_weight": 0.5}        --normal-weight
    ///       reverse={"mode": "off"|"refine"|"augment"}     --reverse
    ///       map={"sigma_px": 4.0}                          --sigma
    ///       hybrid={"weight": 0.5}                         --hybrid-weight
    ///       prototype={"seed": 0}, knn={"seed": 0}         --model-seed (sets both)
    ///     and the nested keys go further than the flags (e.g. knn={"max_bank": 10000}).
    ///
    /// Raises ValueError for bad images, masks or options (with the library's message) and
    /// OSError when a weight or checkpoint file cannot be read.
    #[staticmethod]
    #[pyo3(signature = (defects=None, masks=None, normals=None, *, checkpoint=None, **config))]
    fn fit(
        py: Python<'_>,
        defects: Option<&Bound<'_, PyAny>>,
        masks: Option<&Bound<'_, PyAny>>,
        normals: Option<&Bound<'_, PyAny>>,
        checkpoint: Option<PathBuf>,
        config: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config = config_from_kwargs(config)?;
        let defects = match defects {
            Some(d) => images_from_py(d, "defects")?,
            None => Vec::new(),
        };
        let masks = match masks {
            Some(m) => list_from_py(m, "masks", mask_from_py)?,
            None => Vec::new(),
        };
        let normals = match normals {
            Some(n) => images_from_py(n, "normals")?,
            None => Vec::new(),
        };
        if defects.len() != masks.len() {
            return Err(value_error(format!(
                "{} defect image(s) but {} mask(s): give one mask per defect image",
                defects.len(),
                masks.len()
            )));
        }
        let supports = SupportSet {
            defects: defects
                .into_iter()
                .zip(masks)
                .enumerate()
                .map(|(i, (image, mask))| (format!("masks[{i}]"), image, mask))
                .collect(),
            normals: normals
                .into_iter()
                .enumerate()
                .map(|(i, image)| (format!("normals[{i}]"), image))
                .collect(),
        };
        let (fitted, encoder) = py
            .detach(|| -> bpgg::Result<_> {
                let device = Device::Cpu;
                let head = checkpoint
                    .as_deref()
                    .map(|p| load_head(p, &config.backbone, config.nominal_side(), &device))
                    .transpose()?;
                let encoder = Encoder::new(&config.backbone, &device)?.with_head(head);
                let fitted = fit(&encoder, &supports, &config)?;
                Ok((fitted, encoder))
            })
            .map_err(to_py)?;
        Ok(Self {
            fitted: Arc::new(fitted),
            encoder: Arc::new(encoder),
        })
    }

    /// Loads a model file written by `bpgg fit` or `Model.save`.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let fitted = py
            .detach(|| FittedModel::load(&path, &Device::Cpu))
            .map_err(to_py)?;
        Self::from_fitted(py, fitted)
    }

    /// A model from the bytes of a model file (what `to_bytes` returns).
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let fitted = py
            .detach(|| FittedModel::from_bytes(Path::new("<bytes>"), data, &Device::Cpu))
            .map_err(to_py)?;
        Self::from_fitted(py, fitted)
    }

    /// The bytes of the model file.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let fitted = &*self.fitted;
        let bytes = py.detach(|| fitted.to_bytes()).map_err(to_py)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Writes the model file (atomically), readable by `bpgg predict` and `Model.load`.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let fitted = &*self.fitted;
        py.detach(|| fitted.save(&path)).map_err(to_py)
    }

    /// Anomaly maps of images: a float32 (H, W) array per image, at the image's own size
    /// (the maps `bpgg predict` writes as TIFF).
    ///
    /// `images`: a list of uint8 arrays (H, W) or (H, W, 3) of any sizes, or an (N, H, W, 3)
    /// array. An empty list gives an empty list.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, PyArray2<f32>>>> {
        let images = images_from_py(images, "images")?;
        let predictions = self.predict_images(py, &images, None)?;
        Ok(predictions
            .into_iter()
            .map(|p| map_to_py(py, p.map))
            .collect())
    }

    /// Image anomaly scores (float32, one per image): the `image_score` of `bpgg predict` (the
    /// mean of the largest cells of the model's image signal, `bpgg::model::image_score`).
    fn score<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let images = images_from_py(images, "images")?;
        let (fitted, encoder) = (&*self.fitted, &*self.encoder);
        let scores = py
            .detach(|| -> bpgg::Result<Vec<f32>> {
                Ok(fitted
                    .predict_scored(encoder, &images)?
                    .into_iter()
                    .map(|(_, score)| score)
                    .collect())
            })
            .map_err(to_py)?;
        Ok(PyArray1::from_vec(py, scores))
    }

    /// Everything `bpgg predict` reports for each image: map, mask, image score, verdict,
    /// defect area and regions, at `threshold` (default: the model's).
    #[pyo3(signature = (images, *, threshold=None))]
    fn predictions(
        &self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        threshold: Option<f32>,
    ) -> PyResult<Vec<PyPrediction>> {
        let images = images_from_py(images, "images")?;
        let predictions = self.predict_images(py, &images, threshold)?;
        predictions
            .into_iter()
            .map(|p| PyPrediction::new(py, p))
            .collect()
    }

    /// The map value at or above which a pixel is defect (chosen at fit time from the supports,
    /// or set with `with_threshold`).
    #[getter]
    fn threshold(&self) -> f32 {
        self.fitted.threshold
    }

    /// The image score at or above which an image is judged defective (chosen at fit time
    /// from the supports' own image scores).
    #[getter]
    fn image_threshold(&self) -> f32 {
        self.fitted.image_threshold
    }

    /// How the threshold was chosen: "support_f1", "normal_max" or "user".
    #[getter]
    fn threshold_rule(&self) -> &'static str {
        match self.fitted.threshold_rule {
            ThresholdRule::SupportF1 => "support_f1",
            ThresholdRule::NormalMax => "normal_max",
            ThresholdRule::User => "user",
        }
    }

    /// The scoring the model was fitted with ("bpgg", "knn" or "hybrid"; "auto" is resolved).
    #[getter]
    fn scoring(&self) -> &'static str {
        self.fitted.config.scoring.name()
    }

    /// The model configuration, as a dict of its JSON form (the keyword arguments of `fit`).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        config_to_py(py, &self.fitted.config)
    }

    /// The same model with another threshold (saved with it); the backbone is shared.
    fn with_threshold(&self, threshold: f32) -> PyResult<Self> {
        check_threshold(threshold)?;
        let mut fitted = (*self.fitted).clone();
        fitted.threshold = threshold;
        fitted.threshold_rule = ThresholdRule::User;
        Ok(Self {
            fitted: Arc::new(fitted),
            encoder: Arc::clone(&self.encoder),
        })
    }

    /// For the benchmark (`bench/bench_ray.py`): runs what `predict` runs `repeats` times and
    /// returns the seconds of its three parts in each run: `(numpy in, library call, maps out)`.
    /// The first and last are what the package adds to the library.
    fn _time_predict_parts<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        repeats: usize,
    ) -> PyResult<Vec<(f64, f64, f64)>> {
        (0..repeats)
            .map(|_| {
                let start = std::time::Instant::now();
                let converted = images_from_py(images, "images")?;
                let converted_at = std::time::Instant::now();
                let predictions = self.predict_images(py, &converted, None)?;
                let predicted_at = std::time::Instant::now();
                let maps: Vec<_> = predictions
                    .into_iter()
                    .map(|p| map_to_py(py, p.map))
                    .collect();
                let done = std::time::Instant::now();
                drop(maps);
                Ok((
                    (converted_at - start).as_secs_f64(),
                    (predicted_at - converted_at).as_secs_f64(),
                    (done - predicted_at).as_secs_f64(),
                ))
            })
            .collect()
    }

    /// Pickles as the model file's bytes.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let from_bytes = py.get_type::<PyModel>().getattr("from_bytes")?;
        let bytes = self.to_bytes(py)?;
        PyTuple::new(py, [from_bytes, PyTuple::new(py, [bytes])?.into_any()])
    }

    fn __repr__(&self) -> String {
        let c = &self.fitted.config;
        format!(
            "Model(scoring={:?}, backbone={:?}, size={:?}, tile={}, threshold={})",
            c.scoring.name(),
            c.backbone.kind.to_string(),
            c.size.to_string(),
            c.tile.as_ref().map_or("None".to_string(), |t| format!(
                "{{'size': {}, 'overlap': {}}}",
                t.size, t.overlap
            )),
            self.fitted.threshold
        )
    }
}

/// What a model says about one image (the fields of a `bpgg predict` result line).
#[pyclass(frozen, module = "bpgg", name = "Prediction")]
pub struct PyPrediction {
    /// The anomaly map, float32 (H, W) at the image's size.
    #[pyo3(get)]
    map: Py<PyArray2<f32>>,
    /// `map >= threshold`, bool (H, W).
    #[pyo3(get)]
    mask: Py<PyArray2<bool>>,
    /// The image anomaly score (`Model.score`).
    #[pyo3(get)]
    image_score: f32,
    /// The pixel threshold the mask and regions were taken at.
    #[pyo3(get)]
    threshold: f32,
    /// The image threshold the verdict was taken at (the model's `image_threshold`).
    #[pyo3(get)]
    image_threshold: f32,
    /// Whether the image is judged defective (`image_score >= image_threshold`).
    #[pyo3(get)]
    defective: bool,
    /// Pixels at or above the threshold.
    #[pyo3(get)]
    defect_area_px: usize,
    /// Share of the image at or above the threshold.
    #[pyo3(get)]
    defect_area_fraction: f64,
    /// Connected defect regions: dicts with x, y, w, h (bounding box), area_px, max_score.
    #[pyo3(get)]
    regions: Py<pyo3::types::PyList>,
}

impl PyPrediction {
    fn new(py: Python<'_>, p: bpgg::model::Prediction) -> PyResult<Self> {
        let regions = pyo3::types::PyList::empty(py);
        for r in &p.regions {
            let d = PyDict::new(py);
            d.set_item("x", r.x)?;
            d.set_item("y", r.y)?;
            d.set_item("w", r.w)?;
            d.set_item("h", r.h)?;
            d.set_item("area_px", r.area_px)?;
            d.set_item("max_score", r.max_score)?;
            regions.append(d)?;
        }
        let (area, fraction) = (p.defect_area_px(), p.defect_area_fraction());
        Ok(Self {
            image_score: p.image_score,
            threshold: p.threshold,
            image_threshold: p.image_threshold,
            defective: p.defective,
            defect_area_px: area,
            defect_area_fraction: fraction,
            map: map_to_py(py, p.map).unbind(),
            mask: mask_to_py(py, p.mask).unbind(),
            regions: regions.unbind(),
        })
    }
}

#[pymethods]
impl PyPrediction {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Prediction(image_score={}, defective={}, defect_area_px={}, regions={})",
            self.image_score,
            if self.defective { "True" } else { "False" },
            self.defect_area_px,
            self.regions.bind(py).len()
        )
    }
}
