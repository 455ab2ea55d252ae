//! EfficientNet-Lite0 backbone against the independent numpy reference.
//!
//! Golden values and the 224x224 photos in `tests/fixtures/effnet/` come from
//! `scripts/effnet_golden.py` (which runs shared/reference/effnet_lite0_numpy.py in float64).
//!
//! Weights are not committed with these tests:
//! - `BPGG_EFFNET_WEIGHTS`: a safetensors with the trunk or full checkpoint (key names of
//!   `efficientnet_pytorch`); falls back to `crates/bpgg/weights/efficientnet_lite0_trunk.safetensors`.
//! - `BPGG_EFFNET_FULL`: the full checkpoint including `_conv_head`, `_bn1`, `_fc` (cat test).
//!
//! Tests that need a missing file print why they skip and return.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use bpgg::backbone::efficientnet_lite::NUM_CLASSES;
use bpgg::backbone::{EfficientNetLite0, EfficientNetLiteConfig, FeatureExtractor};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;

/// Max |rust − reference| over max |reference|, per tensor.
const MAX_RELATIVE_DIFF: f32 = 1e-4;
/// ImageNet classes "tabby", "tiger cat", "Egyptian cat".
const CAT_CLASSES: [u32; 3] = [281, 282, 285];
/// ImageNet classes "cup", "espresso", "coffee mug".
const COFFEE_CLASSES: [u32; 3] = [967, 968, 504];
/// The stage-ending blocks stored in `golden.safetensors`.
const GOLDEN_LAYERS: [&str; 6] = [
    "blocks.2",
    "blocks.4",
    "blocks.7",
    "blocks.10",
    "blocks.14",
    "blocks.15",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/effnet")
}

fn golden() -> Result<HashMap<String, Tensor>> {
    let path = fixtures().join("golden.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu).with_context(|| path.display().to_string())
}

/// The trunk (or full) weights, or `None` with a printed reason.
fn trunk_weights() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BPGG_EFFNET_WEIGHTS") {
        return Some(PathBuf::from(path));
    }
    let bundled =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/efficientnet_lite0_trunk.safetensors");
    if bundled.exists() {
        return Some(bundled);
    }
    eprintln!(
        "SKIPPED: no EfficientNet-Lite0 weights (set BPGG_EFFNET_WEIGHTS or add {})",
        bundled.display()
    );
    None
}

/// The full checkpoint with the classifier, or `None` with a printed reason.
fn full_weights() -> Option<PathBuf> {
    let path = std::env::var_os("BPGG_EFFNET_FULL").map(PathBuf::from);
    if path.is_none() {
        eprintln!("SKIPPED: BPGG_EFFNET_FULL (full EfficientNet-Lite0 safetensors) is not set");
    }
    path
}

fn load(path: &Path, config: &EfficientNetLiteConfig) -> Result<EfficientNetLite0> {
    let device = Device::Cpu;
    let tensors = candle_core::safetensors::load(path, &device)
        .with_context(|| path.display().to_string())?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
    Ok(EfficientNetLite0::load(vb, config)?)
}

/// Max |a − b| / max |b|.
fn relative_diff(actual: &Tensor, expected: &Tensor) -> Result<f32> {
    ensure!(
        actual.dims() == expected.dims(),
        "{:?} vs {:?}",
        actual.dims(),
        expected.dims()
    );
    let diff = (actual - expected)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    let scale = expected.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    Ok(diff / scale)
}

fn layers(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A 0..=255 RGB PNG as `(1, 3, h, w)` f32.
fn read_png(path: &Path) -> Result<Tensor> {
    let img = image::open(path)
        .with_context(|| path.display().to_string())?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let hwc = Tensor::from_vec(img.into_raw(), (h as usize, w as usize, 3), &Device::Cpu)?;
    Ok(hwc
        .to_dtype(DType::F32)?
        .permute((2, 0, 1))?
        .unsqueeze(0)?
        .contiguous()?)
}

/// Indices of the `k` largest values of a `(1, n)` tensor, largest first.
fn top_k(logits: &Tensor, k: usize) -> Result<Vec<u32>> {
    let sorted = logits.squeeze(0)?.arg_sort_last_dim(false)?;
    Ok(sorted.narrow(0, 0, k)?.to_vec1::<u32>()?)
}

#[test]
fn features_match_numpy_reference() -> Result<()> {
    let Some(weights) = trunk_weights() else {
        return Ok(());
    };
    // The committed trunk stops at blocks.10 (stride 16); a full checkpoint covers every layer.
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)?;
    let checked: Vec<&str> = if tensors.contains_key("_blocks.15._project_conv.weight") {
        GOLDEN_LAYERS.to_vec()
    } else {
        GOLDEN_LAYERS[..4].to_vec()
    };
    let config = EfficientNetLiteConfig {
        layers: layers(&checked),
        with_classifier: false,
    };
    let net = load(&weights, &config)?;
    let golden = golden()?;
    let maps = net.forward_features(&golden["input"])?;
    assert_eq!(net.layers(), layers(&checked));
    let mut worst = 0f32;
    for name in checked {
        let map = maps.get(name).with_context(|| format!("{name} missing"))?;
        let rel = relative_diff(&map.tensor, &golden[name])?;
        eprintln!(
            "{name}: stride {} {:?} max rel diff {rel:.3e}",
            map.stride,
            map.tensor.dims()
        );
        worst = worst.max(rel);
    }
    eprintln!("features: max relative difference vs numpy reference {worst:.3e}");
    assert!(
        worst < MAX_RELATIVE_DIFF,
        "max relative difference {worst:.3e}"
    );
    Ok(())
}

