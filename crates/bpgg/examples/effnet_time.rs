//! Times EfficientNet-Lite0 feature extraction (default layers, strides 4/8/16) on `batch`
//! random 256x256 images. Informational only.
//!
//! `cargo run --release -p bpgg --example effnet_time -- WEIGHTS.safetensors [runs] [batch]`

use std::time::Instant;

use anyhow::{Context, Result};
use bpgg::backbone::{EfficientNetLite0, EfficientNetLiteConfig, FeatureExtractor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

const SIZE: usize = 256;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let weights = args
        .next()
        .context("usage: effnet_time WEIGHTS.safetensors [runs] [batch]")?;
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(10);
    let batch: usize = args.next().map(|b| b.parse()).transpose()?.unwrap_or(1);
    let device = Device::Cpu;
    let tensors = candle_core::safetensors::load(&weights, &device)?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
    let net = EfficientNetLite0::load(vb, &EfficientNetLiteConfig::default())?;
    let images = (Tensor::rand(0f32, 255f32, (batch, 3, SIZE, SIZE), &device)?).contiguous()?;
    net.forward_features(&images)?; // warm-up
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        net.forward_features(&images)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "efficientnet-lite0 forward_features {batch}x3x{SIZE}x{SIZE}: median {:.1} ms, min {:.1} ms ({runs} runs)",
        times[runs / 2],
        times[0]
    );
    Ok(())
}
