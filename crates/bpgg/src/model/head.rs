//! The projection head on the frozen, embedded features (`docs/ARCHITECTURE.md`, "Features"):
//! trained by [`crate::train`], applied at inference by [`super::Encoder`], stored in training
//! checkpoints and fitted models. Training uses it; it knows nothing of training.
//!
//! Our choice of shape: a residual pair of 1x1 convolutions of hidden width `d`,
//! `g(f) = normalise(f + W₂·relu(W₁·f + b₁) + b₂)`, with `W₂, b₂` initialised to zero. An
//! untrained head is therefore exactly the identity on the (already unit-length) features: a
//! trained model starts from the training-free one and every gradient step moves away from it
//! only as far as the episodes ask. The output keeps the input width `C`, so prototypes,
//! the memory bank and every scoring work unchanged on projected features.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::backbone::weights::{read_safetensors_with_metadata, StateDict};
use crate::backbone::BackboneConfig;
#[cfg(test)]
use crate::ops::l2_normalize;
use crate::ops::NORM_EPS;
use crate::rng::SplitMix64;
use crate::{Error, Result};

/// The `bpgg_format` metadata value of a training checkpoint (`bpgg train`'s
/// `best.safetensors` and `last.safetensors`).
pub const CHECKPOINT_FORMAT: &str = "bpgg-checkpoint";
/// The checkpoint version this build writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Hidden width of the head when none is given.
pub const DEFAULT_HEAD_HIDDEN: usize = 256;

/// Tensor names of the head in checkpoints and model files.
pub const HEAD_TENSORS: [&str; 4] = ["head.w1", "head.b1", "head.w2", "head.b2"];

/// The shape of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadConfig {
    /// Feature width `C` in and out (152 for the default EfficientNet-Lite0 layers).
    pub channels: usize,
    /// Hidden width `d` of the 1x1 convolutions.
    pub hidden: usize,
}

impl HeadConfig {
    /// Checks the widths.
    pub fn validate(&self) -> Result<()> {
        if self.channels == 0 || !(1..=4096).contains(&self.hidden) {
            return Err(Error::InvalidConfig(format!(
                "projection head needs channels ≥ 1 and hidden width in 1..=4096, got {} and {}",
                self.channels, self.hidden
            )));
        }
        Ok(())
    }
}

/// A projection head: `W₁ (d, C)`, `b₁ (d, 1)`, `W₂ (C, d)`, `b₂ (C, 1)`.
///
/// The tensors may be [`candle_core::Var`]s (training) or plain tensors (inference).
#[derive(Debug, Clone)]
pub struct ProjectionHead {
    pub w1: Tensor,
    pub b1: Tensor,
    pub w2: Tensor,
    pub b2: Tensor,
}

impl ProjectionHead {
    /// A fresh head: `W₁` He-initialised from `seed`, the rest zero (the identity map).
    pub fn init(config: HeadConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let HeadConfig { channels, hidden } = config;
        let mut rng = SplitMix64::with_label(seed, "projection head");
        let std = (2.0 / channels as f32).sqrt();
        let w1: Vec<f32> = (0..hidden * channels).map(|_| rng.normal() * std).collect();
        Ok(Self {
            w1: Tensor::from_vec(w1, (hidden, channels), device)?,
            b1: Tensor::zeros((hidden, 1), DType::F32, device)?,
            w2: Tensor::zeros((channels, hidden), DType::F32, device)?,
            b2: Tensor::zeros((channels, 1), DType::F32, device)?,
        })
    }

    /// Builds a head from named tensors (as stored in checkpoints and model files), checking
    /// every shape. `source` names the file in errors.
    pub fn from_named(
        source: &std::path::Path,
        get: impl Fn(&str) -> Option<Tensor>,
    ) -> Result<Self> {
        let bad = |problem: String| Error::invalid_data(source, problem);
        let [w1, b1, w2, b2] = HEAD_TENSORS.map(|name| {
            get(name)
                .ok_or_else(|| bad(format!("projection head tensor `{name}` is missing")))
                .and_then(|t| t.to_dtype(DType::F32).map_err(Error::from))
        });
        let (w1, b1, w2, b2) = (w1?, b1?, w2?, b2?);
        let (hidden, channels) = w1
            .dims2()
            .map_err(|_| bad(format!("head.w1 must be 2-D, got {:?}", w1.dims())))?;
        let expect = [
            ("head.b1", &b1, [hidden, 1]),
            ("head.w2", &w2, [channels, hidden]),
            ("head.b2", &b2, [channels, 1]),
        ];
        for (name, t, shape) in expect {
            if t.dims() != shape {
                return Err(bad(format!(
                    "{name} has shape {:?}, expected {shape:?} for head.w1 {:?}",
                    t.dims(),
                    w1.dims()
                )));
            }
        }
        let head = Self { w1, b1, w2, b2 };
        head.config().validate()?;
        for (name, t) in HEAD_TENSORS.iter().zip(head.tensors()) {
            let finite = t
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .all(|v| v.is_finite());
            if !finite {
                return Err(bad(format!("{name} holds a non-finite value")));
            }
        }
        Ok(head)
    }

