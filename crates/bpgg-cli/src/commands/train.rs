//! `bpgg train`: episodic meta-training of the projection head.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

use bpgg::train::{train, EpisodeShape, LossConfig, TrainConfig, TrainEvent, TrainSource};
use tracing::info;

use crate::args::TrainArgs;
use crate::progress;

/// The library configuration of a run.
fn config(args: &TrainArgs) -> anyhow::Result<TrainConfig> {
    let mut sources = vec![TrainSource {
        dir: args.data.join(&args.category),
        base_types: args.base_types.clone(),
        val_types: args.val_types.clone(),
    }];
    for extra in &args.extra_base {
        let (dir, types) = match extra.rsplit_once(':') {
            Some((dir, types)) if !types.contains('/') => (
                dir,
                types.split(',').map(str::to_string).collect::<Vec<_>>(),
            ),
            _ => (extra.as_str(), Vec::new()),
        };
        sources.push(TrainSource {
            dir: PathBuf::from(dir),
            base_types: types,
            val_types: Vec::new(),
        });
    }
    let config = TrainConfig {
        sources,
        backbone: args.backbone.to_config(),
        image_size: args.size,
        head_hidden: args.head_width,
        episode: EpisodeShape {
            shots: args.shots,
            normal_shots: args.normal_shots,
            queries: args.queries,
            normal_queries: args.normal_queries,
        },
        loss: LossConfig {
            tau: args.tau,
            reverse_weight: args.reverse_weight,
            class_balance: !args.no_class_balance,
        },
        optimizer: args.optimizer,
        lr: args.lr,
        weight_decay: args.weight_decay,
        episodes: args.episodes,
        augment: !args.no_augment,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        val_every: args.val_every,
        val_episodes: args.val_episodes,
    };
    config.validate()?;
    Ok(config)
}

pub fn run(args: TrainArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let config = config(&args)?;
    let device = args.device.open()?;
    let encode_bar = progress::bar(0, "encoding", quiet);
    let bar = progress::bar(config.episodes as u64, "training", quiet);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut last_val = String::from("val AP –");
    let mut loss_avg: Option<f32> = None;
    let outcome = train(
        &config,
        &args.output,
        args.resume,
        args.limits.to_limits(),
        &device,
        |event| {
            match event {
                TrainEvent::Encoding { done, total } => {
                    encode_bar.set_length(total as u64);
                    encode_bar.set_position(done as u64);
                    if done == total {
                        encode_bar.finish_and_clear();
                    }
                }
                TrainEvent::Start {
                    episode,
                    total,
                    initial_val_ap,
                } => {
                    if episode > 0 {
                        info!("resuming at episode {episode} of {total}");
                    } else if let (Some(ap), false) = (initial_val_ap, quiet) {
                        bar.suspend(|| {
                            eprintln!("episode      0  val AP {ap:.4} (untrained head)")
                        });
                    }
                    bar.set_position(episode as u64);
                }
                TrainEvent::Step { episode, loss, .. } => {
                    let avg = match loss_avg {
                        Some(a) => 0.95 * a + 0.05 * loss,
                        None => loss,
                    };
                    loss_avg = Some(avg);
                    bar.set_position(episode as u64);
                    bar.set_message(format!("loss {avg:.4} · {last_val}"));
                }
                TrainEvent::Validated { entry, best } => {
                    last_val = format!("val AP {:.3}{}", entry.val_ap, if best { "*" } else { "" });
                    bar.suspend(|| {
                        if !quiet {
                            eprintln!(
                                "episode {:>6}  loss {:.4}  query {:.4}  reverse {}  lr {:.2e}  val AP {:.4}{}",
                                entry.episode,
                                entry.loss,
                                entry.query_loss,
                                entry
                                    .reverse_loss
                                    .map(|r| format!("{r:.4}"))
                                    .unwrap_or_else(|| "–".into()),
                                entry.lr,
                                entry.val_ap,
                                if best { "  (best)" } else { "" }
                            )
                        }
                    });
                }
                TrainEvent::Checkpoint { episode, path } => {
                    info!("checkpoint after {episode} episodes: {}", path.display());
                }
            }
            ControlFlow::Continue(())
        },
    )
    .map_err(|e| match e {
        bpgg::Error::State(_) => anyhow::Error::new(e).context("training stopped (try a lower --lr)"),
        e => e.into(),
    })?;
    bar.finish_and_clear();
    let (best_episode, best_ap) = outcome.state.best.unwrap_or((0, f64::NAN));
    let initial = outcome
        .state
        .initial_val_ap
        .map(|a| format!("{a:.4}"))
        .unwrap_or_else(|| "–".into());
    println!(
        "trained {} episodes · {:.1} episodes/s (encoding {:.1} s) · val AP {initial} untrained, \
         best {best_ap:.4} at episode {best_episode}",
        outcome.state.episode, outcome.episodes_per_second, outcome.encode_seconds
    );
    println!("best: {}", outcome.best.display());
    println!("last: {}", outcome.last.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    #[test]
    fn no_optional_flags_give_the_library_default() {
        let cli =
            Cli::try_parse_from(["bpgg", "train", "--data", "d", "--category", "c", "-o", "o"])
                .unwrap();
        let Command::Train(args) = cli.command else {
            panic!("parsed as another command");
        };
        let built = config(&args).unwrap();
        let expected = TrainConfig {
            sources: vec![TrainSource {
                dir: PathBuf::from("d").join("c"),
                base_types: Vec::new(),
                val_types: Vec::new(),
            }],
            ..TrainConfig::default()
        };
        assert_eq!(built, expected);
    }
}
