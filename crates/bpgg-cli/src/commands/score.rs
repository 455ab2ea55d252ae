//! `bpgg score`: anomaly maps on disk against an MVTec-layout ground truth.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use bpgg::data::float_map::FloatMap;
use bpgg::data::image_io::{image_dimensions, load_mask, Mask};
use bpgg::data::transform::resize_mask;
use bpgg::data::{ImageLimits, MvtecCategory, Sample};
use bpgg::eval::{summarize, ScoredImage};
use bpgg::io::write_atomic;

use crate::args::ScoreArgs;
use crate::progress;

/// Extensions tried for a prediction, in order.
const MAP_EXTENSIONS: [&str; 3] = ["tiff", "tif", "npy"];

pub fn run(args: ScoreArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    if !(args.fpr_limit > 0.0 && args.fpr_limit <= 1.0) {
        bail!("--fpr-limit must be in (0, 1], got {}", args.fpr_limit);
    }
    let category = MvtecCategory::open(&args.data.join(&args.category))?;
    let pred_dir = args.predictions.join(&args.category).join("test");
    let samples: Vec<&Sample> = category.test.values().flatten().collect();
    if samples.is_empty() {
        bail!("{}: no test images to score", category.dir.display());
    }
    let bar = progress::bar(samples.len() as u64, "reading", quiet);
    let mut images = Vec::with_capacity(samples.len());
    for sample in samples {
        images.push(scored_image(
            sample,
            &pred_dir,
            args.size,
            args.limits.to_limits(),
        )?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary = summarize(&images, args.fpr_limit)?;
    println!(
        "category {} — {} images, AUPRO integrated to FPR {}\n",
        args.category,
        images.len(),
        args.fpr_limit
    );
    print!("{}", summary.markdown_table());
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "category": args.category,
            "fpr_limit": args.fpr_limit,
            "per_type": summary.per_type,
            "mean": summary.mean_over_types(),
            "overall": summary.overall,
        });
        write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn prediction_path(pred_dir: &Path, sample: &Sample) -> anyhow::Result<PathBuf> {
    let base = pred_dir.join(&sample.defect_type);
    for ext in MAP_EXTENSIONS {
        let p = base.join(format!("{}.{ext}", sample.stem));
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "{}: missing prediction for {} (looked for .tiff, .tif, .npy)",
        base.join(format!("{}.tiff", sample.stem)).display(),
        sample.image.display()
    )
}

fn scored_image(
    sample: &Sample,
    pred_dir: &Path,
    size: Option<u32>,
    limits: ImageLimits,
) -> anyhow::Result<ScoredImage> {
    let path = prediction_path(pred_dir, sample)?;
    let map = FloatMap::read(&path)?;
    let (iw, ih) = image_dimensions(&sample.image)?;
    let mask = match &sample.mask {
        Some(m) => load_mask(m, Some((iw, ih)), limits)?,
        None => Mask::empty(iw, ih),
    };
    let (w, h) = size.map_or((iw, ih), |n| (n, n));
    let mask = resize_mask(&mask, w, h);
    if (map.width, map.height) != (w as usize, h as usize) {
        let hint = if size.is_none() {
            " (maps must have their image's size, or pass --size N to compare at N x N)"
        } else {
            ""
        };
        bail!(
            "{}: map is {}x{} but the ground truth is {w}x{h}{hint}",
            path.display(),
            map.width,
            map.height
        );
    }
    Ok(ScoredImage {
        defect_type: sample.defect_type.clone(),
        width: map.width,
        height: map.height,
        image_score: bpgg_metrics::image_score(&map.data),
        map: map.data,
        mask: mask.pixels,
    })
}
