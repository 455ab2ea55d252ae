//! Command-line arguments. They turn into library configuration in `commands`, nowhere else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Few-shot anomaly localization: show bpgg a few defective parts with their defects masked and
/// a few good parts, and it tells, pixel by pixel, where new images are defective.
#[derive(Debug, Parser)]
#[command(name = "bpgg", version, about, long_about = None)]
pub struct Cli {
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score anomaly maps against ground truth (a drop-in for the MVTec AD evaluation script).
    Score(ScoreArgs),
    /// Inspect or generate data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Convert PyTorch checkpoints to safetensors, or list a weight file's tensors.
    #[command(subcommand)]
    Weights(crate::commands::weights::WeightsCommand),
    /// Time bpgg against its Python references (backbones, metrics).
    #[command(subcommand)]
    Bench(crate::commands::bench::BenchCommand),
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Folder of predictions: PRED/<category>/test/<type>/<stem>.tiff (float32; .tif and .npy too).
    #[arg(long, value_name = "PRED")]
    pub predictions: PathBuf,
    /// Root of the MVTec-layout data set holding the ground truth.
    #[arg(long, value_name = "ROOT")]
    pub data: PathBuf,
    /// Category to score (a folder under ROOT).
    #[arg(long, value_name = "C")]
    pub category: String,
    /// Also write every metric as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// FPR limit up to which the PRO curve is integrated (AUPRO is normalised by it).
    #[arg(long, default_value_t = 0.3, value_name = "F")]
    pub fpr_limit: f64,
    /// Compare at N x N: ground-truth masks are resized (nearest) to N x N and maps must be N x N.
    /// Without it, every map must have the size of its image.
    #[arg(long, value_name = "N")]
    pub size: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Report image counts, sizes, channels, mask coverage and every problem of a data set.
    Inspect(InspectArgs),
    /// Write a synthetic MVTec-layout data set (textures with scratches, cracks, blobs, stains).
    Synth(SynthArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A data-set root (holding category folders) or one category folder.
    pub path: PathBuf,
    /// Largest image (width x height) decoded; bigger declared sizes are refused as
    /// decompression bombs.
    #[arg(long, default_value_t = bpgg::data::image_io::DEFAULT_MAX_PIXELS, value_name = "PIXELS")]
    pub max_pixels: u64,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output root; the category folder is written under it.
    pub out: PathBuf,
    /// Category folder name.
    #[arg(long, default_value = "synthetic_tile")]
    pub category: String,
    /// Image side in pixels.
    #[arg(long, default_value_t = 128)]
    pub size: u32,
    /// Images in train/good.
    #[arg(long, default_value_t = 20)]
    pub train_good: usize,
    /// Images in test/good.
    #[arg(long, default_value_t = 8)]
    pub test_good: usize,
    /// Images per defect type (blob, crack, scratch, stain).
    #[arg(long, default_value_t = 8)]
    pub per_type: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}
