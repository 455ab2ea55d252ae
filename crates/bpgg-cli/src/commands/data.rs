//! `bpgg data inspect` and `bpgg data synth`.

use std::process::ExitCode;

use anyhow::Context;
use bpgg::data::inspect::{count_files, inspect as inspect_dataset};
use bpgg::data::synth::Texture;
use bpgg::data::{write_synthetic_dataset, DefectKind, SynthConfig};

use crate::args::{InspectArgs, SynthArgs};
use crate::progress;

pub fn inspect(args: InspectArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let limits = args.limits.to_limits();
    let total = count_files(&args.path)?;
    let bar = progress::bar(total as u64, "inspecting", quiet);
    let reports = inspect_dataset(&args.path, limits, || bar.inc(1))?;
    bar.finish_and_clear();
    let mut problems = 0;
    for report in &reports {
        println!("category {} ({})", report.name, report.dir.display());
        println!(
            "  {:<20} {:>6}  {:<19} {:<9} {:>15}",
            "folder", "images", "size (w x h)", "channels", "median coverage"
        );
        for f in &report.folders {
            let size = match (f.min_size, f.max_size) {
                (Some(a), Some(b)) if a == b => format!("{}x{}", a.0, a.1),
                (Some(a), Some(b)) => format!("{}-{} x {}-{}", a.0, b.0, a.1, b.1),
                _ => "-".into(),
            };
            let channels = f
                .channels
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let coverage = f
                .median_coverage()
                .map_or("-".into(), |c| format!("{:.2}%", c * 100.0));
            println!(
                "  {:<20} {:>6}  {:<19} {:<9} {:>15}",
                f.folder, f.images, size, channels, coverage
            );
        }
        for w in &report.warnings {
            println!("  warning: {w}");
        }
        if report.problems.is_empty() {
            println!("  no problems");
        } else {
            println!("  {} problem(s):", report.problems.len());
            for p in &report.problems {
                println!("  - {p}");
            }
        }
        problems += report.problems.len();
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn synth(args: SynthArgs) -> anyhow::Result<ExitCode> {
    let kinds = match args.kinds.as_str() {
        "classic" => DefectKind::ALL.to_vec(),
        "all" => DefectKind::EXTENDED.to_vec(),
        list => list
            .split(',')
            .map(|k| {
                DefectKind::from_name(k).with_context(|| {
                    format!(
                        "unknown defect kind `{k}`; choose classic, all or some of {}",
                        DefectKind::EXTENDED.map(|k| k.name()).join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    let texture = match args.texture.as_str() {
        "random" => None,
        name => Some(Texture::from_name(name).with_context(|| {
            format!(
                "unknown texture `{name}`; choose random or one of {}",
                Texture::ALL.map(|t| t.name()).join(", ")
            )
        })?),
    };
    let names: Vec<String> = match args.categories {
        None => vec![args.category.clone()],
        Some(n) => (0..n)
            .map(|i| format!("{}_{i:03}", args.category))
            .collect(),
    };
    for category in names {
        let config = SynthConfig {
            category,
            size: args.size,
            train_good: args.train_good,
            test_good: args.test_good,
            per_type: args.per_type,
            kinds: kinds.clone(),
            texture,
            variety: args.variety,
            defect_scale: args.defect_scale,
            seed: args.seed,
        };
        let dir = write_synthetic_dataset(&args.out, &config).with_context(|| {
            format!("writing a synthetic data set under {}", args.out.display())
        })?;
        println!("wrote {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
