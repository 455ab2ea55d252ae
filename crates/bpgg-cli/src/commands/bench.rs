//! `bpgg bench`: bpgg's speed next to a Python reference measured in the same run.
//!
//! Each case reports the median (and the minimum) of several timed runs after warm-up, for
//! bpgg and for the reference, and their ratio (`bpgg / reference`: below 1 means bpgg is
//! faster). Numbers are only meaningful from a release build (`cargo build --release`), on a
//! quiet machine: the load average is printed with them.
//!
//! With `--device cuda[:N]` bpgg runs on that GPU (its clock stops only when the GPU is done:
//! [`bpgg::device::synchronize`]) and the PyTorch references run on the same GPU
//! (`--device cuda:N` to the script); CPU-only reference runtimes say they were skipped.

mod backbone;
mod knn;
mod metrics;
mod parity;
mod predict;
mod serve;
mod train;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Context;
use bpgg::backbone::BackboneKind;
use bpgg::device::device_name;
use candle_core::Device;
use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time backbone forward passes (feature extraction), bpgg against PyTorch.
    Backbone(BenchBackboneArgs),
    /// Time the k-NN search of `knn` / `hybrid` scoring (query pixels against the normal
    /// memory bank) for several numbers of normal images, bpgg against PyTorch.
    Knn(BenchKnnArgs),
    /// Time the metrics (pixel AUROC, AUPRO, AP, F1-max, image AUROC), bpgg against the
    /// scikit-learn / MVTec-method reference (scripts/metrics_reference.py).
    Metrics(BenchMetricsArgs),
    /// Time one meta-training step (bidirectional loss, backward, AdamW), bpgg against
    /// PyTorch.
    Train(BenchTrainArgs),
    /// Time end-to-end prediction (decode, resize, backbone, prototype scoring, upsample and
    /// blur) on a synthetic data set, bpgg against PyTorch (scripts/bench_predict.py).
    Predict(BenchPredictArgs),
    /// Compare --device with the CPU on the same work: backbone features, the maps and image
    /// scores of fitted models, a short training run's losses (fails when they differ).
    Parity(parity::BenchParityArgs),
    /// Load-test `bpgg serve`: a server on a free loopback port, a model fitted over HTTP,
    /// concurrent clients sending predicts; requests/s, latency percentiles, errors and the
    /// server's memory, beside `bpgg predict` on the same images.
    Serve(serve::BenchServeArgs),
}

/// Whether to time the Python reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReferenceMode {
    /// Run it when python3 and its packages are there; otherwise say it was skipped.
    Auto,
    /// bpgg only.
    None,
}

/// Options shared by the bench commands.
#[derive(Debug, Args)]
pub struct ReferenceArgs {
    /// Also time the Python reference (`auto`) or not (`none`).
    #[arg(long, value_enum, default_value_t = ReferenceMode::Auto)]
    pub reference: ReferenceMode,
    /// The Python interpreter for the reference.
    #[arg(long, default_value = "python3", value_name = "EXE")]
    pub python: String,
    /// Folder holding the reference scripts (default: `scripts/` of the working directory or of
    /// the source tree bpgg was built from).
    #[arg(long, value_name = "DIR")]
    pub scripts: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchBackboneArgs {
    /// Backbones to time (efficientnet-lite0 with its embedded weights; resnet18 with synthetic
    /// weights: timings do not depend on weight values).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "efficientnet-lite0,resnet18"
    )]
    pub backbones: Vec<BackboneKind>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batch: Vec<usize>,
    /// Image side in pixels.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Timed forward passes per case.
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
    /// Untimed forward passes before them.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[command(flatten)]
    pub device: crate::device_args::DeviceArgs,
    #[command(flatten)]
    pub reference: ReferenceArgs,
}

