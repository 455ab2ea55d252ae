//! Parity of the torchvision backbones (ResNet-18, Wide-ResNet-50-2, VGG-16) with PyTorch.
//!
//! The networks are built from deterministic synthetic weights
//! (`bpgg::backbone::synthetic_weights`), run on a formula input and compared with the feature
//! maps PyTorch computed from the same weights and input. Golden values and the state-dict
//! shape lists in `tests/fixtures/torchvision/` come from `scripts/torchvision_golden.py`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use bpgg::backbone::synthetic_weights::synthetic_state_dict;
use bpgg::backbone::{
    FeatureExtractor, FeatureMap, ResNet, ResNetConfig, ResNetVariant, Vgg16, Vgg16Config,
};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

/// Largest accepted error, relative to the layer's largest |value| in PyTorch.
const MAX_RELATIVE_ERROR: f64 = 1e-4;

#[derive(Debug, Deserialize)]
struct Golden {
    input: InputSpec,
    sample_multiplier: u64,
    layers: Vec<GoldenLayer>,
}

#[derive(Debug, Deserialize)]
struct InputSpec {
    batch: usize,
    height: usize,
    width: usize,
}

#[derive(Debug, Deserialize)]
struct GoldenLayer {
    name: String,
    stride: usize,
    shape: Vec<usize>,
    max_abs: f64,
    channel_means: Vec<f64>,
    /// `[flat index, value]`.
    samples: Vec<(usize, f64)>,
}

fn fixture_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torchvision")
        .join(file)
}

fn read_json<T: serde::de::DeserializeOwned>(file: &str) -> Result<T> {
    let path = fixture_path(file);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    serde_json::from_str(&text).with_context(|| path.display().to_string())
}

/// `[[key, [dims...]], ...]` as written by the script.
fn shapes(net: &str) -> Result<Vec<(String, Vec<usize>)>> {
    read_json(&format!("{net}_shapes.json"))
}

fn read_golden(net: &str) -> Result<Golden> {
    read_json(&format!("{net}_golden.json"))
}

fn state_dict(net: &str) -> Result<HashMap<String, Tensor>> {
    Ok(synthetic_state_dict(&shapes(net)?, &Device::Cpu)?)
}

fn var_builder(tensors: HashMap<String, Tensor>) -> VarBuilder<'static> {
    VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)
}

/// The script's `formula_input`:
/// `127.5 * (1 + sin(0.31 x + 0.17 y + 1.3 c + 0.9 n + 0.013 x y))` in `f64`, rounded to `f32`.
fn formula_input(spec: &InputSpec) -> Result<Tensor> {
    let mut values = Vec::with_capacity(spec.batch * 3 * spec.height * spec.width);
    for n in 0..spec.batch {
        for c in 0..3 {
            for y in 0..spec.height {
                for x in 0..spec.width {
                    let (n, c, y, x) = (n as f64, c as f64, y as f64, x as f64);
                    let v = 127.5
                        * (1.0 + (0.31 * x + 0.17 * y + 1.3 * c + 0.9 * n + 0.013 * x * y).sin());
                    values.push(v as f32);
                }
            }
        }
    }
    Ok(Tensor::from_vec(
        values,
        (spec.batch, 3, spec.height, spec.width),
        &Device::Cpu,
    )?)
}

/// Compares one feature map with its golden values; returns the largest error relative to the
/// golden layer's max |value| over the sampled values and the per-channel means.
fn relative_error(map: &FeatureMap, expected: &GoldenLayer, multiplier: u64) -> Result<f64> {
    ensure!(
        map.name == expected.name,
        "layer {} vs golden {}",
        map.name,
        expected.name
    );
    ensure!(
        map.stride == expected.stride,
        "{}: stride {} vs {}",
        map.name,
        map.stride,
        expected.stride
    );
    ensure!(
        map.tensor.dims() == expected.shape.as_slice(),
        "{}: shape {:?} vs {:?}",
        map.name,
        map.tensor.dims(),
        expected.shape
    );
    ensure!(
        expected.max_abs > 0.0,
        "{}: degenerate golden layer",
        map.name
    );
    let values = map.tensor.to_dtype(DType::F64)?;
    let flat = values.flatten_all()?.to_vec1::<f64>()?;
    let means = values
        .mean_keepdim(3)?
        .mean_keepdim(2)?
        .mean_keepdim(0)?
        .flatten_all()?
        .to_vec1::<f64>()?;

    let mut max_err: f64 = 0.0;
    for (k, &(index, value)) in expected.samples.iter().enumerate() {
        ensure!(
            index as u64 == (k as u64 * multiplier) % flat.len() as u64,
            "sample index {k}"
        );
        max_err = max_err.max((flat[index] - value).abs());
    }
    ensure!(
        means.len() == expected.channel_means.len(),
        "{}: channel count",
        map.name
    );
    for (got, want) in means.iter().zip(&expected.channel_means) {
        max_err = max_err.max((got - want).abs());
    }
    Ok(max_err / expected.max_abs)
}

