//! `bpgg predict`: anomaly maps, masks, overlays and a result line for every image.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bpgg::data::image_io::load_rgb;
use bpgg::data::mvtec::is_image_path;
use bpgg::data::ImageLimits;
use bpgg::io::write_atomic;
use bpgg::model::{FittedModel, Prediction, PreparedImage};
use bpgg::report::heatmap::overlay;
use bpgg::report::{ReportConfig, ReportWriter, RunInfo};
use image::RgbImage;
use tracing::{debug, info};

use crate::args::PredictArgs;
use crate::progress;
use crate::results_log::{ResultsLog, MAP_KEY};

/// One input image and where its outputs go (relative to the output folder, no extension).
pub(crate) struct Job {
    pub(crate) image: PathBuf,
    stem_out: PathBuf,
}

pub fn run(args: PredictArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let limits = args.limits.to_limits();
    let device = args.device.open()?;
    let mut model = FittedModel::load(&args.model, &device)?;
    let threshold = args.threshold.unwrap_or(model.threshold);
    if let Some(t) = args.image_threshold {
        model.image_threshold = t;
    }
    let image_threshold = model.image_threshold;
    info!(
        "model {}: scoring {}, backbone {}, {}, threshold {threshold:.4}, image threshold {image_threshold:.4}",
        args.model.display(),
        model.config.scoring,
        model.config.backbone.kind,
        model.config.describe_resolution()
    );
    let encoder = model.encoder(&device).context("loading the backbone")?;
    let mut writer = match &args.report {
        Some(dir) => Some(ReportWriter::new(dir, ReportConfig::default())?),
        None => None,
    };
    let jobs = collect_jobs(&args.inputs)?;
    if jobs.is_empty() {
        bail!("no images found in the given inputs");
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    if args.resume {
        let removed = bpgg::io::remove_stale_temp_files(&args.output)?;
        debug!("removed {removed} temp file(s) of an interrupted run");
    }
    let (mut jsonl, done) = ResultsLog::open(&args.output.join("results.jsonl"), args.resume)?;

    let todo: Vec<&Job> = jobs
        .iter()
        .filter(|j| !(args.resume && outputs_exist(&args.output, j, &done)))
        .collect();
    let skipped = jobs.len() - todo.len();
    let bar = progress::bar(todo.len() as u64, "predicting", quiet);
    let mut failures = 0usize;
    let model = &model;
    // Decoding (and resizing to the model's size) runs one batch ahead on its own thread while
    // this one scores and writes the current batch; batches arrive in order.
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (sender, batches) = std::sync::mpsc::sync_channel(1);
        let todo = &todo;
        scope.spawn(move || {
            for chunk in todo.chunks(args.batch) {
                let decoded: Vec<_> = chunk
                    .iter()
                    .map(|&job| (job, decode_for_model(job, model, limits)))
                    .collect();
                if sender.send(decoded).is_err() {
                    break; // the scoring loop stopped on an error
                }
            }
        });
        for decoded in batches {
            let mut images: Vec<(&Job, RgbImage)> = Vec::with_capacity(decoded.len());
            let mut prepared: Vec<PreparedImage> = Vec::with_capacity(decoded.len());
            for (job, result) in decoded {
                match result {
                    Ok((img, ready)) => {
                        images.push((job, img));
                        prepared.push(ready);
                    }
                    Err(e) if !args.fail_fast => {
                        bar.suspend(|| {
                            eprintln!("error: {} (skipped)", crate::hints::describe(&e))
                        });
                        failures += 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let start = std::time::Instant::now();
            let predictions = model.predict_prepared(&encoder, &prepared, Some(threshold))?;
            debug!(
                "batch of {} scored in {:.2} s",
                prepared.len(),
                start.elapsed().as_secs_f64()
            );
            for ((job, img), prediction) in images.iter().zip(predictions) {
                if let Some(w) = writer.as_mut() {
                    let name = job.stem_out.display().to_string();
                    w.add_prediction(
                        &name,
                        img,
                        &prediction.map,
                        prediction.image_score,
                        threshold,
                    )
                    .context("writing the report")?;
                }
                let record = write_outputs(&args.output, job, img, &prediction)?;
                jsonl.append(&record)?;
                bar.inc(1);
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    println!(
        "{} image(s) predicted, {skipped} already done, {failures} failed; outputs in {} \
         (maps .tiff, masks _mask.png, overlays _overlay.png, results.jsonl); threshold {threshold:.4}",
        todo.len() - failures,
        args.output.display()
    );
    if let Some(writer) = writer {
        let run = RunInfo {
            title: format!("bpgg predict — {}", args.model.display()),
            command_line: crate::logging::command_line(),
            settings: serde_json::json!({
                "model": model.config,
                "threshold": threshold,
                "threshold_rule": format!("{:?}", model.threshold_rule),
            }),
        };
        let page = writer.finish(&run, None).context("writing the report")?;
        println!("report: {}", page.display());
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) fn collect_jobs(inputs: &[PathBuf]) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut files = Vec::new();
            walk(input, &mut files)?;
            files.sort();
            for f in files {
                let rel = f
                    .strip_prefix(input)
                    .expect("walked under input")
                    .with_extension("");
                jobs.push(Job {
                    image: f,
                    stem_out: rel,
                });
            }
        } else if input.is_file() {
            let stem = input.file_stem().map(PathBuf::from).unwrap_or_default();
            jobs.push(Job {
                image: input.clone(),
                stem_out: stem,
            });
        } else {
            bail!("{}: no such file or folder", input.display());
        }
    }
    Ok(jobs)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_image_path(&path) {
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            // Our own outputs, when predicting into the input folder, are not inputs.
            if !name.ends_with("_overlay") {
                out.push(path);
            }
        }
    }
    Ok(())
}

/// The image at its own size (for the outputs) and made ready for the model.
fn decode_for_model(
    job: &Job,
    model: &FittedModel,
    limits: ImageLimits,
) -> bpgg::Result<(RgbImage, PreparedImage)> {
    let image = load_rgb(&job.image, limits)?;
    let ready = model.prepare(&image).map_err(|e| match e {
        bpgg::Error::InvalidConfig(problem) => bpgg::Error::invalid_data(&job.image, problem),
        e => e,
    })?;
    Ok((image, ready))
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Whether the image is done: its three outputs exist and `results.jsonl` has its line.
fn outputs_exist(out: &Path, job: &Job, recorded_maps: &HashSet<String>) -> bool {
    let base = out.join(&job.stem_out);
    let map = with_suffix(&base, ".tiff");
    recorded_maps.contains(map.to_string_lossy().as_ref())
        && ["_overlay.png", "_mask.png", ".tiff"]
            .iter()
            .all(|s| with_suffix(&base, s).is_file())
}

/// Writes map, mask and overlay (each atomically, the map last) and returns the JSON result
/// record (paths written lossily: a non-UTF-8 file name must not stop the batch).
pub(crate) fn write_outputs(
    out: &Path,
    job: &Job,
    image: &RgbImage,
    prediction: &Prediction,
) -> anyhow::Result<serde_json::Value> {
    let Prediction {
        map: full,
        mask,
        threshold,
        ..
    } = prediction;
    let threshold = *threshold;
    let base = out.join(&job.stem_out);
    let png = |img: image::DynamicImage, path: PathBuf| -> anyhow::Result<()> {
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, image::ImageFormat::Png)
            .with_context(|| format!("encoding {}", path.display()))?;
        write_atomic(&path, buf.get_ref())?;
        Ok(())
    };
    png(
        image::DynamicImage::ImageLuma8(mask.to_gray()),
        with_suffix(&base, "_mask.png"),
    )?;
    png(
        image::DynamicImage::ImageRgb8(overlay(image, full, threshold)),
        with_suffix(&base, "_overlay.png"),
    )?;
    full.write_tiff(&with_suffix(&base, ".tiff"))?;
    Ok(serde_json::json!({
        "image": job.image.to_string_lossy(),
        (MAP_KEY): with_suffix(&base, ".tiff").to_string_lossy(),
        "image_score": prediction.image_score,
        "defect_area_px": prediction.defect_area_px(),
        "defect_area_fraction": prediction.defect_area_fraction(),
        "threshold": threshold,
        "image_threshold": prediction.image_threshold,
        "defective": prediction.defective,
        "regions": prediction.regions,
    }))
}
