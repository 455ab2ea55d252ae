//! Times ResNet-18 feature extraction (default layers `layer2`, `layer3`, or all four stages
//! with `full`) on `batch` random 256x256 images, with deterministic synthetic weights (the
//! speed does not depend on the values). Informational only.
//!
//! `cargo run --release -p bpgg --example resnet18_time -- [batch] [runs] [full]`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use bpgg::backbone::resnet::RESNET_LAYERS;
use bpgg::backbone::synthetic_weights::synthetic_state_dict;
use bpgg::backbone::{FeatureExtractor, ResNet, ResNetConfig};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

const SIZE: usize = 256;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().map(|b| b.parse()).transpose()?.unwrap_or(1);
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(10);
    let full = args.next().is_some_and(|a| a == "full");
    let shapes_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torchvision/resnet18_shapes.json");
    let text =
        std::fs::read_to_string(&shapes_path).with_context(|| shapes_path.display().to_string())?;
    let shapes: Vec<(String, Vec<usize>)> = serde_json::from_str(&text)?;
    let device = Device::Cpu;
    let vb = VarBuilder::from_tensors(synthetic_state_dict(&shapes, &device)?, DType::F32, &device);
    let mut config = ResNetConfig::default();
    if full {
        config.layers = RESNET_LAYERS.map(String::from).to_vec();
    }
    let net = ResNet::new(&config, vb)?;
    let images = Tensor::rand(0f32, 255f32, (batch, 3, SIZE, SIZE), &device)?;
    net.forward_features(&images)?; // warm-up
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        net.forward_features(&images)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "resnet18 forward_features {:?} {batch}x3x{SIZE}x{SIZE}: median {:.1} ms, min {:.1} ms ({runs} runs)",
        config.layers,
        times[runs / 2],
        times[0]
    );
    Ok(())
}
