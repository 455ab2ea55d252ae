//! `bpgg bench parity`: the same work on the CPU and on `--device`, compared, with the time each
//! took: the backbones' feature maps, the maps and image scores of fitted models (every scoring,
//! fitted on either device, read from the model file onto the other), and a short training
//! run's per-episode losses. The check of a GPU build (`scripts/gpu_check.sh`); with
//! `--device cpu` it compares the CPU with itself (every difference must then be zero).
//!
//! Criteria: features within 1e-3 of their largest value (as `bench backbone`'s reference
//! runtimes), maps within 1e-3 (they are probabilities), image scores ranked alike (pairs
//! closer than 1e-3 may swap), thresholds within 1e-3, training losses within 1e-2 relative at
//! every episode (differences in `f32` rounding grow through the optimiser's steps). A failed
//! criterion makes the command fail after printing everything.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use bpgg::backbone::{load_backbone, BackboneConfig, BackboneKind};
use bpgg::data::image_io::load_rgb;
use bpgg::data::{
    sample_episode, write_synthetic_dataset, DefectSelection, EpisodeConfig, ImageLimits,
    MvtecCategory, SynthConfig,
};
use bpgg::device::device_name;
use bpgg::model::{fit, Encoder, FittedModel, InputSize, ModelConfig, Scoring, SupportSet};
use bpgg::train::{train, EpisodeShape, TrainConfig, TrainEvent, TrainSource};
use candle_core::{Device, Tensor};
use clap::Args;
use serde_json::json;

use super::backbone::prepare_weights;
use crate::device_args::DeviceArgs;

/// Largest feature difference, relative to the largest feature magnitude of the layer.
const FEATURE_TOLERANCE: f32 = 1e-3;
/// Largest map (and threshold) difference; maps are defect probabilities in `0..=1`.
const MAP_TOLERANCE: f32 = 1e-3;
/// Largest relative difference of a training episode's loss.
const LOSS_TOLERANCE: f64 = 1e-2;
/// Largest pixel value of the random images the features are compared on.
const MAX_PIXEL: f32 = 255.0;

#[derive(Debug, Args)]
pub struct BenchParityArgs {
    /// MVTec-layout root (with --category) to fit and train on; default: a synthetic data set
    /// written to a temporary folder.
    #[arg(long, value_name = "ROOT", requires = "category")]
    pub data: Option<PathBuf>,
    /// Category under ROOT.
    #[arg(long, value_name = "C", requires = "data")]
    pub category: Option<String>,
    /// Model input side in pixels.
    #[arg(long, default_value_t = 256, value_name = "SIZE")]
    pub size: u32,
    /// Query images scored on both devices (spread over the episode's queries).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub queries: usize,
    /// Images per batch when features are compared.
    #[arg(long, default_value_t = 4, value_name = "B")]
    pub batch: usize,
    /// Training episodes run on both devices (0: no training check).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub episodes: usize,
    /// Backbones whose features are compared (resnet18 with synthetic weights).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "efficientnet-lite0,resnet18"
    )]
    pub backbones: Vec<BackboneKind>,
    /// Also write every figure as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The failed criteria, in order.
#[derive(Debug, Default)]
struct Verdict {
    failures: Vec<String>,
}

impl Verdict {
    /// Records `what` as failed unless `ok`; returns the word to print.
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) -> &'static str {
        if ok {
            "ok"
        } else {
            self.failures.push(what());
            "FAILED"
        }
    }
}