#[derive(Debug, Args)]
pub struct BenchKnnArgs {
    /// Numbers of normal images in the bank (every pixel of each).
    #[arg(long, value_delimiter = ',', default_value = "1,5,20,200")]
    pub normal: Vec<usize>,
    /// Query images per timed run.
    #[arg(long, default_value_t = 4)]
    pub queries: usize,
    /// Feature channels (152: EfficientNet-Lite0's default layers).
    #[arg(long, default_value_t = 152)]
    pub channels: usize,
    /// Feature grid side (32 for 256 px images at stride 8).
    #[arg(long, default_value_t = 32)]
    pub grid: usize,
    /// Timed runs per bank size.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Untimed runs before them.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    #[command(flatten)]
    pub device: crate::device_args::DeviceArgs,
    #[command(flatten)]
    pub reference: ReferenceArgs,
}

/// The scorings `bench predict` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchScoring {
    /// Prototype scoring (the PyTorch reference does the same work).
    Bpgg,
    /// Prototypes and the k-NN distance to the normal supports (bpgg only: the reference
    /// implements prototype scoring).
    Hybrid,
}

#[derive(Debug, Args)]
pub struct BenchPredictArgs {
    /// Query images per pass.
    #[arg(long, default_value_t = 32)]
    pub images: usize,
    /// How the model scores pixels.
    #[arg(long, value_enum, default_value_t = BenchScoring::Bpgg)]
    pub scoring: BenchScoring,
    /// Normal support images of the hybrid model (its k-NN memory bank).
    #[arg(long, default_value_t = 5)]
    pub normal_shots: usize,
    /// Side of the synthetic PNGs in pixels (they are resized to the model's 256).
    #[arg(long, default_value_t = 512)]
    pub source_size: u32,
    /// Images per `predict` batch (as `bpgg predict --batch`).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Timed passes over all images.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Untimed passes before them.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    #[command(flatten)]
    pub device: crate::device_args::DeviceArgs,
    #[command(flatten)]
    pub reference: ReferenceArgs,
}

#[derive(Debug, Args)]
pub struct BenchMetricsArgs {
    /// Number of maps in the test set.
    #[arg(long, default_value_t = 100)]
    pub maps: usize,
    /// Map side in pixels.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Timed evaluations.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Seed of the random maps.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub reference: ReferenceArgs,
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// Feature channels (152: EfficientNet-Lite0's default layers).
    #[arg(long, default_value_t = 152)]
    pub channels: usize,
    /// Head width.
    #[arg(long, default_value_t = bpgg::model::DEFAULT_HEAD_HIDDEN)]
    pub hidden: usize,
    /// Feature grid side (32 for 256 px images at stride 8).
    #[arg(long, default_value_t = 32)]
    pub grid: usize,
    #[arg(long, default_value_t = 5)]
    pub shots: usize,
    #[arg(long, default_value_t = 5)]
    pub normal_shots: usize,
    #[arg(long, default_value_t = 2)]
    pub queries: usize,
    #[arg(long, default_value_t = 1)]
    pub normal_queries: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    pub repeats: usize,
    /// Untimed steps before them.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    #[command(flatten)]
    pub device: crate::device_args::DeviceArgs,
    #[command(flatten)]
    pub reference: ReferenceArgs,
}

/// What the peak RSS printed after a Python-referenced bench covers.
const PYTHON_REFERENCE: &str = "the Python reference runs in its own process";