/// Runs `extractor` on the golden input and checks every golden layer.
fn check_against_golden(
    net: &str,
    extractor: &dyn FeatureExtractor,
    golden: &Golden,
) -> Result<()> {
    let input = formula_input(&golden.input)?;
    let start = Instant::now();
    let maps = extractor.forward_features(&input)?;
    eprintln!("{net}: forward {:.2?}", start.elapsed());
    ensure!(
        maps.maps.len() == golden.layers.len(),
        "{net}: {} maps returned",
        maps.maps.len()
    );
    for expected in &golden.layers {
        let map = maps
            .get(&expected.name)
            .with_context(|| format!("{net}: no {}", expected.name))?;
        let err = relative_error(map, expected, golden.sample_multiplier)?;
        eprintln!(
            "{net} {}: max relative error {err:.2e} (max |x| {:.4})",
            expected.name, expected.max_abs
        );
        ensure!(
            err <= MAX_RELATIVE_ERROR,
            "{net} {}: relative error {err:.2e}",
            expected.name
        );
    }
    Ok(())
}

fn all_layers(golden: &Golden) -> Vec<String> {
    golden.layers.iter().map(|l| l.name.clone()).collect()
}

fn check_resnet(net: &str, variant: ResNetVariant) -> Result<()> {
    let golden = read_golden(net)?;
    let start = Instant::now();
    let tensors = state_dict(net)?;
    eprintln!("{net}: synthetic weights {:.2?}", start.elapsed());
    let config = ResNetConfig {
        variant,
        layers: all_layers(&golden),
    };
    let start = Instant::now();
    let net_model = ResNet::new(&config, var_builder(tensors))?;
    eprintln!("{net}: load + BatchNorm folding {:.2?}", start.elapsed());
    assert_eq!(net_model.name(), net);
    check_against_golden(net, &net_model, &golden)
}

#[test]
fn resnet18_matches_pytorch() -> Result<()> {
    check_resnet("resnet18", ResNetVariant::ResNet18)
}

#[test]
fn wide_resnet50_2_matches_pytorch() -> Result<()> {
    check_resnet("wide_resnet50_2", ResNetVariant::WideResNet50_2)
}

#[test]
fn vgg16_matches_pytorch() -> Result<()> {
    let golden = read_golden("vgg16")?;
    let config = Vgg16Config {
        layers: all_layers(&golden),
    };
    let vgg = Vgg16::new(&config, var_builder(state_dict("vgg16")?))?;
    assert_eq!(vgg.name(), "vgg16");
    check_against_golden("vgg16", &vgg, &golden)
}

/// Only the stages up to the deepest requested layer are read: a state dict without
/// `layer3`/`layer4` builds a `layer1,layer2` ResNet-18 whose maps still match PyTorch.
#[test]
fn resnet_stops_at_deepest_requested_layer() -> Result<()> {
    let golden = read_golden("resnet18")?;
    let mut tensors = state_dict("resnet18")?;
    tensors.retain(|key, _| !key.starts_with("layer3.") && !key.starts_with("layer4."));
    let config = ResNetConfig {
        variant: ResNetVariant::ResNet18,
        layers: vec!["layer2".into(), "layer1".into()],
    };
    let resnet = ResNet::new(&config, var_builder(tensors))?;
    assert_eq!(resnet.layers(), ["layer1", "layer2"]);
    let maps = resnet.forward_features(&formula_input(&golden.input)?)?;
    let names: Vec<_> = maps.maps.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["layer1", "layer2"]);
    for map in &maps.maps {
        let expected = golden
            .layers
            .iter()
            .find(|l| l.name == map.name)
            .context("golden")?;
        let err = relative_error(map, expected, golden.sample_multiplier)?;
        assert!(err <= MAX_RELATIVE_ERROR, "{}: {err:.2e}", map.name);
    }

    // VGG: `stage2` (features.8) needs the convolutions features.0 .. features.7 only.
    let vgg_golden = read_golden("vgg16")?;
    let mut tensors = state_dict("vgg16")?;
    tensors.retain(|key, _| {
        let index: usize = key
            .split('.')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        index <= 8
    });
    assert_eq!(tensors.len(), 8, "four convolutions, weight and bias each");
    let vgg = Vgg16::new(
        &Vgg16Config {
            layers: vec!["stage2".into()],
        },
        var_builder(tensors),
    )?;
    let maps = vgg.forward_features(&formula_input(&vgg_golden.input)?)?;
    let expected = vgg_golden
        .layers
        .iter()
        .find(|l| l.name == "features.8")
        .context("golden")?;
    let err = relative_error(&maps.maps[0], expected, vgg_golden.sample_multiplier)?;
    assert!(err <= MAX_RELATIVE_ERROR, "features.8: {err:.2e}");
    Ok(())
}

