//! A fitted model on disk: one safetensors file (prototypes, memory bank, supports for the
//! reverse branch) whose header metadata holds the format name, its version and the JSON
//! configuration. Written atomically; read with every field checked.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::config::ModelConfig;
use super::fitted::{FittedModel, ThresholdRule};
use super::head::ProjectionHead;
use crate::backbone::weights::{safetensors_from_bytes_with_metadata, StateDict};
use crate::baseline::MemoryBank;
use crate::prototype::PrototypeBank;
use crate::{Error, Result};

/// The `bpgg_format` metadata value of a model file.
pub const MODEL_FORMAT: &str = "bpgg-model";
/// The model-file version this build writes (3: `size` as a resolution setting and `tile`). It
/// reads versions 1 to 3: version 2 added the defect memory bank and the image threshold, and
/// versions 1 and 2 stored a square `size` (read as the exact size it meant, see
/// [`upgrade_config`]).
pub const MODEL_VERSION: u32 = 3;

const DEFECT: &str = "prototypes.defect";
const NORMAL: &str = "prototypes.normal";
const MEMORY: &str = "memory_bank";
const DEFECT_BANK: &str = "defect_bank";
const SUPPORT_FEATURES: &str = "support.features";
const SUPPORT_MASKS: &str = "support.masks";

