//! `bpgg weights import` and `bpgg weights inspect`: PyTorch checkpoints to safetensors, and a
//! look inside any weight file. Checkpoints are read by bpgg's restricted unpickler, never by
//! Python, so a hostile `.pth` is refused with an error instead of running code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use bpgg::backbone::weights::{
    import_weights, is_efficientnet_lite0_trunk_key, load_state_dict_with_format, ImportSummary,
    EFFICIENTNET_LITE0_TRUNK_LAST_BLOCK,
};
use clap::{Args, Subcommand};

/// Tensors `bpgg weights inspect` lists without `--all`.
const DEFAULT_INSPECT_LIMIT: usize = 20;

#[derive(Debug, Subcommand)]
pub enum WeightsCommand {
    /// Convert a checkpoint (legacy torch .pth, torch zip .pth/.pt or safetensors) to a float32
    /// safetensors file that `--weights` takes.
    Import(ImportArgs),
    /// List the tensors of a weight file: names, shapes, dtypes.
    Inspect(InspectWeightsArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The checkpoint to convert (its format is recognised from its contents).
    pub input: PathBuf,
    /// The safetensors file to write (replaced atomically if it exists).
    pub output: PathBuf,
    /// Keep only the EfficientNet-Lite0 feature trunk (stem and blocks 0-10, strides up to 16),
    /// as bpgg embeds it; the stride-32 blocks, the head and the classifier are left out.
    #[arg(long)]
    pub trunk: bool,
}

#[derive(Debug, Args)]
pub struct InspectWeightsArgs {
    /// The weight file (legacy torch .pth, torch zip .pth/.pt or safetensors).
    pub file: PathBuf,
    /// How many tensors to list.
    #[arg(long, short = 'n', default_value_t = DEFAULT_INSPECT_LIMIT, value_name = "N")]
    pub limit: usize,
    /// List every tensor.
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
}

/// Runs a `bpgg weights` subcommand.
pub fn run(command: WeightsCommand) -> anyhow::Result<ExitCode> {
    match command {
        WeightsCommand::Import(args) => import(args),
        WeightsCommand::Inspect(args) => inspect(args),
    }
}

fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let keep: Option<&dyn Fn(&str) -> bool> = if args.trunk {
        Some(&is_efficientnet_lite0_trunk_key)
    } else {
        None
    };
    let summary = import_weights(&args.input, &args.output, keep)?;
    if summary.tensors_written == 0 {
        // Nothing usable was written: remove the empty file rather than leave it for a later
        // `--weights` to trip over.
        let _ = std::fs::remove_file(&args.output);
        let hint = if args.trunk {
            format!(
                " (--trunk keeps `_conv_stem.*`, `_bn0.*` and `_blocks.0-{EFFICIENTNET_LITE0_TRUNK_LAST_BLOCK}.*`: \
                 is this an EfficientNet-Lite0 checkpoint?)"
            )
        } else {
            String::new()
        };
        bail!("{}: no float tensor to write{hint}", args.input.display());
    }
    print_summary(&args.input, &args.output, &summary, args.trunk);
    Ok(ExitCode::SUCCESS)
}

fn print_summary(input: &Path, output: &Path, summary: &ImportSummary, trunk: bool) {
    println!(
        "read   {} ({}): {} tensors",
        input.display(),
        summary.format,
        summary.tensors_read
    );
    println!(
        "wrote  {}: {} tensors, {} parameters (float32)",
        output.display(),
        summary.tensors_written,
        summary.parameters_written
    );
    if trunk {
        println!(
            "left out {} tensors outside the EfficientNet-Lite0 trunk (--trunk)",
            summary.tensors_filtered_out
        );
    }
    if summary.integer_tensors_dropped > 0 {
        println!(
            "dropped {} integer tensors (BatchNorm num_batches_tracked counters; inference never reads them)",
            summary.integer_tensors_dropped
        );
    }
}

fn inspect(args: InspectWeightsArgs) -> anyhow::Result<ExitCode> {
    let (format, state_dict) = load_state_dict_with_format(&args.file)?;
    let parameters: usize = state_dict.iter().map(|(_, t)| t.elem_count()).sum();
    println!(
        "{} ({format}): {} tensors, {parameters} values",
        args.file.display(),
        state_dict.len()
    );
    let shown = if args.all {
        state_dict.len()
    } else {
        args.limit.min(state_dict.len())
    };
    let rows: Vec<(&str, String, String)> = state_dict
        .iter()
        .take(shown)
        .map(|(name, t)| {
            let dtype = format!("{:?}", t.dtype()).to_lowercase();
            (name, format!("{:?}", t.dims()), dtype)
        })
        .collect();
    let name_width = rows.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0);
    let shape_width = rows.iter().map(|(_, s, _)| s.len()).max().unwrap_or(0);
    for (name, shape, dtype) in &rows {
        println!("  {name:<name_width$}  {shape:<shape_width$}  {dtype}");
    }
    if shown < state_dict.len() {
        println!(
            "  ... {} more (--all lists every tensor)",
            state_dict.len() - shown
        );
    }
    println!("(dtypes as bpgg loads them: floating tensors are widened to f32, integers to i64)");
    Ok(ExitCode::SUCCESS)
}
