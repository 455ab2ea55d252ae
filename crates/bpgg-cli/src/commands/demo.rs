//! `bpgg demo`: synthetic data → fit → predict → eval with the embedded backbone, through the
//! library (the same calls a program of yours would make).

use std::process::ExitCode;

use bpgg::data::image_io::load_rgb;
use bpgg::data::{
    sample_episode, write_synthetic_dataset, DefectSelection, EpisodeConfig, ImageLimits,
    MvtecCategory, SynthConfig,
};
use bpgg::eval::{evaluate_category, EvalConfig, EvalEvent};
use bpgg::model::{fit, Encoder, InputSize, ModelConfig, SupportSet};

use super::predict::{collect_jobs, write_outputs};
use crate::progress;

/// Side of the demo's synthetic images and of the model input.
const DEMO_SIZE: u32 = 128;

pub fn run(args: crate::args::DemoArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let out = &args.output;
    let device = args.device.open()?;
    let data = out.join("data");
    let synth = SynthConfig {
        size: DEMO_SIZE,
        ..SynthConfig::default()
    };
    let category_dir = write_synthetic_dataset(&data, &synth)?;
    println!("1/4 wrote a synthetic data set: {}", category_dir.display());

    let limits = ImageLimits::default();
    let config = ModelConfig {
        size: InputSize::LongSide(DEMO_SIZE),
        ..ModelConfig::default()
    };
    let encoder = Encoder::new(&config.backbone, &device)?;
    let category = MvtecCategory::open(&category_dir)?;
    let episode = EpisodeConfig::default();
    let supports = sample_episode(&category, &DefectSelection::AllTypes, &episode)?;
    let (set, warnings) =
        SupportSet::load(&supports.defect_support, &supports.normal_support, limits)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let model = fit(&encoder, &set, &config)?;
    let model_path = out.join("model.bpgg");
    model.save(&model_path)?;
    println!(
        "2/4 fitted {} scoring on {} defect + {} normal images: {}",
        model.config.scoring,
        episode.defect_shots,
        episode.normal_shots,
        model_path.display()
    );

    let predictions = out.join("predictions").join(&synth.category).join("test");
    let jobs = collect_jobs(&[category_dir.join("test")])?;
    let bar = progress::bar(jobs.len() as u64, "predicting", quiet);
    for job in &jobs {
        let image = load_rgb(&job.image, limits)?;
        let prediction = model
            .predict_images(&encoder, std::slice::from_ref(&image), None)?
            .remove(0);
        write_outputs(&predictions, job, &image, &prediction)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "3/4 predicted every test image: {} (open the *_overlay.png files)",
        predictions.display()
    );

    let eval = EvalConfig {
        model: config,
        shots: vec![1, 5],
        seeds: vec![0, 1, 2],
        fail_fast: true,
        ..EvalConfig::default()
    };
    let bar = progress::bar(0, "episodes", quiet);
    let report = evaluate_category(&category, &encoder, &eval, |e| match e {
        EvalEvent::Start { total } => bar.set_length(total as u64),
        EvalEvent::Episode(_) => bar.inc(1),
        EvalEvent::Warning(w) => bar.suspend(|| eprintln!("warning: {w}")),
        EvalEvent::Scored(_) | EvalEvent::Skipped(_) => {}
    })?;
    bar.finish_and_clear();
    println!("4/4 evaluated 1- and 5-shot episodes over 3 seeds (supports never scored):");
    print!("{}", report.markdown());
    println!(
        "\nNext: `bpgg eval --data {} --category {}` with your own settings, or fit your own parts \
         with `bpgg fit --defects DIR --masks DIR --normal DIR -o model.bpgg`.",
        data.display(),
        synth.category
    );
    Ok(ExitCode::SUCCESS)
}
