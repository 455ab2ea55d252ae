//! `bpgg fit`: encode supports once and save the model.

use std::process::ExitCode;

use anyhow::bail;
use bpgg::data::{
    sample_episode, DefectSelection, EpisodeConfig, FolderDataset, MvtecCategory, Sample,
};
use bpgg::model::{fit, SupportSet};

use crate::args::FitArgs;

pub fn run(args: FitArgs) -> anyhow::Result<ExitCode> {
    let config = args.model.to_config()?;
    let device = args.device.open()?;
    let (defects, normals) = supports(&args)?;
    let (set, warnings) = SupportSet::load(&defects, &normals, args.limits.to_limits())?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let encoder = args.model.encoder(&config, &device)?;
    let model = fit(&encoder, &set, &config)?;
    model.save(&args.output)?;
    println!(
        "fitted {} scoring on {} defect and {} normal image(s); threshold {:.4} ({:?}); \
         image threshold {:.4}; wrote {}",
        model.config.scoring,
        set.defects.len(),
        set.normals.len(),
        model.threshold,
        model.threshold_rule,
        model.image_threshold,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn supports(args: &FitArgs) -> anyhow::Result<(Vec<Sample>, Vec<Sample>)> {
    if let Some(root) = &args.data {
        let Some(name) = &args.category else {
            bail!("--data needs --category");
        };
        let category = MvtecCategory::open(&root.join(name))?;
        for w in &category.warnings {
            eprintln!("warning: {w}");
        }
        let selection = match &args.defect_type {
            Some(t) => DefectSelection::Type(t.clone()),
            None => DefectSelection::AllTypes,
        };
        let episode = sample_episode(
            &category,
            &selection,
            &EpisodeConfig {
                defect_shots: args.shots,
                normal_shots: args.normal_shots,
                seed: args.seed,
            },
        )?;
        return Ok((episode.defect_support, episode.normal_support));
    }
    if args.defects.is_none() && args.normal.is_none() {
        bail!("give support images: --defects DIR --masks DIR and/or --normal DIR, or --data ROOT --category C");
    }
    let folders = FolderDataset::open(
        args.defects.as_deref(),
        args.masks.as_deref(),
        args.normal.as_deref(),
    )?;
    for w in &folders.warnings {
        eprintln!("warning: {w}");
    }
    Ok((folders.defects, folders.normals))
}
