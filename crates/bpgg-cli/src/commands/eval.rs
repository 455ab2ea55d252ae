//! `bpgg eval`: the few-shot episode protocol on an MVTec-layout category.

use std::process::ExitCode;

use anyhow::Context;
use bpgg::data::MvtecCategory;
use bpgg::eval::{evaluate_category, EvalConfig, EvalEvent};
use bpgg::io::write_atomic;
use bpgg::report::{ReportConfig, ReportWriter, RunInfo};
use tracing::{debug, info};

use crate::args::EvalArgs;
use crate::progress;

pub fn run(args: EvalArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let model = args.model.to_config()?;
    let device = args.device.open()?;
    let config = EvalConfig {
        model,
        shots: args.shots.clone(),
        normal_shots: args.normal_shots,
        seeds: (0..args.seeds).collect(),
        types: args.types.clone(),
        fpr_limit: args.fpr_limit,
        limits: args.limits.to_limits(),
        fail_fast: args.fail_fast,
        compare_at: args.compare_at.into(),
    };
    let category = MvtecCategory::open(&args.data.join(&args.category))?;
    info!(
        "category {} at {}: defect types {}",
        category.name,
        category.dir.display(),
        category.defect_types().join(",")
    );
    let start = std::time::Instant::now();
    let encoder = args.model.encoder(&config.model, &device)?;
    info!(
        "backbone {} loaded in {:.1} s",
        config.model.backbone.kind,
        start.elapsed().as_secs_f64()
    );
    let mut writer = match &args.report {
        Some(dir) => {
            let types = if args.types.is_empty() {
                category.defect_types().len()
            } else {
                args.types.len()
            };
            let defaults = ReportConfig::default();
            Some(ReportWriter::new(
                dir,
                ReportConfig {
                    panels_per_episode: (defaults.max_panels / types.max(1)).max(4),
                    shots: args.shots.iter().max().copied(),
                    fpr_limit: args.fpr_limit,
                    ..defaults
                },
            )?)
        }
        None => None,
    };
    let mut report_error = None;
    let bar = progress::bar(0, "episodes", quiet);
    let mut episode_start = std::time::Instant::now();
    let report = evaluate_category(&category, &encoder, &config, |event| match event {
        EvalEvent::Start { total } => bar.set_length(total as u64),
        EvalEvent::Skipped(skip) => bar.suspend(|| eprintln!("error: {} (skipped)", skip.error)),
        EvalEvent::Warning(w) => bar.suspend(|| eprintln!("warning: {w}")),
        EvalEvent::Scored(maps) => {
            if let (Some(w), None) = (writer.as_mut(), &report_error) {
                if let Err(e) = w.add_episode(&maps) {
                    report_error = Some(e);
                }
            }
        }
        EvalEvent::Episode(e) => {
            debug!(
                "episode {} k={} seed={} took {:.2} s ({:.1} ms per query)",
                e.defect_type,
                e.shots,
                e.seed,
                episode_start.elapsed().as_secs_f64(),
                e.ms_per_query
            );
            episode_start = std::time::Instant::now();
            bar.set_message(format!("{} k={} s={}", e.defect_type, e.shots, e.seed));
            bar.inc(1);
        }
    })?;
    bar.finish_and_clear();
    if let Some(e) = report_error {
        return Err(anyhow::Error::new(e).context("writing the report"));
    }
    println!(
        "scoring {} · backbone {} ({}) · {} · normal shots {} · seeds 0..{} · compared at {}",
        match config.model.scoring {
            bpgg::model::Scoring::Auto => format!(
                "auto (= {} with defect shots, {} without)",
                config.model.scoring.resolve(true),
                config.model.scoring.resolve(false)
            ),
            s => s.to_string(),
        },
        config.model.backbone.kind,
        config.model.backbone.effective_layers().join(","),
        config.model.describe_resolution(),
        args.normal_shots,
        args.seeds,
        match config.compare_at {
            bpgg::eval::CompareAt::Image => "each image's own size",
            bpgg::eval::CompareAt::Working => "the working size",
        }
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
            "skipped": report.skipped,
            "warnings": report.warnings,
        });
        write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    if let Some(writer) = writer {
        let run = RunInfo {
            title: format!("bpgg eval — {}", report.category),
            command_line: crate::logging::command_line(),
            settings: serde_json::json!({
                "model": config.model,
                "shots": config.shots,
                "normal_shots": config.normal_shots,
                "seeds": config.seeds,
                "types": config.types,
                "fpr_limit": config.fpr_limit,
            }),
        };
        let page = writer
            .finish(&run, Some(&report))
            .context("writing the report")?;
        println!("report: {}", page.display());
    }
    if !report.skipped.is_empty() {
        eprintln!(
            "error: {} image(s) could not be read and were left out of every episode",
            report.skipped.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
