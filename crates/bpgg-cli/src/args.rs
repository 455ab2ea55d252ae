//! Command-line arguments. They turn into library configuration in `commands`, nowhere else.

use std::path::PathBuf;

use bpgg::data::{EpisodeConfig, SynthConfig};
use bpgg::eval::EvalConfig;
use bpgg::train::TrainConfig;
use bpgg_serve::ServeConfig;
use clap::{Args, Parser, Subcommand};

use crate::device_args::DeviceArgs;
use crate::model_args::BackboneArgs;

/// Few-shot anomaly localization: show bpgg a few defective parts with their defects masked and
/// a few good parts, and it tells, pixel by pixel, where new images are defective.
#[derive(Debug, Parser)]
#[command(name = "bpgg", version, about, long_about = None)]
pub struct Cli {
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Log what is loaded to stderr (-v), and timings (-vv).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

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
    /// Fit a model from a few defect images with masks and a few normal images.
    Fit(FitArgs),
    /// Localize defects in new images with a fitted model.
    Predict(PredictArgs),
    /// Evaluate few-shot localization on an MVTec-layout category (episodes over seeds).
    Eval(EvalArgs),
    /// Synthetic data → fit → predict → eval, in one command.
    Demo(DemoArgs),
    /// Meta-train a projection head on base defect types (episodes, bidirectional loss).
    Train(TrainArgs),
    /// Convert PyTorch checkpoints to safetensors, or list a weight file's tensors.
    #[command(subcommand)]
    Weights(crate::commands::weights::WeightsCommand),
    /// Time bpgg against its Python references (backbones, predict, training step, metrics),
    /// and the service under load.
    #[command(subcommand)]
    Bench(crate::commands::bench::BenchCommand),
    /// Run the HTTP service: projects (images, masks, models) in a data dir, fit and predict
    /// over HTTP (see /v1/openapi.json).
    Serve(ServeArgs),
}

/// `bpgg serve`. Every default is `ServeConfig::default()`'s.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Folder of the project store (SQLite and files), created if missing.
    #[arg(long, default_value = bpgg_serve::config::DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0: any free port). Anything but loopback needs --token.
    #[arg(long, default_value = bpgg_serve::config::DEFAULT_BIND, value_name = "ADDR")]
    pub bind: String,
    /// Bearer token every /v1 route and /metrics require (prefer the environment variable: a
    /// command line is visible to other users of the machine).
    #[arg(long, env = "BPGG_TOKEN", hide_env_values = true, value_name = "T")]
    pub token: Option<String>,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, default_value_t = ServeConfig::default().max_body_bytes, value_name = "BYTES")]
    pub max_body: usize,
    #[command(flatten)]
    pub limits: ImageLimitArgs,
    /// Requests with CPU work (decode, fit, predict) queued or running at once; one more is
    /// answered 503 with Retry-After.
    #[arg(long, default_value_t = ServeConfig::default().queue_depth, value_name = "N")]
    pub queue: usize,
    /// Longest time from a request's headers to its answer, in seconds (then 503).
    #[arg(
        long,
        default_value_t = ServeConfig::default().request_timeout.as_secs(),
        value_name = "S"
    )]
    pub request_timeout: u64,
    /// Threads running forward passes and fits (each pass already uses every core).
    #[arg(long, default_value_t = ServeConfig::default().workers, value_name = "N")]
    pub workers: usize,
    /// Largest number of concurrent predicts of one model scored in one forward pass.
    #[arg(long, default_value_t = ServeConfig::default().max_batch, value_name = "N")]
    pub max_batch: usize,
    /// Open connections served at once.
    #[arg(long, default_value_t = ServeConfig::default().max_connections, value_name = "N")]
    pub max_connections: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Start with a demo project made from synthetic data (defect images with masks, good
    /// images), already fitted, and print the folder of new images to check in the studio.
    /// Kept in the data dir; a second start reuses it.
    #[arg(long)]
    pub demo: bool,
}

