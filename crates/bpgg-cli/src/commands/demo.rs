//! `bpgg demo`: synthetic data → fit → predict → eval with the embedded backbone.

use std::process::ExitCode;

use bpgg::data::{write_synthetic_dataset, ImageLimits, MvtecCategory, SynthConfig};
use bpgg::eval::{evaluate_category, EvalConfig, EvalEvent};
use bpgg::model::{Encoder, ModelConfig};
use candle_core::Device;

use crate::args::{DemoArgs, FitArgs, ImageLimitArgs, PredictArgs};
use crate::model_args::ModelArgs;
use crate::progress;

/// Side of the demo's synthetic images and of the model input.
const DEMO_SIZE: u32 = 128;

pub fn run(args: DemoArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let out = &args.output;
    let data = out.join("data");
    let synth = SynthConfig {
        size: DEMO_SIZE,
        ..SynthConfig::default()
    };
    let category_dir = write_synthetic_dataset(&data, &synth)?;
    println!("1/4 wrote a synthetic data set: {}", category_dir.display());

    let model_args = ModelArgs {
        size: DEMO_SIZE,
        ..demo_model_args()
    };
    let model_path = out.join("model.bpgg");
    super::fit::run(FitArgs {
        defects: None,
        masks: None,
        normal: None,
        data: Some(data.clone()),
        category: Some(synth.category.clone()),
        defect_type: None,
        shots: 5,
        normal_shots: 5,
        seed: 0,
        output: model_path.clone(),
        model: model_args.clone(),
        limits: ImageLimitArgs::default(),
    })?;
    println!(
        "2/4 fitted a model on 5 defect + 5 normal images: {}",
        model_path.display()
    );

    let predictions = out.join("predictions").join(&synth.category).join("test");
    let code = super::predict::run(
        PredictArgs {
            model: model_path,
            inputs: vec![category_dir.join("test")],
            output: predictions.clone(),
            threshold: None,
            batch: 8,
            resume: false,
            fail_fast: false,
            report: None,
            limits: ImageLimitArgs::default(),
        },
        quiet,
    )?;
    println!(
        "3/4 predicted every test image: {} (open the *_overlay.png files)",
        predictions.display()
    );

    let config = EvalConfig {
        model: model_args.to_config()?,
        shots: vec![1, 5],
        normal_shots: 5,
        seeds: vec![0, 1, 2],
        types: Vec::new(),
        fpr_limit: bpgg_metrics::DEFAULT_FPR_LIMIT,
        limits: ImageLimits::default(),
        fail_fast: true,
    };
    let device = Device::Cpu;
    let encoder = Encoder::new(&config.model.backbone, config.model.image_size, &device)?;
    let category = MvtecCategory::open(&category_dir)?;
    let bar = progress::bar(0, "episodes", quiet);
    let report = evaluate_category(&category, &encoder, &config, |e| match e {
        EvalEvent::Start { total } => bar.set_length(total as u64),
        EvalEvent::Episode(_) => bar.inc(1),
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
    Ok(code)
}

/// The defaults of `bpgg fit`, as the demo uses them.
fn demo_model_args() -> ModelArgs {
    let d = ModelConfig::default();
    ModelArgs {
        backbone: d.backbone.kind.name().to_string(),
        weights: None,
        layers: Vec::new(),
        size: d.image_size,
        scoring: crate::model_args::ScoringArg::Auto,
        tau: d.tau,
        prototypes: d.prototype.prototypes_per_class,
        normal_weight: d.prototype.normal_source_weight,
        reverse: crate::model_args::ReverseArg::Off,
        sigma: d.map.sigma_px,
        hybrid_weight: d.hybrid.weight,
        model_seed: 0,
        checkpoint: None,
    }
}