impl FittedModel {
    /// Writes the model to `path` (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::io::write_atomic(path, &self.to_bytes_named(path)?)
    }

    /// The model file's bytes (what [`FittedModel::save`] writes and
    /// [`FittedModel::from_bytes`] reads).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.to_bytes_named(Path::new("<model>"))
    }

    /// [`FittedModel::to_bytes`], naming `path` in errors.
    fn to_bytes_named(&self, path: &Path) -> Result<Vec<u8>> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        if let Some(bank) = &self.prototypes {
            tensors.push((DEFECT.into(), bank.defect.clone()));
            tensors.push((NORMAL.into(), bank.normal.clone()));
        }
        if let Some(memory) = &self.memory {
            tensors.push((MEMORY.into(), memory.features().clone()));
        }
        if let Some(bank) = &self.defect_bank {
            tensors.push((DEFECT_BANK.into(), bank.features().clone()));
        }
        if let Some((f, m)) = &self.reverse_supports {
            tensors.push((SUPPORT_FEATURES.into(), f.clone()));
            tensors.push((SUPPORT_MASKS.into(), m.clone()));
        }
        if let Some(head) = &self.head {
            tensors.extend(head.named());
        }
        let config = serde_json::to_string(&self.config).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let mut meta = HashMap::from([
            ("bpgg_format".to_string(), MODEL_FORMAT.to_string()),
            ("bpgg_version".to_string(), MODEL_VERSION.to_string()),
            ("config".to_string(), config),
            ("threshold".to_string(), self.threshold.to_string()),
            (
                "image_threshold".to_string(),
                self.image_threshold.to_string(),
            ),
            (
                "threshold_rule".to_string(),
                serde_json::to_string(&self.threshold_rule).expect("enum serialises"),
            ),
        ]);
        if let Some(s) = self.knn_scale {
            meta.insert("knn_scale".into(), s.to_string());
        }
        StateDict::new(tensors)?.to_safetensors_bytes(path, meta)
    }

    /// Reads a model written by [`FittedModel::save`], checking format, version and shapes.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, &bytes, device)
    }

    /// [`FittedModel::load`] on bytes already in memory; `path` only names them in errors.
    pub fn from_bytes(path: &Path, bytes: &[u8], device: &Device) -> Result<Self> {
        let bad = |problem: String| Error::invalid_data(path, problem);
        let (sd, meta) =
            safetensors_from_bytes_with_metadata(path, bytes).map_err(|e| match e {
                Error::InvalidWeights { problem, .. } => {
                    bad(format!("not a bpgg model file ({problem})"))
                }
                e => e,
            })?;
        if meta.get("bpgg_format").map(String::as_str) != Some(MODEL_FORMAT) {
            return Err(bad("not a bpgg model file (no bpgg-model header)".into()));
        }
        let version = meta.get("bpgg_version").map(String::as_str).unwrap_or("?");
        let version = match version.parse::<u32>() {
            Ok(v @ 1..=MODEL_VERSION) => v,
            _ => {
                return Err(bad(format!(
                    "model file version {version}, this bpgg reads versions 1 to \
                     {MODEL_VERSION}; refit it"
                )))
            }
        };
        let mut config: serde_json::Value = serde_json::from_str(
            meta.get("config")
                .ok_or_else(|| bad("model file has no config".into()))?,
        )
        .map_err(|e| bad(format!("model config is invalid: {e}")))?;
        upgrade_config(&mut config, version);
        let config: ModelConfig = serde_json::from_value(config)
            .map_err(|e| bad(format!("model config is invalid: {e}")))?;
        config
            .validate()
            .map_err(|e| bad(format!("model config is invalid: {e}")))?;
        let number = |key: &str| -> Result<Option<f32>> {
            meta.get(key)
                .map(|v| {
                    v.parse::<f32>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| bad(format!("{key} `{v}` is not a finite number")))
                })
                .transpose()
        };
        if config.scoring == super::Scoring::Auto {
            return Err(bad("model config has no concrete scoring".into()));
        }
        let threshold = number("threshold")?.ok_or_else(|| bad("model has no threshold".into()))?;
        // Version 1 had no image threshold: its verdict compared the image score with the pixel
        // threshold, which stands in for it.
        let image_threshold = match (number("image_threshold")?, version) {
            (Some(t), _) => t,
            (None, 1) => threshold,
            (None, _) => return Err(bad("model has no image threshold".into())),
        };
        let threshold_rule = meta
            .get("threshold_rule")
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or(ThresholdRule::User);
        let knn_scale = number("knn_scale")?;
        let get = |name: &str| -> Result<Option<Tensor>> {
            sd.get(name)
                .map(|t| t.to_device(device).map_err(Error::from))
                .transpose()
        };
        for (name, tensor) in sd.iter() {
            let rank = match name {
                DEFECT | NORMAL | MEMORY | DEFECT_BANK => Some(2),
                SUPPORT_FEATURES | SUPPORT_MASKS => Some(4),
                _ => None,
            };
            if rank.is_some_and(|r| r != tensor.rank()) {
                return Err(bad(format!(
                    "tensor {name} has shape {:?}, expected {} dimensions",
                    tensor.dims(),
                    rank.unwrap_or_default()
                )));
            }
            if !all_finite(tensor)? {
                return Err(bad(format!("tensor {name} holds a NaN or infinite value")));
            }
        }
        let prototypes = match (get(DEFECT)?, get(NORMAL)?) {
            (Some(d), Some(n)) => Some(PrototypeBank::new(d, n).map_err(|e| bad(e.to_string()))?),
            (None, None) => None,
            _ => return Err(bad("model has only one class of prototypes".into())),
        };
        let memory = get(MEMORY)?
            .map(|rows| MemoryBank::from_rows(&rows, &config.knn))
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        let defect_bank = get(DEFECT_BANK)?
            .map(|rows| MemoryBank::from_rows(&rows, &config.knn))
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        let reverse_supports = match (get(SUPPORT_FEATURES)?, get(SUPPORT_MASKS)?) {
            (Some(f), Some(m)) => {
                let shapes_fit = match (f.dims(), m.dims()) {
                    ([s, c, _, _], [sm, 1, _, _]) => {
                        s == sm && prototypes.as_ref().is_none_or(|p| p.channels() == *c)
                    }
                    _ => false,
                };
                if !shapes_fit {
                    return Err(bad(format!(
                        "support features {:?} and masks {:?} must be (s, C, h, w) and (s, 1, S, S)",
                        f.dims(),
                        m.dims()
                    )));
                }
                Some((f, m))
            }
            (None, None) => None,
            _ => return Err(bad("model has support features without masks".into())),
        };
        let head = match sd.get(super::head::HEAD_TENSORS[0]) {
            Some(_) => Some(ProjectionHead::from_named(path, |n| {
                sd.get(n).and_then(|t| t.to_device(device).ok())
            })?),
            None => None,
        };
        if config.scoring.uses_prototypes() && prototypes.is_none() {
            return Err(bad(format!("scoring {} but no prototypes", config.scoring)));
        }
        if config.scoring.uses_memory_bank() && memory.is_none() {
            return Err(bad(format!(
                "scoring {} but no memory bank",
                config.scoring
            )));
        }
        if config.scoring == super::Scoring::Hybrid && knn_scale.is_none() {
            return Err(bad("hybrid scoring but no knn_scale".into()));
        }
        let channels: Vec<usize> = [
            prototypes.as_ref().map(|p| p.channels()),
            memory.as_ref().map(|m| m.features().dims()[1]),
            defect_bank.as_ref().map(|m| m.features().dims()[1]),
        ]
        .into_iter()
        .flatten()
        .collect();
        if channels.windows(2).any(|w| w[0] != w[1]) {
            return Err(bad(format!("feature widths disagree: {channels:?}")));
        }
        Ok(FittedModel {
            config,
            prototypes,
            memory,
            defect_bank,
            knn_scale,
            reverse_supports,
            threshold,
            threshold_rule,
            image_threshold,
            head,
        })
    }
}

/// Whether every value of a floating tensor is finite (integer tensors always are).
fn all_finite(tensor: &Tensor) -> Result<bool> {
    if !tensor.dtype().is_float() {
        return Ok(true);
    }
    let values = tensor.flatten_all()?.to_dtype(candle_core::DType::F32)?;
    Ok(values.to_vec1::<f32>()?.iter().all(|v| v.is_finite()))
}

/// Brings the configuration of an older model file to today's shape:
/// - versions 1 and 2 resized every image to a square: their `size` (or, older, `image_size`)
///   `N` meant exactly `N x N`, which is `"NxN"` today (a plain number now means the long side);
/// - files written before the reverse branch used the model's τ carried a copy of it in
///   `reverse.tau`.
fn upgrade_config(config: &mut serde_json::Value, version: u32) {
    let Some(object) = config.as_object_mut() else {
        return;
    };
    if let Some(reverse) = object.get_mut("reverse").and_then(|r| r.as_object_mut()) {
        reverse.remove("tau");
    }
    if version <= 2 {
        let square = object
            .remove("image_size")
            .or_else(|| object.remove("size"))
            .and_then(|v| v.as_u64());
        if let Some(n) = square {
            object.insert("size".into(), format!("{n}x{n}").into());
        }
    }
}