impl ServeArgs {
    /// The service's configuration (validated when the server starts).
    pub fn to_config(&self) -> anyhow::Result<ServeConfig> {
        use std::net::ToSocketAddrs;
        let bind = self
            .bind
            .to_socket_addrs()
            .map_err(|e| anyhow::anyhow!("--bind {}: {e}", self.bind))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("--bind {}: no address", self.bind))?;
        Ok(ServeConfig {
            data_dir: self.data_dir.clone(),
            bind,
            token: self.token.clone().filter(|t| !t.is_empty()),
            max_body_bytes: self.max_body,
            max_pixels: self.limits.max_pixels,
            queue_depth: self.queue,
            request_timeout: std::time::Duration::from_secs(self.request_timeout),
            max_batch: self.max_batch,
            workers: self.workers,
            max_connections: self.max_connections,
            device: self.device.device,
            ..ServeConfig::default()
        })
    }
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
    #[arg(long, default_value_t = bpgg_metrics::DEFAULT_FPR_LIMIT, value_name = "F")]
    pub fpr_limit: f64,
    /// Compare at N x N: ground-truth masks are resized (nearest) to N x N and maps must be N x N.
    /// Without it, every map must have the size of its image.
    #[arg(long, value_name = "N")]
    pub size: Option<u32>,
    #[command(flatten)]
    pub limits: ImageLimitArgs,
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
    #[command(flatten)]
    pub limits: ImageLimitArgs,
}

/// Decoding limits of every command that reads images.
#[derive(Debug, Args)]
pub struct ImageLimitArgs {
    /// Largest image (width x height, in pixels) decoded; bigger declared sizes are refused as
    /// decompression bombs. Raise it for genuine large images.
    #[arg(long, default_value_t = bpgg::data::image_io::DEFAULT_MAX_PIXELS, value_name = "PIXELS")]
    pub max_pixels: u64,
}

impl Default for ImageLimitArgs {
    fn default() -> Self {
        Self {
            max_pixels: bpgg::data::image_io::DEFAULT_MAX_PIXELS,
        }
    }
}

impl ImageLimitArgs {
    /// The library's decoding limits.
    pub fn to_limits(&self) -> bpgg::data::ImageLimits {
        bpgg::data::ImageLimits {
            max_pixels: self.max_pixels,
        }
    }
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output root; the category folder is written under it.
    pub out: PathBuf,
    /// Category folder name.
    #[arg(long, default_value_t = SynthConfig::default().category)]
    pub category: String,
    /// Image side in pixels.
    #[arg(long, default_value_t = SynthConfig::default().size)]
    pub size: u32,
    /// Images in train/good.
    #[arg(long, default_value_t = SynthConfig::default().train_good)]
    pub train_good: usize,
    /// Images in test/good.
    #[arg(long, default_value_t = SynthConfig::default().test_good)]
    pub test_good: usize,
    /// Images per defect type (see --kinds).
    #[arg(long, default_value_t = SynthConfig::default().per_type)]
    pub per_type: usize,
    /// Defect types: `classic` (blob, crack, scratch, stain), `all` (also fold, pits,
    /// smudge), or a comma-separated list.
    #[arg(long, default_value = "classic", value_name = "KINDS")]
    pub kinds: String,
    /// Surface texture: gratings, brushed, weave, grain, dimples, smooth, or `random` (drawn
    /// from the seed and the category name).
    #[arg(long, default_value = "gratings", value_name = "NAME")]
    pub texture: String,
    /// Defect size and contrast variety: each defect's size is scaled by a factor in [1/V, V]
    /// and its contrast by one in [1/V, 1] (1: none).
    #[arg(long, default_value_t = SynthConfig::default().variety, value_name = "V")]
    pub variety: f32,
    /// Write this many categories, `<category>_000`, `<category>_001`, ... (each with its own
    /// surface; use with --texture random for many products).
    #[arg(long, value_name = "N")]
    pub categories: Option<usize>,
    /// Size of the defects relative to the image (1: blobs of 8-24% of the side; 0.025 on
    /// 2048 px images: blobs of about 8 px).
    #[arg(long, default_value_t = SynthConfig::default().defect_scale, value_name = "F")]
    pub defect_scale: f32,
    /// Seed.
    #[arg(long, default_value_t = SynthConfig::default().seed)]
    pub seed: u64,
}