/// Runs a `bpgg bench` subcommand.
pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    println!("load average {} (1, 5, 15 min)", load_average());
    let whose = match &command {
        BenchCommand::Serve(_) => "the bench's clients and library loop; the server's is above",
        BenchCommand::Parity(_) => "the CPU and --device runs, both in this process",
        _ => PYTHON_REFERENCE,
    };
    match command {
        BenchCommand::Backbone(args) => backbone::run(&args)?,
        BenchCommand::Knn(args) => knn::run(&args)?,
        BenchCommand::Metrics(args) => metrics::run(&args)?,
        BenchCommand::Train(args) => train::run(&args)?,
        BenchCommand::Predict(args) => predict::run(&args)?,
        BenchCommand::Parity(args) => parity::run(&args)?,
        BenchCommand::Serve(args) => serve::run(&args)?,
    }
    println!("load average {} (1, 5, 15 min)", load_average());
    match peak_rss_kib() {
        Some(kib) => println!(
            "peak RSS of bpgg {:.1} MiB (VmHWM; {whose})",
            kib as f64 / 1024.0
        ),
        None => println!("peak RSS unknown (no /proc/self/status)"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Median and minimum of a set of timings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub median_s: f64,
    pub min_s: f64,
}

impl Timing {
    /// Median (mean of the middle two for an even count) and minimum; `None` when empty.
    pub fn of(samples: &[f64]) -> Option<Timing> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median_s = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Timing {
            median_s,
            min_s: sorted[0],
        })
    }

    /// Both values divided by `n` (per image from per batch).
    pub fn per(self, n: usize) -> Timing {
        let n = n.max(1) as f64;
        Timing {
            median_s: self.median_s / n,
            min_s: self.min_s / n,
        }
    }
}

/// Runs `f` `warmup` times untimed, then `repeats` (at least once) timed.
pub fn time_runs(
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Timing> {
    for _ in 0..warmup {
        f()?;
    }
    let mut samples = Vec::with_capacity(repeats.max(1));
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed().as_secs_f64());
    }
    Ok(Timing::of(&samples).expect("at least one sample"))
}

/// A Python reference run: the JSON it printed, or why there is none.
pub type ReferenceOutcome = Result<serde_json::Value, String>;

impl ReferenceArgs {
    /// Runs `python SCRIPT ARGS...` and parses the JSON object it prints on its last stdout
    /// line. `Err` holds a one-line reason to print (reference disabled, no python, a missing
    /// package, a failing script): the reference is optional, bpgg's numbers stand alone.
    /// Off the CPU the script gets `--device cuda:N` after `args`, to run on bpgg's GPU.
    pub fn run_script(&self, script: &str, args: &[String], device: &Device) -> ReferenceOutcome {
        if self.reference == ReferenceMode::None {
            return Err("--reference none".into());
        }
        let path = self.script_path(script)?;
        let mut command = Command::new(&self.python);
        command.arg(&path).args(args);
        if !device.is_cpu() {
            command.arg(format!("--device={}", device_name(device)));
        }
        let output = command
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.python))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            return Err(format!(
                "{} {} failed ({}): {}",
                self.python,
                path.display(),
                output.status,
                last.unwrap_or("no message")
            ));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
        last.and_then(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| format!("{} printed no JSON object", path.display()))
    }

    /// `scripts/<name>` in `--scripts`, the working directory or the source tree.
    fn script_path(&self, name: &str) -> Result<PathBuf, String> {
        let source_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts");
        let candidates: Vec<PathBuf> = match &self.scripts {
            Some(dir) => vec![dir.join(name)],
            None => vec![Path::new("scripts").join(name), source_tree.join(name)],
        };
        candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| format!("{name} not found (looked for {})", show(&candidates)))
    }
}

fn show(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the timed work runs, for a benchmark's header: `2 threads` on the CPU, `cuda:0`.
pub fn compute_units(device: &Device) -> String {
    if device.is_cpu() {
        format!("{} threads", candle_core::utils::get_num_threads())
    } else {
        device_name(device)
    }
}

/// A number from a reference's JSON object, with the key in the error.
pub fn json_f64(value: &serde_json::Value, key: &str) -> anyhow::Result<f64> {
    value
        .get(key)
        .and_then(serde_json::Value::as_f64)
        .with_context(|| format!("reference output has no number `{key}`: {value}"))
}

/// The 1, 5 and 15 minute load averages, or `unknown`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The process's peak resident set size (`VmHWM` of `/proc/self/status`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_takes_median_and_min() {
        let t = Timing::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((t.median_s, t.min_s), (2.0, 1.0));
        let t = Timing::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().per(2);
        assert_eq!((t.median_s, t.min_s), (1.25, 0.5));
        assert_eq!(Timing::of(&[]), None);
    }
}