    /// A head over training variables, in [`HEAD_TENSORS`] order (`w1, b1, w2, b2`).
    pub fn from_vars(vars: &[candle_core::Var; 4]) -> Self {
        let [w1, b1, w2, b2] = vars.each_ref().map(|v| v.as_tensor().clone());
        Self { w1, b1, w2, b2 }
    }

    /// Training variables holding copies of the four tensors, in [`HEAD_TENSORS`] order.
    pub fn to_vars(&self) -> Result<[candle_core::Var; 4]> {
        let [w1, b1, w2, b2] = self.tensors();
        Ok([
            candle_core::Var::from_tensor(w1)?,
            candle_core::Var::from_tensor(b1)?,
            candle_core::Var::from_tensor(w2)?,
            candle_core::Var::from_tensor(b2)?,
        ])
    }

    /// The widths.
    pub fn config(&self) -> HeadConfig {
        let (hidden, channels) = self.w1.dims2().unwrap_or((0, 0));
        HeadConfig { channels, hidden }
    }

    /// The four tensors in [`HEAD_TENSORS`] order.
    pub fn tensors(&self) -> [&Tensor; 4] {
        [&self.w1, &self.b1, &self.w2, &self.b2]
    }

    /// `(name, tensor)` pairs for saving.
    pub fn named(&self) -> Vec<(String, Tensor)> {
        HEAD_TENSORS
            .iter()
            .zip(self.tensors())
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect()
    }

    /// Projects features and L2-normalises each pixel again.
    ///
    /// # Shapes
    /// - `features`: `(b, C, h, w)`; returns `(b, C, h, w)`, unit-length along `C`.
    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = features.dims4()?;
        let HeadConfig { channels, .. } = self.config();
        if c != channels {
            return Err(Error::ShapeMismatch(format!(
                "projection head expects {channels} feature channels, got {c} (was it trained \
                 with another backbone or other layers?)"
            )));
        }
        // Biases ride in the matmuls (a row of ones appended to the input) and the norm is a
        // matmul with a row of ones: no reduction over a strided axis, forward or backward,
        // which is where candle's CPU autograd spends its time otherwise.
        let x = features.contiguous()?.reshape((b, c, h * w))?;
        let ones = Tensor::ones((b, 1, h * w), x.dtype(), x.device())?;
        let w1 = Tensor::cat(&[&self.w1, &self.b1], 1)?;
        let hidden = w1
            .broadcast_matmul(&Tensor::cat(&[&x, &ones], 1)?)?
            .relu()?;
        let w2 = Tensor::cat(&[&self.w2, &self.b2], 1)?;
        let delta = w2.broadcast_matmul(&Tensor::cat(&[&hidden, &ones], 1)?)?;
        let y = (x + delta)?;
        let sum_row = Tensor::ones((1, c), y.dtype(), y.device())?;
        let norm = sum_row
            .broadcast_matmul(&y.sqr()?)?
            .sqrt()?
            .maximum(NORM_EPS)?;
        // 1/‖y‖ spread over the channels by a matmul with a column of ones (its gradient is a
        // matmul too).
        let spread = sum_row.t()?.broadcast_matmul(&norm.recip()?)?;
        Ok((y * spread)?.reshape((b, c, h, w))?)
    }
}