pub fn run(args: &BenchParityArgs) -> anyhow::Result<()> {
    ensure!(
        args.queries > 0 && args.batch > 0,
        "--queries and --batch must be positive"
    );
    let device = args.device.open()?;
    let name = device_name(&device);
    println!(
        "parity of {name} with the cpu: features within {FEATURE_TOLERANCE:.0e} of their largest \
         value, maps and thresholds within {MAP_TOLERANCE:.0e}, image scores ranked alike, \
         training losses within {LOSS_TOLERANCE:.0e} relative"
    );
    let mut verdict = Verdict::default();
    let features = compare_features(args, &device, &mut verdict)?;

    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let (category, train_source) = match (&args.data, &args.category) {
        (Some(root), Some(c)) => (
            MvtecCategory::open(&root.join(c))?,
            TrainSource {
                dir: root.join(c),
                base_types: Vec::new(),
                val_types: Vec::new(),
            },
        ),
        _ => synthetic_category(dir.path(), args.size)?,
    };
    let models = compare_models(args, &category, &device, &mut verdict)?;
    let training = if args.episodes > 0 {
        Some(compare_training(
            args,
            train_source,
            dir.path(),
            &device,
            &mut verdict,
        )?)
    } else {
        None
    };

    let passed = verdict.failures.is_empty();
    if let Some(path) = &args.json {
        let report = json!({
            "device": name,
            "category": category.dir.display().to_string(),
            "image_size": args.size,
            "features": features,
            "models": models,
            "training": training,
            "passed": passed,
            "failures": verdict.failures,
        });
        let text = serde_json::to_string_pretty(&report)?;
        bpgg::io::write_atomic(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    if !passed {
        bail!("parity failed: {}", verdict.failures.join("; "));
    }
    println!("parity: every criterion met");
    Ok(())
}

/// Each backbone's feature maps of one random batch on the CPU and on `device`.
fn compare_features(
    args: &BenchParityArgs,
    device: &Device,
    verdict: &mut Verdict,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let size = args.size as usize;
    let images = Tensor::rand(0f32, MAX_PIXEL, (args.batch, 3, size, size), &Device::Cpu)?;
    let on_device = images.to_device(device)?;
    let mut out = Vec::new();
    for &kind in &args.backbones {
        let (config, _) = prepare_weights(kind, dir.path())?;
        let (cpu_maps, cpu_s) =
            timed(|| Ok(load_backbone(&config, &Device::Cpu)?.forward_features(&images)?))?;
        let net = load_backbone(&config, device)?;
        net.forward_features(&on_device)?; // warm-up: kernels load on first use
        bpgg::device::synchronize(device)?;
        let (device_maps, device_s) = timed(|| {
            let maps = net.forward_features(&on_device)?;
            bpgg::device::synchronize(device)?;
            Ok(maps)
        })?;
        for (a, b) in cpu_maps.maps.iter().zip(&device_maps.maps) {
            let largest = max_abs(&a.tensor)?;
            let diff = max_abs_diff(&a.tensor, &b.tensor)?;
            let relative = diff / largest.max(f32::MIN_POSITIVE);
            let word = verdict.check(relative <= FEATURE_TOLERANCE, || {
                format!("{kind} {} features {relative:.1e} apart", a.name)
            });
            println!(
                "features {kind} {} {:?}: max |cpu - device| {diff:.2e} ({relative:.1e} of the \
                 largest {largest:.3})  {word}",
                a.name,
                a.tensor.dims()
            );
            out.push(json!({
                "backbone": kind.name(), "layer": a.name, "shape": a.tensor.dims(),
                "max_abs_diff": diff, "max_abs": largest, "relative": relative,
            }));
        }
        println!(
            "  forward of {} images: cpu {:.1} ms, {} {:.1} ms (after one warm-up pass; the \
             CPU's includes loading the weights)",
            args.batch,
            cpu_s * 1e3,
            device_name(device),
            device_s * 1e3
        );
    }
    Ok(out)
}

/// A synthetic category (all four defect kinds) and a training source on it: three kinds to
/// train on, `stain` to validate on.
fn synthetic_category(dir: &Path, size: u32) -> anyhow::Result<(MvtecCategory, TrainSource)> {
    let category_dir = write_synthetic_dataset(
        dir,
        &SynthConfig {
            category: "parity".into(),
            size,
            train_good: 6,
            test_good: 8,
            per_type: 8,
            ..SynthConfig::default()
        },
    )?;
    let source = TrainSource {
        dir: category_dir.clone(),
        base_types: vec!["blob".into(), "crack".into(), "scratch".into()],
        val_types: vec!["stain".into()],
    };
    Ok((MvtecCategory::open(&category_dir)?, source))
}

/// For every scoring: models fitted on the CPU and on `device`, each also read from its model
/// file onto the other device, predict the same queries as the CPU-fitted model on the CPU.
fn compare_models(
    args: &BenchParityArgs,
    category: &MvtecCategory,
    device: &Device,
    verdict: &mut Verdict,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let limits = ImageLimits::default();
    let episode = sample_episode(
        category,
        &DefectSelection::AllTypes,
        &EpisodeConfig {
            defect_shots: 5,
            normal_shots: 5,
            seed: 0,
        },
    )?;
    let (supports, warnings) =
        SupportSet::load(&episode.defect_support, &episode.normal_support, limits)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let step = (episode.queries.len() / args.queries).max(1);
    let queries = episode
        .queries
        .iter()
        .step_by(step)
        .take(args.queries)
        .map(|s| load_rgb(&s.image, limits))
        .collect::<bpgg::Result<Vec<_>>>()?;
    println!(
        "models of {} on {} defect + {} normal supports (episode seed 0), {} queries at {} px",
        category.name,
        supports.defects.len(),
        supports.normals.len(),
        queries.len(),
        args.size
    );
    let backbone = BackboneConfig::default();
    let cpu = Device::Cpu;
    let cpu_encoder = Encoder::new(&backbone, &cpu)?;
    let encoder = Encoder::new(&backbone, device)?;
    let name = device_name(device);
    let mut out = Vec::new();
    for scoring in [Scoring::Bpgg, Scoring::Knn, Scoring::Hybrid] {
        let config = ModelConfig {
            size: InputSize::Exact {
                width: args.size,
                height: args.size,
            },
            scoring,
            ..ModelConfig::default()
        };
        let reference = fit(&cpu_encoder, &supports, &config)?;
        let (expected, cpu_s) = timed(|| Ok(reference.predict_scored(&cpu_encoder, &queries)?))?;
        let (expected, expected_scores): (Vec<_>, Vec<f32>) = expected.into_iter().unzip();
        let fitted_here = fit(&encoder, &supports, &config)?;
        let file = Path::new("<model bytes>");
        let cpu_file_here = FittedModel::from_bytes(file, &reference.to_bytes()?, device)?;
        let device_file_on_cpu = FittedModel::from_bytes(file, &fitted_here.to_bytes()?, &cpu)?;
        let threshold_gap = (fitted_here.threshold - reference.threshold).abs();
        let word = verdict.check(threshold_gap <= MAP_TOLERANCE, || {
            format!("{scoring} thresholds {threshold_gap:.1e} apart")
        });
        println!(
            "model {scoring}: threshold cpu {:.5}, {name} {:.5}  {word}",
            reference.threshold, fitted_here.threshold
        );
        for (what, model, on) in [
            (
                format!("fitted on {name}, predicted on {name}"),
                &fitted_here,
                &encoder,
            ),
            (
                format!("fitted on cpu, predicted on {name}"),
                &cpu_file_here,
                &encoder,
            ),
            (
                format!("fitted on {name}, predicted on cpu"),
                &device_file_on_cpu,
                &cpu_encoder,
            ),
        ] {
            model.predict(on, &queries[..1])?; // warm-up
            let (scored, seconds) = timed(|| Ok(model.predict_scored(on, &queries)?))?;
            let (maps, scores): (Vec<_>, Vec<f32>) = scored.into_iter().unzip();
            let diff = expected
                .iter()
                .zip(&maps)
                .flat_map(|(a, b)| a.data.iter().zip(&b.data))
                .map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() })
                .fold(
                    0f32,
                    |w, d| if d.is_nan() { f32::INFINITY } else { w.max(d) },
                );
            let ranked_alike = same_ranking(&expected_scores, &scores, MAP_TOLERANCE);
            let word = verdict.check(diff <= MAP_TOLERANCE && ranked_alike, || {
                format!("{scoring} {what}: maps {diff:.1e} apart, ranking equal {ranked_alike}")
            });
            println!(
                "  {what}: maps {diff:.2e} from cpu's, image-score ranking {}; {:.1} ms/image \
                 (cpu {:.1})  {word}",
                if ranked_alike { "equal" } else { "DIFFERENT" },
                seconds * 1e3 / queries.len() as f64,
                cpu_s * 1e3 / queries.len() as f64,
            );
            out.push(json!({
                "scoring": scoring.name(), "case": what, "map_max_abs_diff": diff,
                "ranking_equal": ranked_alike, "ms_per_image": seconds * 1e3 / queries.len() as f64,
                "cpu_ms_per_image": cpu_s * 1e3 / queries.len() as f64,
                "threshold_cpu": reference.threshold, "threshold_device": fitted_here.threshold,
            }));
        }
    }
    Ok(out)
}

