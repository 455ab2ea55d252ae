//! `bpgg bench backbone`: feature-extraction forward passes, bpgg against the runtimes a
//! PyTorch user deploys on a CPU (eager PyTorch, channels-last PyTorch, ONNX Runtime, OpenVINO;
//! `scripts/bench_backbone.py`) on the same network and weights, batch and image size.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use bpgg::backbone::synthetic_weights::synthetic_state_dict;
use bpgg::backbone::weights::StateDict;
use bpgg::backbone::{
    load_backbone, BackboneConfig, BackboneKind, FeatureExtractor, EMBEDDED_EFFICIENTNET_LITE0,
};
use candle_core::{Device, Tensor};

use super::{compute_units, json_f64, time_runs, BenchBackboneArgs, ReferenceOutcome, Timing};

/// Largest pixel value of the random input images (bpgg's backbones take `0..=255`).
const MAX_PIXEL: f32 = 255.0;
/// Smallest image side every supported backbone reduces to a non-empty stride-16 map.
const MIN_SIZE: usize = 32;
/// Milliseconds per second.
const MS: f64 = 1e3;

pub fn run(args: &BenchBackboneArgs) -> anyhow::Result<()> {
    ensure!(args.size >= MIN_SIZE, "--size must be at least {MIN_SIZE}");
    ensure!(
        args.batch.iter().all(|&b| b > 0),
        "--batch sizes must be positive"
    );
    let device = args.device.open()?;
    let threads = candle_core::utils::get_num_threads();
    println!(
        "forward to the deepest default feature layer on {0}x{0} random images; median and min \
         over {1} runs after {2} warm-up; {3} for bpgg and for every reference runtime (each \
         checked against eager PyTorch's features before it is timed)",
        args.size,
        args.repeats.max(1),
        args.warmup,
        compute_units(&device),
    );
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    for &kind in &args.backbones {
        let (config, weights) = prepare_weights(kind, dir.path())?;
        let net = load_backbone(&config, &device)?;
        for &batch in &args.batch {
            let images = Tensor::rand(0.0, MAX_PIXEL, (batch, 3, args.size, args.size), &device)?;
            let bpgg = time_runs(args.warmup, args.repeats, || {
                net.forward_features(&images)?;
                bpgg::device::synchronize(&device)?;
                Ok(())
            })?
            .per(batch);
            let reference = args.reference.run_script(
                "bench_backbone.py",
                &[
                    "--backbone".into(),
                    kind.name().into(),
                    "--weights".into(),
                    weights.display().to_string(),
                    "--batch".into(),
                    batch.to_string(),
                    "--size".into(),
                    args.size.to_string(),
                    "--repeats".into(),
                    args.repeats.max(1).to_string(),
                    "--warmup".into(),
                    args.warmup.to_string(),
                    "--threads".into(),
                    threads.to_string(),
                ],
                &device,
            );
            print_case(net.as_ref(), batch, args.size, bpgg, reference)?;
        }
    }
    Ok(())
}

/// The backbone configuration for bpgg and the same weights as a safetensors file in `dir` for
/// PyTorch: EfficientNet-Lite0's embedded trunk, or synthetic ResNet-18 weights.
pub(super) fn prepare_weights(
    kind: BackboneKind,
    dir: &Path,
) -> anyhow::Result<(BackboneConfig, PathBuf)> {
    let path = dir.join(format!("{}.safetensors", kind.name()));
    let weights = match kind {
        BackboneKind::EfficientNetLite0 => {
            std::fs::write(&path, EMBEDDED_EFFICIENTNET_LITE0)
                .with_context(|| format!("cannot write {}", path.display()))?;
            None
        }
        BackboneKind::Resnet18 => {
            let mut tensors: Vec<_> = synthetic_state_dict(&resnet18_shapes(), &Device::Cpu)?
                .into_iter()
                .collect();
            tensors.sort_by(|a, b| a.0.cmp(&b.0));
            StateDict::new(tensors)?.save_safetensors(&path)?;
            Some(path.clone())
        }
        other => bail!(
            "bench backbone times efficientnet-lite0 and resnet18 (the PyTorch reference builds \
             only those), not {other}"
        ),
    };
    let config = BackboneConfig {
        kind,
        weights,
        ..BackboneConfig::default()
    };
    Ok((config, path))
}