#[test]
fn aliases_return_the_same_maps_as_block_names() -> Result<()> {
    let Some(weights) = trunk_weights() else {
        return Ok(());
    };
    let config = EfficientNetLiteConfig {
        layers: layers(&["stride16", "stride4", "stride8"]),
        with_classifier: false,
    };
    let net = load(&weights, &config)?;
    assert_eq!(net.layers(), layers(&["blocks.2", "blocks.4", "blocks.10"]));
    let golden = golden()?;
    let maps = net.forward_features(&golden["input"])?;
    for name in ["blocks.2", "blocks.4", "blocks.10"] {
        let rel = relative_diff(&maps.get(name).context("missing")?.tensor, &golden[name])?;
        assert!(rel < MAX_RELATIVE_DIFF, "{name}: {rel:.3e}");
    }
    Ok(())
}

#[test]
fn default_layers_have_documented_strides_and_channels() -> Result<()> {
    // Zero weights are enough for shapes; no file needed.
    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    let net = EfficientNetLite0::load(vb, &EfficientNetLiteConfig::default())?;
    let images = Tensor::zeros((2, 3, 64, 76), DType::F32, &Device::Cpu)?;
    let maps = net.forward_features(&images)?;
    let got: Vec<_> = maps
        .maps
        .iter()
        .map(|m| (m.name.as_str(), m.stride, m.tensor.dims().to_vec()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("blocks.2", 4, vec![2, 24, 16, 19]),
            ("blocks.4", 8, vec![2, 40, 8, 10]),
            ("blocks.10", 16, vec![2, 112, 4, 5]),
        ]
    );
    Ok(())
}

#[test]
fn bad_inputs_are_errors_not_panics() -> Result<()> {
    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    let net = EfficientNetLite0::load(vb, &EfficientNetLiteConfig::default())?;
    let gray = Tensor::zeros((1, 1, 32, 32), DType::F32, &Device::Cpu)?;
    assert!(net.forward_features(&gray).is_err());
    let rgb = Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu)?;
    assert!(matches!(
        net.classify(&rgb),
        Err(bpgg::Error::InvalidConfig(_))
    ));
    let empty = Tensor::zeros((1, 3, 0, 32), DType::F32, &Device::Cpu)?;
    assert!(net.forward_features(&empty).is_err());
    // A checkpoint without the expected tensors is an error, not a panic.
    let vb = VarBuilder::from_tensors(HashMap::new(), DType::F32, &Device::Cpu);
    assert!(EfficientNetLite0::load(vb, &EfficientNetLiteConfig::default()).is_err());
    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    let config = EfficientNetLiteConfig {
        layers: layers(&["layer3"]),
        with_classifier: false,
    };
    assert!(matches!(
        EfficientNetLite0::load(vb, &config),
        Err(bpgg::Error::InvalidConfig(_))
    ));
    Ok(())
}

#[test]
fn classifier_recognises_cat_and_coffee() -> Result<()> {
    let Some(weights) = full_weights() else {
        return Ok(());
    };
    let config = EfficientNetLiteConfig {
        layers: vec![],
        with_classifier: true,
    };
    let net = load(&weights, &config)?;
    let golden = golden()?;

    let rel = relative_diff(&net.classify(&golden["input"])?, &golden["logits"])?;
    eprintln!("logits (64x76 pattern): max rel diff {rel:.3e}");
    assert!(rel < MAX_RELATIVE_DIFF, "{rel:.3e}");

    let expected_top5: HashMap<String, Vec<u32>> = serde_json::from_str(&std::fs::read_to_string(
        fixtures().join("expected_top5.json"),
    )?)?;
    for (photo, classes) in [("chelsea", CAT_CLASSES), ("coffee", COFFEE_CLASSES)] {
        let images = read_png(&fixtures().join(format!("{photo}_224.png")))?;
        let logits = net.classify(&images)?;
        assert_eq!(logits.dims(), [1, NUM_CLASSES]);
        let probs = candle_nn::ops::softmax(&logits, D::Minus1)?;
        let top5 = top_k(&logits, 5)?;
        let p: Vec<f32> = top5
            .iter()
            .map(|&c| probs.get(0)?.get(c as usize)?.to_scalar::<f32>())
            .collect::<candle_core::Result<_>>()?;
        let rel = relative_diff(&logits, &golden[&format!("{photo}_logits")])?;
        eprintln!("{photo}: top-5 {top5:?} p {p:.3?}, logits max rel diff {rel:.3e}");
        assert!(rel < MAX_RELATIVE_DIFF, "{photo}: {rel:.3e}");
        assert!(
            classes.contains(&top5[0]),
            "{photo}: top-1 {} not in {classes:?}",
            top5[0]
        );
        assert_eq!(
            top5, expected_top5[photo],
            "{photo}: top-5 differs from the reference"
        );
    }
    Ok(())
}
