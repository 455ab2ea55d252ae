//! `bpgg eval`: the few-shot episode protocol on an MVTec-layout category.

use std::process::ExitCode;

use anyhow::Context;
use bpgg::data::float_map::write_atomic;
use bpgg::data::{ImageLimits, MvtecCategory};
use bpgg::eval::{evaluate_category, EvalConfig, EvalEvent};
use bpgg::model::Encoder;
use candle_core::Device;

use crate::args::EvalArgs;
use crate::progress;

pub fn run(args: EvalArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let model = args.model.to_config()?;
    let config = EvalConfig {
        model,
        shots: args.shots.clone(),
        normal_shots: args.normal_shots,
        seeds: (0..args.seeds).collect(),
        types: args.types.clone(),
        fpr_limit: args.fpr_limit,
        limits: ImageLimits::default(),
    };
    let category = MvtecCategory::open(&args.data.join(&args.category))?;
    let device = Device::Cpu;
    let encoder = Encoder::new(&config.model.backbone, config.model.image_size, &device)
        .context("loading the backbone")?;
    let bar = progress::bar(0, "episodes", quiet);
    let report = evaluate_category(&category, &encoder, &config, |event| match event {
        EvalEvent::Start { total } => bar.set_length(total as u64),
        EvalEvent::Episode(e) => {
            bar.set_message(format!("{} k={} s={}", e.defect_type, e.shots, e.seed));
            bar.inc(1);
        }
    })?;
    bar.finish_and_clear();
    println!(
        "scoring {} · backbone {} ({}) · {} px · normal shots {} · seeds 0..{}",
        match config.model.scoring {
            bpgg::model::Scoring::Auto => format!(
                "auto (= {} with defect shots, {} without)",
                config.model.scoring.resolve(true, args.normal_shots),
                config.model.scoring.resolve(false, args.normal_shots)
            ),
            s => s.to_string(),
        },
        config.model.backbone.kind,
        config.model.backbone.effective_layers().join(","),
        config.model.image_size,
        args.normal_shots,
        args.seeds
    );
    print!("{}", report.markdown());
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "category": report.category,
            "config": config.model,
            "normal_shots": args.normal_shots,
            "seeds": config.seeds,
            "fpr_limit": args.fpr_limit,
            "shots": report.per_type.keys().map(|k| (k.to_string(), serde_json::json!({
                "per_type": report.per_type[k],
                "overall": report.overall.get(k),
                "ms_per_query": report.ms_per_query.get(k),
            }))).collect::<serde_json::Map<_, _>>(),
            "episodes": report.episodes,
        });
        write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