/// The same short training run (same seed, same episodes) on the CPU and on `device`.
fn compare_training(
    args: &BenchParityArgs,
    source: TrainSource,
    dir: &Path,
    device: &Device,
    verdict: &mut Verdict,
) -> anyhow::Result<serde_json::Value> {
    let config = TrainConfig {
        sources: vec![source],
        image_size: args.size,
        episode: EpisodeShape {
            shots: 2,
            normal_shots: 2,
            queries: 2,
            normal_queries: 1,
        },
        episodes: args.episodes,
        checkpoint_every: args.episodes,
        val_every: args.episodes,
        val_episodes: 4,
        ..TrainConfig::default()
    };
    let run = |on: &Device, out: &str| -> anyhow::Result<(Vec<f32>, f64, f64)> {
        let mut losses = Vec::with_capacity(args.episodes);
        let outcome = train(
            &config,
            &dir.join(out),
            false,
            ImageLimits::default(),
            on,
            |e| {
                if let TrainEvent::Step { loss, .. } = e {
                    losses.push(loss);
                }
                ControlFlow::Continue(())
            },
        )?;
        let val_ap = outcome.state.history.last().map_or(f64::NAN, |h| h.val_ap);
        Ok((losses, outcome.episodes_per_second, val_ap))
    };
    let (cpu_losses, cpu_rate, cpu_ap) = run(&Device::Cpu, "train-cpu")?;
    let (losses, rate, ap) = run(device, "train-device")?;
    let relative: Vec<f64> = cpu_losses
        .iter()
        .zip(&losses)
        .map(|(&a, &b)| {
            let (a, b) = (f64::from(a), f64::from(b));
            if a == b {
                0.0
            } else {
                (a - b).abs() / a.abs().max(1e-12)
            }
        })
        .collect();
    let worst =
        relative.iter().copied().fold(
            0f64,
            |w, d| if d.is_nan() { f64::INFINITY } else { w.max(d) },
        );
    let complete = losses.len() == args.episodes && cpu_losses.len() == args.episodes;
    let word = verdict.check(complete && worst <= LOSS_TOLERANCE, || {
        format!("training losses {worst:.1e} apart (relative)")
    });
    let name = device_name(device);
    println!(
        "training {} episodes (2 + 2 supports, 2 + 1 queries, seed {}): losses at most {worst:.1e} \
         apart (relative)  {word}",
        args.episodes, config.seed
    );
    let show = |l: &[f32]| {
        l.iter()
            .map(|v| format!("{v:.4}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("  cpu losses:   {}", show(&cpu_losses));
    println!("  {name} losses: {}", show(&losses));
    println!(
        "  validation pixel AP after training: cpu {cpu_ap:.4}, {name} {ap:.4}; training steps: \
         cpu {cpu_rate:.2} episodes/s, {name} {rate:.2} episodes/s"
    );
    Ok(json!({
        "episodes": args.episodes, "cpu_losses": cpu_losses, "device_losses": losses,
        "max_relative_diff": worst, "cpu_val_ap": cpu_ap, "device_val_ap": ap,
        "cpu_episodes_per_s": cpu_rate, "device_episodes_per_s": rate,
    }))
}

/// Whether `b` orders every pair that `a` separates by more than `tie` the same way.
fn same_ranking(a: &[f32], b: &[f32], tie: f32) -> bool {
    a.len() == b.len()
        && (0..a.len()).all(|i| (0..a.len()).all(|j| a[i] - a[j] <= tie || b[i] > b[j]))
}

/// `f`'s result and the seconds it took.
fn timed<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, f64)> {
    let start = Instant::now();
    let value = f()?;
    Ok((value, start.elapsed().as_secs_f64()))
}

/// The largest `|x|` of a tensor on any device.
fn max_abs(t: &Tensor) -> anyhow::Result<f32> {
    Ok(t.abs()?
        .flatten_all()?
        .max(0)?
        .to_device(&Device::Cpu)?
        .to_scalar::<f32>()?)
}

/// The largest `|a - b|` of two tensors of one shape on any devices (compared on the CPU); a
/// NaN is an infinite difference.
fn max_abs_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
    ensure!(
        a.dims() == b.dims(),
        "shapes {:?} and {:?}",
        a.dims(),
        b.dims()
    );
    let host = |t: &Tensor| -> anyhow::Result<Vec<f32>> {
        Ok(t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let (a, b) = (host(a)?, host(b)?);
    Ok(a.iter()
        .zip(&b)
        .map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() })
        .fold(
            0f32,
            |w, d| if d.is_nan() { f32::INFINITY } else { w.max(d) },
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_ignores_only_near_ties() {
        assert!(same_ranking(&[0.1, 0.5, 0.9], &[0.2, 0.6, 0.7], 1e-3));
        assert!(!same_ranking(&[0.1, 0.5, 0.9], &[0.2, 0.8, 0.7], 1e-3));
        assert!(same_ranking(&[0.5, 0.5004], &[0.5004, 0.5], 1e-3));
        assert!(!same_ranking(&[0.5, 0.51], &[0.51, 0.5], 1e-3));
        assert!(!same_ranking(&[0.5], &[0.5, 0.6], 1e-3));
    }

    #[test]
    fn differences_count_nan_as_infinite() -> anyhow::Result<()> {
        let cpu = Device::Cpu;
        let a = Tensor::new(&[1f32, f32::NAN, 3.0], &cpu)?;
        let b = Tensor::new(&[1f32, 2.0, 3.5], &cpu)?;
        assert_eq!(max_abs_diff(&a, &b)?, f32::INFINITY);
        assert_eq!(max_abs_diff(&b, &b)?, 0.0);
        assert_eq!(max_abs(&b)?, 3.5);
        Ok(())
    }
}