/// `bpgg eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Root of the MVTec-layout data set.
    #[arg(long, value_name = "ROOT")]
    pub data: PathBuf,
    /// Category (a folder under ROOT).
    #[arg(long, value_name = "C")]
    pub category: String,
    /// Defect shots K, comma-separated: one table per value.
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = EvalConfig::default().shots,
        value_name = "K1,K2"
    )]
    pub shots: Vec<usize>,
    /// Normal shots N (from train/good).
    #[arg(long, default_value_t = EvalConfig::default().normal_shots, value_name = "N")]
    pub normal_shots: usize,
    /// Number of seeds: episodes are drawn with seeds 0..S.
    #[arg(long, default_value_t = EvalConfig::default().seeds.len() as u64, value_name = "S")]
    pub seeds: u64,
    /// Defect types to evaluate, comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_name = "T1,T2")]
    pub types: Vec<String>,
    /// FPR limit of AUPRO.
    #[arg(long, default_value_t = EvalConfig::default().fpr_limit)]
    pub fpr_limit: f64,
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write an HTML report (DIR/index.html and its images): metrics, curves, supports
    /// and the worst queries of seed 0.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Stop at the first unreadable image instead of leaving it out (unreadable images are
    /// reported, and the exit status is 1).
    #[arg(long)]
    pub fail_fast: bool,
    /// Compare maps and ground truth at the image's own size (the same pixels whatever the
    /// model's resolution) or at the model's working size (the MVTec protocol at 256 x 256;
    /// ground truth resized by nearest neighbour).
    #[arg(long, value_enum, default_value_t = EvalConfig::default().compare_at.into())]
    pub compare_at: CompareAtArg,
    #[command(flatten)]
    pub limits: ImageLimitArgs,
    #[command(flatten)]
    pub model: crate::model_args::ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `--compare-at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompareAtArg {
    Image,
    Working,
}

impl From<bpgg::eval::CompareAt> for CompareAtArg {
    fn from(c: bpgg::eval::CompareAt) -> Self {
        match c {
            bpgg::eval::CompareAt::Image => Self::Image,
            bpgg::eval::CompareAt::Working => Self::Working,
        }
    }
}

impl From<CompareAtArg> for bpgg::eval::CompareAt {
    fn from(c: CompareAtArg) -> Self {
        match c {
            CompareAtArg::Image => Self::Image,
            CompareAtArg::Working => Self::Working,
        }
    }
}

/// `bpgg fit`.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// Folder of defect images (with --masks).
    #[arg(long, value_name = "DIR")]
    pub defects: Option<PathBuf>,
    /// Folder of masks named like the defect images (`x.png` or `x_mask.png`).
    #[arg(long, value_name = "DIR")]
    pub masks: Option<PathBuf>,
    /// Folder of defect-free images.
    #[arg(long, value_name = "DIR")]
    pub normal: Option<PathBuf>,
    /// Instead of folders: an MVTec-layout root (with --category); supports are drawn as an
    /// episode (--shots defect images of every type pooled, --normal-shots from train/good).
    #[arg(long, value_name = "ROOT", conflicts_with_all = ["defects", "masks", "normal"])]
    pub data: Option<PathBuf>,
    /// Category under ROOT.
    #[arg(long, value_name = "C", requires = "data")]
    pub category: Option<String>,
    /// Defect type to draw supports from with --data (default: all types pooled).
    #[arg(long, value_name = "T", requires = "data")]
    pub defect_type: Option<String>,
    /// Defect shots with --data.
    #[arg(long, default_value_t = EpisodeConfig::default().defect_shots, value_name = "K")]
    pub shots: usize,
    /// Normal shots with --data.
    #[arg(long, default_value_t = EpisodeConfig::default().normal_shots, value_name = "N")]
    pub normal_shots: usize,
    /// Episode seed with --data.
    #[arg(long, default_value_t = EpisodeConfig::default().seed)]
    pub seed: u64,
    /// Where to write the model.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub limits: ImageLimitArgs,
    #[command(flatten)]
    pub model: crate::model_args::ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `bpgg predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A model written by `bpgg fit`.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Images, or folders of images (searched recursively).
    #[arg(required = true, value_name = "IMAGES_OR_DIRS")]
    pub inputs: Vec<PathBuf>,
    /// Output folder.
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Defect threshold on the anomaly map (default: the one chosen at fit time).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Image score at or above which an image is judged defective (default: the one chosen at
    /// fit time).
    #[arg(long)]
    pub image_threshold: Option<f32>,
    /// Images per batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Skip images whose outputs already exist (continue an interrupted run).
    #[arg(long)]
    pub resume: bool,
    /// Stop at the first unreadable image instead of skipping it.
    #[arg(long)]
    pub fail_fast: bool,
    /// Also write an HTML gallery of the highest-scoring images (DIR/index.html and images).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub limits: ImageLimitArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `bpgg demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo writes its data and outputs.
    #[arg(short, long, default_value = "bpgg-demo", value_name = "DIR")]
    pub output: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `bpgg train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Root of the MVTec-layout data set.
    #[arg(long, value_name = "ROOT")]
    pub data: PathBuf,
    /// Category (a folder under ROOT).
    #[arg(long, value_name = "C")]
    pub category: String,
    /// Defect types to train on, comma-separated (default: every type not in --val-types).
    /// Keep the types you will evaluate on out of both lists.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub base_types: Vec<String>,
    /// Defect types used only to pick the best checkpoint (default: a held-out 20% of each base
    /// type's images).
    #[arg(long, value_delimiter = ',', value_name = "D,E")]
    pub val_types: Vec<String>,
    /// More base data: another category folder, all of its defect types, or DIR:t1,t2 for some
    /// (repeatable). Its own train/good gives the normal images of its episodes.
    #[arg(long, value_name = "DIR[:TYPES]")]
    pub extra_base: Vec<String>,
    /// Output folder: last.safetensors (resumable), best.safetensors (best validation AP, for
    /// --checkpoint), config.json, history.csv.
    #[arg(long, short, value_name = "DIR")]
    pub output: PathBuf,
    /// Continue the run in --output from its last checkpoint (same settings required).
    #[arg(long)]
    pub resume: bool,
    /// Training episodes (one optimiser step each).
    #[arg(long, default_value_t = TrainConfig::default().episodes, value_name = "N")]
    pub episodes: usize,
    /// Defect supports per episode.
    #[arg(long, default_value_t = TrainConfig::default().episode.shots, value_name = "K")]
    pub shots: usize,
    /// Normal supports per episode (0: no normal insertion).
    #[arg(long, default_value_t = TrainConfig::default().episode.normal_shots, value_name = "M")]
    pub normal_shots: usize,
    /// Defect queries per episode.
    #[arg(long, default_value_t = TrainConfig::default().episode.queries, value_name = "Q")]
    pub queries: usize,
    /// Normal queries per episode (all-normal targets).
    #[arg(
        long,
        default_value_t = TrainConfig::default().episode.normal_queries,
        value_name = "Q"
    )]
    pub normal_queries: usize,
    /// Weight λ of the reverse (support-from-query) loss; 0 turns it off.
    #[arg(long, default_value_t = TrainConfig::default().loss.reverse_weight, value_name = "λ")]
    pub reverse_weight: f32,
    /// Weight every pixel the same instead of balancing defect and normal pixels.
    #[arg(long)]
    pub no_class_balance: bool,
    /// No random flips.
    #[arg(long)]
    pub no_augment: bool,
    /// adamw or sgd.
    #[arg(long, default_value_t = TrainConfig::default().optimizer, value_name = "NAME")]
    pub optimizer: bpgg::train::OptimizerKind,
    /// Peak learning rate (linear warm-up over 5% of the episodes, then cosine decay).
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    pub lr: f64,
    #[arg(long, default_value_t = TrainConfig::default().weight_decay)]
    pub weight_decay: f64,
    /// Hidden width of the projection head.
    #[arg(long, default_value_t = TrainConfig::default().head_hidden, value_name = "D")]
    pub head_width: usize,
    /// Write last.safetensors every N episodes.
    #[arg(long, default_value_t = TrainConfig::default().checkpoint_every, value_name = "N")]
    pub checkpoint_every: usize,
    /// Validate (and keep best.safetensors) every N episodes.
    #[arg(long, default_value_t = TrainConfig::default().val_every, value_name = "N")]
    pub val_every: usize,
    /// Validation episodes (the same ones each time).
    #[arg(long, default_value_t = TrainConfig::default().val_episodes, value_name = "N")]
    pub val_episodes: usize,
    /// Seed of the head, the holdout split and every episode.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    /// Images are resized to SIZE x SIZE.
    #[arg(long, default_value_t = TrainConfig::default().image_size, value_name = "SIZE")]
    pub size: u32,
    /// Temperature of the cosine similarities.
    #[arg(long, default_value_t = TrainConfig::default().loss.tau)]
    pub tau: f32,
    #[command(flatten)]
    pub limits: ImageLimitArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}