/// torchvision `resnet18`'s parameter and BatchNorm buffer shapes (without the integer
/// `num_batches_tracked` counters), in its own key names.
fn resnet18_shapes() -> Vec<(String, Vec<usize>)> {
    const STAGE_PLANES: [usize; 4] = [64, 128, 256, 512];
    const BLOCKS_PER_STAGE: usize = 2;
    const STEM_CHANNELS: usize = 64;
    const IMAGENET_CLASSES: usize = 1000;
    let mut shapes = vec![("conv1.weight".to_string(), vec![STEM_CHANNELS, 3, 7, 7])];
    push_batch_norm(&mut shapes, "bn1", STEM_CHANNELS);
    let mut in_channels = STEM_CHANNELS;
    for (stage, &planes) in STAGE_PLANES.iter().enumerate() {
        for block in 0..BLOCKS_PER_STAGE {
            let p = format!("layer{}.{block}", stage + 1);
            let block_in = if block == 0 { in_channels } else { planes };
            shapes.push((format!("{p}.conv1.weight"), vec![planes, block_in, 3, 3]));
            push_batch_norm(&mut shapes, &format!("{p}.bn1"), planes);
            shapes.push((format!("{p}.conv2.weight"), vec![planes, planes, 3, 3]));
            push_batch_norm(&mut shapes, &format!("{p}.bn2"), planes);
            if block_in != planes {
                shapes.push((
                    format!("{p}.downsample.0.weight"),
                    vec![planes, block_in, 1, 1],
                ));
                push_batch_norm(&mut shapes, &format!("{p}.downsample.1"), planes);
            }
        }
        in_channels = planes;
    }
    shapes.push(("fc.weight".into(), vec![IMAGENET_CLASSES, in_channels]));
    shapes.push(("fc.bias".into(), vec![IMAGENET_CLASSES]));
    shapes
}

/// A BatchNorm layer's weight, bias and running statistics, `channels` each.
fn push_batch_norm(shapes: &mut Vec<(String, Vec<usize>)>, prefix: &str, channels: usize) {
    for field in ["weight", "bias", "running_mean", "running_var"] {
        shapes.push((format!("{prefix}.{field}"), vec![channels]));
    }
}

/// The reference runtimes in the order they are printed (the keys of the script's `runtimes`).
const RUNTIMES: [&str; 4] = ["torch", "torch-channels-last", "onnxruntime", "openvino"];

/// One block per case: bpgg's time, then each reference runtime's time and its ratio, then the
/// ratio of bpgg to the fastest reference:
///
/// ```text
/// efficientnet-lite0 batch 1 256x256: bpgg 13.2 ms/img (min 12.9)
///   torch                 18.6 ms/img (min 18.1)  bpgg/this 0.71
///   openvino               2.9 ms/img (min  2.8)  bpgg/this 4.55  (max rel diff to torch 2.1e-6)
///   bpgg / fastest (openvino): 4.55
/// ```
fn print_case(
    net: &dyn FeatureExtractor,
    batch: usize,
    size: usize,
    bpgg: Timing,
    reference: ReferenceOutcome,
) -> anyhow::Result<()> {
    println!(
        "{} batch {batch} {size}x{size}: bpgg {:.1} ms/img (min {:.1})",
        net.name(),
        bpgg.median_s * MS,
        bpgg.min_s * MS
    );
    let json = match reference {
        Ok(json) => json,
        Err(reason) => {
            println!("  references skipped ({reason})");
            return Ok(());
        }
    };
    let mut fastest: Option<(&str, f64)> = None;
    for (name, result) in reference_runtimes(&json)? {
        match result {
            Ok((timing, diff, version)) => {
                println!(
                    "  {name:<20} {:>6.1} ms/img (min {:>5.1})  bpgg/this {:.2}  ({version}; \
                     max rel diff to torch {diff:.1e})",
                    timing.median_s * MS,
                    timing.min_s * MS,
                    bpgg.median_s / timing.median_s
                );
                if fastest.is_none_or(|(_, best)| timing.median_s < best) {
                    fastest = Some((name, timing.median_s));
                }
            }
            Err(reason) => println!("  {name:<20} skipped ({reason})"),
        }
    }
    match fastest {
        Some((name, best)) => println!("  bpgg / fastest ({name}): {:.2}", bpgg.median_s / best),
        None => println!("  bpgg / fastest: no reference runtime ran"),
    }
    Ok(())
}