/// A training checkpoint's tensors and header metadata, after checking its format and version.
/// [`load_head`] reads the head from it; `train` reads its optimiser state as well.
pub(crate) fn read_checkpoint_file(path: &Path) -> Result<(StateDict, HashMap<String, String>)> {
    let bad = |problem: String| Error::invalid_data(path, problem);
    let (sd, meta) = read_safetensors_with_metadata(path).map_err(|e| match e {
        Error::InvalidWeights { problem, .. } => {
            bad(format!("not a bpgg training checkpoint ({problem})"))
        }
        e => e,
    })?;
    match meta.get("bpgg_format").map(String::as_str) {
        Some(CHECKPOINT_FORMAT) => {}
        Some(super::MODEL_FORMAT) => {
            return Err(bad(
                "this is a fitted model (bpgg fit), not a training checkpoint (bpgg train)".into(),
            ))
        }
        _ => return Err(bad("not a bpgg training checkpoint (no header)".into())),
    }
    let version = meta.get("bpgg_version").map(String::as_str).unwrap_or("?");
    if version != CHECKPOINT_VERSION.to_string() {
        return Err(bad(format!(
            "checkpoint version {version}, this bpgg reads version {CHECKPOINT_VERSION}"
        )));
    }
    Ok((sd, meta))
}

/// What a checkpoint's head was trained for: the fields of its training configuration that
/// inference must match (the rest of that configuration is training's business).
#[derive(Debug, Deserialize)]
struct TrainedFor {
    backbone: BackboneConfig,
    image_size: u32,
}

/// Loads the trained head of a `bpgg train` checkpoint for a model with this backbone and
/// image size (see [`super::ModelConfig::nominal_side`]; `None` accepts any), refusing a head
/// trained for other features.
pub fn load_head(
    checkpoint: &Path,
    backbone: &BackboneConfig,
    image_size: Option<u32>,
    device: &Device,
) -> Result<ProjectionHead> {
    let (sd, meta) = read_checkpoint_file(checkpoint)?;
    let bad = |problem: String| Error::invalid_data(checkpoint, problem);
    let config = meta
        .get("config")
        .ok_or_else(|| bad("checkpoint has no config".into()))?;
    let trained: TrainedFor = serde_json::from_str(config)
        .map_err(|e| bad(format!("checkpoint config is invalid: {e}")))?;
    let same_backbone = trained.backbone.kind == backbone.kind
        && trained.backbone.effective_layers() == backbone.effective_layers();
    if !same_backbone || image_size.is_some_and(|s| s != trained.image_size) {
        return Err(bad(format!(
            "was trained on {} ({}) at {} px, not {} ({}) at {} px",
            trained.backbone.kind,
            trained.backbone.effective_layers().join(","),
            trained.image_size,
            backbone.kind,
            backbone.effective_layers().join(","),
            image_size.unwrap_or(trained.image_size),
        )));
    }
    ProjectionHead::from_named(checkpoint, |name| {
        sd.get(name).and_then(|t| t.to_device(device).ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh head of 6 channels and width 5.
    fn small_head(dev: &Device) -> ProjectionHead {
        let config = HeadConfig {
            channels: 6,
            hidden: 5,
        };
        ProjectionHead::init(config, 7, dev).unwrap()
    }

    #[test]
    fn a_fresh_head_is_the_identity_on_unit_features() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 6, 3, 4), &dev).unwrap();
        let x = l2_normalize(&x, 1).unwrap();
        let head = small_head(&dev);
        let y = head.forward(&x).unwrap();
        let diff = (y - &x).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }

    #[test]
    fn a_head_refuses_features_of_another_width() {
        let dev = Device::Cpu;
        let head = small_head(&dev);
        let x = Tensor::zeros((1, 4, 2, 2), DType::F32, &dev).unwrap();
        let err = head.forward(&x).unwrap_err().to_string();
        assert!(err.contains("expects 6 feature channels, got 4"), "{err}");
    }

    #[test]
    fn named_tensors_with_a_wrong_shape_are_refused() {
        let dev = Device::Cpu;
        let head = small_head(&dev);
        let named = head.named();
        let path = std::path::Path::new("h.safetensors");
        let get = |n: &str| {
            if n == "head.w2" {
                return Some(Tensor::zeros((6, 4), DType::F32, &dev).unwrap());
            }
            named.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone())
        };
        let err = ProjectionHead::from_named(path, get)
            .unwrap_err()
            .to_string();
        assert!(err.contains("h.safetensors"), "{err}");
        assert!(
            err.contains("head.w2 has shape [6, 4], expected [6, 5]"),
            "{err}"
        );
        let ok = ProjectionHead::from_named(path, |n| {
            named.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone())
        })
        .unwrap();
        assert_eq!(ok.config().hidden, 5);
    }
}