#[test]
fn default_layers_are_the_stride_8_and_16_maps() -> Result<()> {
    let golden = read_golden("vgg16")?;
    let vgg = Vgg16::new(&Vgg16Config::default(), var_builder(state_dict("vgg16")?))?;
    assert_eq!(vgg.layers(), ["features.22", "features.29"]);
    let maps = vgg.forward_features(&formula_input(&golden.input)?)?;
    let strides: Vec<_> = maps.maps.iter().map(|m| m.stride).collect();
    assert_eq!(strides, [8, 16]);

    let aliases = Vgg16Config {
        layers: vec!["stage5".into(), "stage4".into()],
    };
    let vgg = Vgg16::new(&aliases, var_builder(state_dict("vgg16")?))?;
    assert_eq!(vgg.layers(), ["features.22", "features.29"]);

    let resnet = ResNet::new(
        &ResNetConfig::default(),
        var_builder(state_dict("resnet18")?),
    )?;
    assert_eq!(resnet.layers(), ["layer2", "layer3"]);
    let maps = resnet.forward_features(&formula_input(&golden.input)?)?;
    let strides: Vec<_> = maps.maps.iter().map(|m| m.stride).collect();
    assert_eq!(strides, [8, 16]);
    Ok(())
}

#[test]
fn missing_weight_is_an_error_naming_the_key() -> Result<()> {
    let mut tensors = state_dict("resnet18")?;
    tensors
        .remove("layer1.0.bn2.running_var")
        .context("fixture key")?;
    let err = ResNet::new(&ResNetConfig::default(), var_builder(tensors))
        .err()
        .context("a missing tensor must fail")?;
    assert!(
        matches!(&err, bpgg::Error::WeightTensor { key, .. } if key == "layer1.0.bn2.running_var"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("layer1.0.bn2.running_var"),
        "{err}"
    );
    Ok(())
}

#[test]
fn misshapen_weight_is_an_error_naming_the_key() -> Result<()> {
    let mut tensors = state_dict("vgg16")?;
    tensors.insert(
        "features.2.weight".into(),
        Tensor::zeros((64, 64, 1, 3), DType::F32, &Device::Cpu)?,
    );
    let err = Vgg16::new(&Vgg16Config::default(), var_builder(tensors))
        .err()
        .context("a misshapen tensor must fail")?;
    let message = err.to_string();
    assert!(
        matches!(&err, bpgg::Error::WeightTensor { key, .. } if key == "features.2.weight"),
        "{err:?}"
    );
    assert!(
        message.contains("features.2.weight") && message.contains("[64, 64, 3, 3]"),
        "{message}"
    );
    Ok(())
}

#[test]
fn unknown_layers_and_bad_inputs_are_errors() -> Result<()> {
    for layers in [
        vec![],
        vec!["layer5".to_string()],
        vec!["layer1".into(), "layer1".into()],
    ] {
        let config = ResNetConfig {
            variant: ResNetVariant::ResNet18,
            layers,
        };
        let result = ResNet::new(&config, var_builder(HashMap::new()));
        assert!(
            matches!(result, Err(bpgg::Error::InvalidConfig(_))),
            "{result:?}"
        );
    }
    for layer in ["features.31", "stage6", "features.x", "stage4"] {
        let layers = if layer == "stage4" {
            vec!["stage4".into(), "features.22".into()]
        } else {
            vec![layer.into()]
        };
        let result = Vgg16::new(&Vgg16Config { layers }, var_builder(HashMap::new()));
        assert!(
            matches!(result, Err(bpgg::Error::InvalidConfig(_))),
            "{layer}: {result:?}"
        );
    }

    let config = Vgg16Config {
        layers: vec!["features.1".into()],
    };
    let vgg = Vgg16::new(&config, var_builder(state_dict("vgg16")?))?;
    let gray = Tensor::zeros((1, 1, 8, 8), DType::F32, &Device::Cpu)?;
    assert!(vgg.forward_features(&gray).is_err());
    Ok(())
}