/// A reference runtime's median/min timing, its largest relative difference to eager
/// PyTorch's features and its version; or why it was skipped.
type RuntimeResult = Result<(Timing, f64, String), String>;

/// The runtimes of the script's JSON in [`RUNTIMES`] order. A script without the `runtimes`
/// object (an older one) gives eager PyTorch from its top-level timings.
fn reference_runtimes(
    json: &serde_json::Value,
) -> anyhow::Result<Vec<(&'static str, RuntimeResult)>> {
    let Some(runtimes) = json.get("runtimes") else {
        let timing = Timing {
            median_s: json_f64(json, "median_s_per_image")?,
            min_s: json_f64(json, "min_s_per_image")?,
        };
        let version = json.get("torch").and_then(|v| v.as_str()).unwrap_or("?");
        return Ok(vec![("torch", Ok((timing, 0.0, version.to_string())))]);
    };
    let mut out = Vec::new();
    for name in RUNTIMES {
        let Some(entry) = runtimes.get(name) else {
            continue;
        };
        if let Some(reason) = entry.get("skipped").and_then(|v| v.as_str()) {
            out.push((name, Err(reason.to_string())));
            continue;
        }
        let timing = Timing {
            median_s: json_f64(entry, "median_s_per_image")?,
            min_s: json_f64(entry, "min_s_per_image")?,
        };
        let diff = json_f64(entry, "max_rel_diff")?;
        let version = entry.get("version").and_then(|v| v.as_str()).unwrap_or("?");
        out.push((name, Ok((timing, diff, version.to_string()))));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_are_read_in_order_with_skips() -> anyhow::Result<()> {
        let json: serde_json::Value = serde_json::from_str(
            r#"{"median_s_per_image": 0.02, "min_s_per_image": 0.01, "torch": "2",
                "runtimes": {
                  "openvino": {"median_s_per_image": 0.003, "min_s_per_image": 0.002,
                               "max_rel_diff": 2e-6, "version": "ov"},
                  "onnxruntime": {"skipped": "ModuleNotFoundError: onnxruntime"},
                  "torch": {"median_s_per_image": 0.02, "min_s_per_image": 0.01,
                            "max_rel_diff": 0.0, "version": "2"}}}"#,
        )?;
        let runtimes = reference_runtimes(&json)?;
        let names: Vec<_> = runtimes.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["torch", "onnxruntime", "openvino"]);
        assert!(matches!(&runtimes[1].1, Err(r) if r.contains("onnxruntime")));
        let Ok((timing, diff, version)) = &runtimes[2].1 else {
            panic!("openvino ran: {:?}", runtimes[2].1);
        };
        assert_eq!(
            (timing.median_s, *diff, version.as_str()),
            (0.003, 2e-6, "ov")
        );
        // An older script: eager PyTorch from the top-level numbers.
        let old: serde_json::Value =
            serde_json::from_str(r#"{"median_s_per_image": 0.02, "min_s_per_image": 0.01}"#)?;
        let runtimes = reference_runtimes(&old)?;
        assert_eq!(runtimes.len(), 1);
        assert!(matches!(&runtimes[0].1, Ok((t, _, _)) if t.median_s == 0.02));
        Ok(())
    }

    #[test]
    fn resnet18_shapes_match_torchvision_counts() {
        let shapes = resnet18_shapes();
        // torchvision resnet18: 62 parameters + 40 running statistics (num_batches_tracked
        // excluded), 11,689,512 parameters.
        assert_eq!(shapes.len(), 102);
        let params: usize = shapes
            .iter()
            .filter(|(n, _)| !n.contains("running_"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert_eq!(params, 11_689_512);
        assert!(shapes.contains(&("layer3.0.downsample.0.weight".into(), vec![256, 128, 1, 1])));
    }
}
