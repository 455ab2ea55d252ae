//! `bpgg bench predict`: end-to-end prediction throughput, bpgg against PyTorch
//! (`scripts/bench_predict.py`) doing the same work on the same files.
//!
//! A synthetic data set is written to a temporary folder; a `bpgg`-scoring model (one defect
//! and one normal prototype, from five defect supports) is fitted on it with the embedded
//! EfficientNet-Lite0; with `--scoring hybrid`, a hybrid model that also has `--normal-shots`
//! normal supports (its k-NN memory bank; bpgg only, the reference implements prototype
//! scoring). The timed work is what `bpgg predict` does per image: decode the PNG,
//! resize it to the model's size (both on a loader thread, one batch ahead, as `bpgg predict`
//! does), run the backbone, combine the stages at stride 8, score
//! against the prototypes (τ·cos, two-class softmax), upsample and blur the map. Writing the
//! output files is not timed. The reference reads the prototypes bpgg fitted, so both sides
//! compute the same maps; the largest difference of the first image's map is printed (about
//! 1e-7 with `--source-size 256`, where nothing is resized; up to a few 1e-2 otherwise, from
//! PIL's and the `image` crate's different bilinear downsampling).

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};
use bpgg::backbone::weights::StateDict;
use bpgg::backbone::EMBEDDED_EFFICIENTNET_LITE0;
use bpgg::data::image_io::{load_mask, load_rgb};
use bpgg::data::synth::{write_synthetic_dataset, DefectKind, SynthConfig};
use bpgg::data::transform::resize_image;
use bpgg::data::ImageLimits;
use bpgg::model::Encoder;
use bpgg::model::DEFAULT_IMAGE_SIZE;
use bpgg::model::{fit, FittedModel, InputSize, ModelConfig, Scoring, SupportSet};

use super::{compute_units, json_f64, time_runs, BenchPredictArgs, BenchScoring, Timing};

/// Defect images the prototypes are fitted from.
const SUPPORT_DEFECTS: usize = 5;
/// Seed of the synthetic data set.
const SEED: u64 = 7;

pub fn run(args: &BenchPredictArgs) -> anyhow::Result<()> {
    ensure!(args.images > 0, "--images must be positive");
    ensure!(args.batch > 0, "--batch must be positive");
    let threads = candle_core::utils::get_num_threads();
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let category = write_synthetic_dataset(
        dir.path(),
        &SynthConfig {
            category: "bench".into(),
            size: args.source_size,
            train_good: match args.scoring {
                BenchScoring::Bpgg => 0,
                BenchScoring::Hybrid => args.normal_shots,
            },
            test_good: args.images,
            per_type: SUPPORT_DEFECTS,
            kinds: vec![DefectKind::Blob],
            seed: SEED,
            ..SynthConfig::default()
        },
    )?;
    let queries = png_files(&category.join("test").join("good"))?;
    let scoring = match args.scoring {
        BenchScoring::Bpgg => Scoring::Bpgg,
        BenchScoring::Hybrid => Scoring::Hybrid,
    };
    // Square inputs, as the reference resizes.
    let side = DEFAULT_IMAGE_SIZE;
    let config = ModelConfig {
        scoring,
        size: InputSize::Exact {
            width: side,
            height: side,
        },
        tile: None,
        ..ModelConfig::default()
    };
    let device = args.device.open()?;
    let encoder = Encoder::new(&config.backbone, &device)?;
    let model = fit(&encoder, &supports(&category)?, &config)?;
    println!(
        "predict {n} synthetic {src}x{src} PNGs (decode, resize to {size}, {net}, {scoring} \
         scoring, upsample + blur) in batches of {batch}; median and min over {repeats} passes \
         after {warmup} warm-up; {units} for bpgg and for pytorch",
        units = compute_units(&device),
        scoring = config.scoring.name(),
        n = queries.len(),
        src = args.source_size,
        size = side,
        net = config.backbone.kind,
        batch = args.batch,
        repeats = args.repeats.max(1),
        warmup = args.warmup,
    );
    let first_map = dir.path().join("first_map.f32");
    let bpgg = time_runs(args.warmup, args.repeats, || {
        predict_all(&model, &encoder, &queries, args.batch, None)?;
        Ok(())
    })?;
    predict_all(&model, &encoder, &queries, args.batch, Some(&first_map))?;

    let n = queries.len() as f64;
    let head = format!(
        "predict batch {}: bpgg {:.1} images/s (best {:.1}), {:.1} ms/image",
        args.batch,
        n / bpgg.median_s,
        n / bpgg.min_s,
        bpgg.median_s / n * 1e3
    );
    if args.scoring == BenchScoring::Hybrid {
        println!(
            "{head}, pytorch reference skipped (it implements bpgg scoring only; `bpgg bench \
             knn` compares the k-NN search)"
        );
        return Ok(());
    }
    let weights = dir.path().join("efficientnet_lite0.safetensors");
    std::fs::write(&weights, EMBEDDED_EFFICIENTNET_LITE0)
        .with_context(|| format!("cannot write {}", weights.display()))?;
    let prototypes = dir.path().join("prototypes.safetensors");
    save_prototypes(&model, &prototypes)?;
    let list = dir.path().join("images.txt");
    let names: Vec<String> = queries.iter().map(|p| p.display().to_string()).collect();
    std::fs::write(&list, names.join("\n"))
        .with_context(|| format!("cannot write {}", list.display()))?;
    let reference = args.reference.run_script(
        "bench_predict.py",
        &[
            "--weights".into(),
            weights.display().to_string(),
            "--prototypes".into(),
            prototypes.display().to_string(),
            "--images".into(),
            list.display().to_string(),
            "--batch".into(),
            args.batch.to_string(),
            "--size".into(),
            side.to_string(),
            "--tau".into(),
            config.tau.to_string(),
            "--sigma".into(),
            config.map.sigma_px.to_string(),
            "--truncate".into(),
            config.map.truncate.to_string(),
            "--repeats".into(),
            args.repeats.max(1).to_string(),
            "--warmup".into(),
            args.warmup.to_string(),
            "--threads".into(),
            threads.to_string(),
            "--check-map".into(),
            first_map.display().to_string(),
        ],
        &device,
    );
    match reference {
        Ok(json) => {
            let torch = Timing {
                median_s: json_f64(&json, "median_s")?,
                min_s: json_f64(&json, "min_s")?,
            };
            println!(
                "{head}, pytorch {:.1} images/s (best {:.1}), ratio {:.2} (time bpgg / pytorch)",
                n / torch.median_s,
                n / torch.min_s,
                bpgg.median_s / torch.median_s
            );
            let diff = json
                .get("map_max_abs_diff")
                .and_then(serde_json::Value::as_f64)
                .map_or_else(|| "not checked".to_string(), |d| format!("{d:.2e}"));
            println!(
                "pytorch peak RSS {:.1} MiB; first map max |bpgg - pytorch| {diff}",
                json_f64(&json, "peak_rss_kib")? / 1024.0,
            );
        }
        Err(reason) => println!("{head}, pytorch reference skipped ({reason})"),
    }
    Ok(())
}

/// What `bpgg predict` does with each batch of files, minus writing the outputs: a loader
/// thread decodes and resizes the next batch while this one runs [`FittedModel::predict`] on the
/// current one. Writes the first map as raw little-endian `f32` to `first_map`.
fn predict_all(
    model: &FittedModel,
    encoder: &Encoder,
    files: &[PathBuf],
    batch: usize,
    first_map: Option<&Path>,
) -> anyhow::Result<()> {
    let size = DEFAULT_IMAGE_SIZE;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (sender, batches) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || {
            for chunk in files.chunks(batch) {
                let decoded: bpgg::Result<Vec<_>> = chunk
                    .iter()
                    .map(|f| {
                        let image = load_rgb(f, ImageLimits::default())?;
                        Ok(resize_image(&image, size, size))
                    })
                    .collect();
                if sender.send(decoded).is_err() {
                    break;
                }
            }
        });
        for (i, images) in batches.into_iter().enumerate() {
            let maps = model.predict(encoder, &images?)?;
            if let (0, Some(path)) = (i, first_map) {
                let bytes: Vec<u8> = maps[0].data.iter().flat_map(|v| v.to_le_bytes()).collect();
                std::fs::write(path, bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        Ok(())
    })
}

/// The `.png` files of a folder, sorted.
fn png_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    files.retain(|p| p.extension().is_some_and(|e| e == "png"));
    files.sort();
    Ok(files)
}

/// The blob defects of the synthetic category with their masks.
fn supports(category: &Path) -> anyhow::Result<SupportSet> {
    let kind = DefectKind::Blob.name();
    let mut defects = Vec::new();
    for image in png_files(&category.join("test").join(kind))? {
        let stem = image.file_stem().expect("a png file").to_string_lossy();
        let mask_path = category
            .join("ground_truth")
            .join(kind)
            .join(format!("{stem}_mask.png"));
        let rgb = load_rgb(&image, ImageLimits::default())?;
        let mask = load_mask(&mask_path, Some(rgb.dimensions()), ImageLimits::default())?;
        defects.push((image.display().to_string(), rgb, mask));
    }
    let mut normals = Vec::new();
    let good = category.join("train").join("good");
    if good.is_dir() {
        for image in png_files(&good)? {
            let rgb = load_rgb(&image, ImageLimits::default())?;
            normals.push((image.display().to_string(), rgb));
        }
    }
    Ok(SupportSet { defects, normals })
}

/// The fitted prototypes as safetensors: `defect` `(kd, C)` and `normal` `(kn, C)`.
fn save_prototypes(model: &FittedModel, path: &Path) -> anyhow::Result<()> {
    let bank = model
        .prototypes
        .as_ref()
        .context("the bench model has no prototypes")?;
    StateDict::new(vec![
        ("defect".into(), bank.defect.clone()),
        ("normal".into(), bank.normal.clone()),
    ])?
    .save_safetensors(path)?;
    Ok(())
}
