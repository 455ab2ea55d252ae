//! The training loop: seeded episodes, one optimiser step each, validation and checkpoints.
//!
//! Every episode's randomness comes from `(seed, episode index)` alone and the optimiser state
//! is saved whole, so a run resumed from `last.safetensors` continues exactly as the
//! uninterrupted run would have.

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;

use super::checkpoint::{load_checkpoint, save_checkpoint, Checkpoint, HistoryEntry, TrainState};
use super::config::TrainConfig;
use super::data::{EpisodeDraw, Flip, TrainSet};
use super::loss::{episode_loss, EpisodeTensors};
use super::optim::Optimizer;
use crate::data::image_io::ImageLimits;
use crate::guidance::{defect_probability, to_anomaly_map, AnomalyMapConfig};
use crate::io::write_atomic;
use crate::model::{Encoder, HeadConfig, ProjectionHead};
use crate::prototype::{build_prototypes, PrototypeConfig};
use crate::rng::SplitMix64;
use crate::{Error, Result};

/// File names inside the output folder.
pub const LAST_CHECKPOINT: &str = "last.safetensors";
pub const BEST_CHECKPOINT: &str = "best.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const HISTORY_FILE: &str = "history.csv";

/// What the loop reports as it goes.
#[derive(Debug)]
pub enum TrainEvent<'a> {
    /// Base images encoded so far.
    Encoding {
        done: usize,
        total: usize,
    },
    /// Training starts (or resumes) at `episode` of `total`; `initial_val_ap` is the validation
    /// pixel AP of the untrained head (the training-free features).
    Start {
        episode: usize,
        total: usize,
        initial_val_ap: Option<f64>,
    },
    /// One episode done.
    Step {
        episode: usize,
        loss: f32,
        lr: f64,
    },
    Validated {
        entry: &'a HistoryEntry,
        best: bool,
    },
    /// `last.safetensors` was written after `episode` episodes.
    Checkpoint {
        episode: usize,
        path: &'a Path,
    },
}

/// What a finished (or stopped) run leaves.
#[derive(Debug)]
pub struct TrainOutcome {
    pub state: TrainState,
    pub last: PathBuf,
    pub best: PathBuf,
    /// Training steps per second (episode drawing, forward, backward, update; validation and
    /// checkpoints excluded), over the episodes run in this call.
    pub episodes_per_second: f64,
    /// Seconds spent decoding and encoding the base images.
    pub encode_seconds: f64,
    /// Whether the callback stopped the run early.
    pub stopped: bool,
}

/// Trains a projection head into `out_dir`.
///
/// With `resume`, continues from `out_dir/last.safetensors` (whose configuration must equal
/// `config`); without, refuses a folder that already holds a run. `on_event` may return
/// `ControlFlow::Break` on a [`TrainEvent::Checkpoint`] to stop there (the checkpoint is
/// whole).
pub fn train(
    config: &TrainConfig,
    out_dir: &Path,
    resume: bool,
    limits: ImageLimits,
    device: &Device,
    mut on_event: impl FnMut(TrainEvent<'_>) -> ControlFlow<()>,
) -> Result<TrainOutcome> {
    config.validate()?;
    let resumed = open_run(config, out_dir, resume, device)?;
    let encode_start = Instant::now();
    let encoder = Encoder::new(&config.backbone, device)?;
    let set = TrainSet::build(
        &config.sources,
        &encoder,
        config.image_size,
        limits,
        config.seed,
        |done, total| {
            let _ = on_event(TrainEvent::Encoding { done, total });
        },
    )?;
    set.check(config.episode)?;
    let encode_seconds = encode_start.elapsed().as_secs_f64();
    let mut run = Run::start(config, out_dir, set, resumed, device)?;

    if run.state.episode == 0 {
        run.state.initial_val_ap = Some(run.validate()?);
    }
    let _ = on_event(TrainEvent::Start {
        episode: run.state.episode,
        total: config.episodes,
        initial_val_ap: run.state.initial_val_ap,
    });
    let mut step_seconds = 0.0;
    let mut steps_here = 0usize;
    let mut stopped = false;
    while run.state.episode < config.episodes {
        let start = Instant::now();
        let (loss, lr) = run.step()?;
        step_seconds += start.elapsed().as_secs_f64();
        steps_here += 1;
        let episode = run.state.episode;
        let _ = on_event(TrainEvent::Step { episode, loss, lr });

        let done = episode == config.episodes;
        if episode % config.val_every == 0 || done {
            let best = run.validate_and_keep_best(lr)?;
            let entry = run.state.history.last().expect("just validated");
            let _ = on_event(TrainEvent::Validated { entry, best });
        }
        if episode % config.checkpoint_every == 0 || done {
            run.checkpoint()?;
            let flow = on_event(TrainEvent::Checkpoint {
                episode,
                path: &run.last_path,
            });
            if flow.is_break() && !done {
                stopped = true;
                break;
            }
        }
    }
    Ok(TrainOutcome {
        state: run.state,
        last: run.last_path,
        best: run.best_path,
        episodes_per_second: if step_seconds > 0.0 {
            steps_here as f64 / step_seconds
        } else {
            0.0
        },
        encode_seconds,
        stopped,
    })
}

/// Opens the run folder: with `resume`, the checkpoint to continue (same settings required, stale
/// temp files removed); without, refuses a folder that already holds a run.
fn open_run(
    config: &TrainConfig,
    out_dir: &Path,
    resume: bool,
    device: &Device,
) -> Result<Option<Checkpoint>> {
    let last_path = out_dir.join(LAST_CHECKPOINT);
    let resumed = match (resume, last_path.exists()) {
        (true, true) => {
            let ckpt = load_checkpoint(&last_path, device)?;
            let diff = ckpt.config.differences(config);
            if !diff.is_empty() {
                return Err(Error::invalid_data(
                    &last_path,
                    format!(
                        "was trained with other settings ({}); resume with the same ones",
                        diff.join(", ")
                    ),
                ));
            }
            // A run killed while writing leaves hidden temp files; they are garbage now.
            crate::io::remove_stale_temp_files(out_dir)?;
            Some(ckpt)
        }
        (true, false) => {
            return Err(Error::TrainingRun {
                path: out_dir.to_path_buf(),
                exists: false,
            })
        }
        (false, true) => {
            return Err(Error::TrainingRun {
                path: out_dir.to_path_buf(),
                exists: true,
            })
        }
        (false, false) => None,
    };
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    Ok(resumed)
}

/// A run in progress: the encoded data, the head's variables, the optimiser and where training
/// stands.
struct Run<'a> {
    config: &'a TrainConfig,
    out_dir: &'a Path,
    last_path: PathBuf,
    best_path: PathBuf,
    set: TrainSet,
    vars: [candle_core::Var; 4],
    optimizer: Optimizer,
    state: TrainState,
    /// The validation episodes (the same at every validation).
    val_draws: Vec<EpisodeDraw>,
    /// Losses since the last validation.
    window: Window,
}

impl<'a> Run<'a> {
    /// A fresh head (or the resumed one with its optimiser state), and the run's config file.
    fn start(
        config: &'a TrainConfig,
        out_dir: &'a Path,
        set: TrainSet,
        resumed: Option<Checkpoint>,
        device: &Device,
    ) -> Result<Self> {
        let last_path = out_dir.join(LAST_CHECKPOINT);
        let channels = set.images[0].features.dim(1)?;
        let (head, state) = match &resumed {
            Some(c) => (c.head.clone(), c.state.clone()),
            None => {
                let head_config = HeadConfig {
                    channels,
                    hidden: config.head_hidden,
                };
                (
                    ProjectionHead::init(head_config, config.seed, device)?,
                    TrainState::default(),
                )
            }
        };
        if head.config().channels != channels {
            return Err(Error::invalid_data(
                &last_path,
                format!(
                    "head takes {} channels but the backbone gives {channels}",
                    head.config().channels
                ),
            ));
        }
        let vars = head.to_vars()?;
        let mut optimizer = Optimizer::new(config.optimizer, config.weight_decay, &vars)?;
        if let Some(c) = &resumed {
            optimizer.restore(&last_path, c.optimizer_steps, |n| {
                c.optimizer.get(n).cloned()
            })?;
        }
        write_atomic(
            &out_dir.join(CONFIG_FILE),
            serde_json::to_string_pretty(config)
                .map_err(|source| Error::Json {
                    path: out_dir.join(CONFIG_FILE),
                    source,
                })?
                .as_bytes(),
        )?;
        let val_draws: Vec<EpisodeDraw> = (0..config.val_episodes)
            .map(|i| {
                let mut rng = SplitMix64::with_label(config.seed, &format!("validation {i}"));
                set.draw(&set.val, config.episode, &mut rng)
            })
            .collect();
        Ok(Self {
            config,
            out_dir,
            last_path,
            best_path: out_dir.join(BEST_CHECKPOINT),
            set,
            vars,
            optimizer,
            state,
            val_draws,
            window: Window::default(),
        })
    }

    fn head(&self) -> ProjectionHead {
        ProjectionHead::from_vars(&self.vars)
    }

    /// One episode: draw it from (seed, episode number) alone, so a resumed run draws what an
    /// uninterrupted one would; loss, backward, update. Returns the loss and learning rate.
    fn step(&mut self) -> Result<(f32, f64)> {
        let config = self.config;
        let i = self.state.episode;
        let mut rng = SplitMix64::with_label(config.seed, &format!("episode {i}"));
        let draw = self.set.draw(&self.set.train, config.episode, &mut rng);
        let episode = episode_tensors(&self.set, &draw, config.augment.then_some(&mut rng))?;
        let parts = episode_loss(&self.head(), &episode, &config.loss)?;
        let loss = parts.total.to_scalar::<f32>()?;
        if !loss.is_finite() {
            return Err(Error::State(format!(
                "the training loss became {loss} at episode {}",
                i + 1
            )));
        }
        let grads = parts.total.backward()?;
        let lr = config.lr_at(i);
        self.optimizer.step(&self.vars, &grads, lr)?;
        self.window.add(loss, parts.query, parts.reverse);
        self.state.episode = i + 1;
        Ok((loss, lr))
    }

    /// Validation pixel AP of the current head.
    fn validate(&self) -> Result<f64> {
        validate(&self.set, &self.val_draws, &self.head(), self.config)
    }

    /// Validates, records the history entry and keeps `best.safetensors` when this is the best
    /// head so far; returns whether it was.
    fn validate_and_keep_best(&mut self, lr: f64) -> Result<bool> {
        let val_ap = self.validate()?;
        let entry = self.window.take(self.state.episode, lr, val_ap);
        let best = self.state.best.is_none_or(|(_, ap)| val_ap > ap);
        if best {
            self.state.best = Some((self.state.episode, val_ap));
        }
        self.state.history.push(entry);
        if best {
            save_checkpoint(
                &self.best_path,
                self.config,
                &self.state,
                &self.head(),
                None,
            )?;
        }
        Ok(best)
    }

    /// Writes `last.safetensors` (head and optimiser) and the history.
    fn checkpoint(&self) -> Result<()> {
        let optim = self.optimizer.named_state();
        save_checkpoint(
            &self.last_path,
            self.config,
            &self.state,
            &self.head(),
            Some((&optim, self.optimizer.steps())),
        )?;
        write_atomic(
            &self.out_dir.join(HISTORY_FILE),
            history_csv(&self.state).as_bytes(),
        )
    }
}

/// The tensors of a drawn episode; with `augment`, every image gets a random flip.
pub fn episode_tensors(
    set: &TrainSet,
    draw: &EpisodeDraw,
    augment: Option<&mut SplitMix64>,
) -> Result<EpisodeTensors> {
    let count = draw.defect_support.len()
        + draw.normal_support.len()
        + draw.queries.len()
        + draw.normal_queries.len();
    let flips: Vec<Flip> = match augment {
        Some(rng) => (0..count).map(|_| Flip::random(rng)).collect(),
        None => vec![Flip::default(); count],
    };
    let (k, n) = (draw.defect_support.len(), draw.normal_support.len());
    let (defect_feats, defect_masks) = set.stack(&draw.defect_support, &flips[..k])?;
    let normal_feats = if n > 0 {
        Some(set.stack(&draw.normal_support, &flips[k..k + n])?.0)
    } else {
        None
    };
    let queries: Vec<usize> = draw
        .queries
        .iter()
        .chain(&draw.normal_queries)
        .copied()
        .collect();
    let (query_feats, query_masks) = set.stack(&queries, &flips[k + n..])?;
    Ok(EpisodeTensors {
        defect_feats,
        defect_masks,
        normal_feats,
        query_feats,
        query_masks,
        defect_queries: draw.queries.len(),
    })
}

/// Pixel AP of the BPGG maps (at the model size, smoothed as at inference) of the validation
/// queries, pooled over all validation episodes.
fn validate(
    set: &TrainSet,
    draws: &[EpisodeDraw],
    head: &ProjectionHead,
    config: &TrainConfig,
) -> Result<f64> {
    let size = config.image_size as usize;
    let mut scores: Vec<f32> = Vec::new();
    let mut labels: Vec<bool> = Vec::new();
    let map_config = AnomalyMapConfig::default();
    for draw in draws {
        let e = episode_tensors(set, draw, None)?;
        let support = head.forward(&e.defect_feats)?;
        let normal = e
            .normal_feats
            .as_ref()
            .map(|n| head.forward(n))
            .transpose()?;
        let bank = build_prototypes(
            &support,
            &e.defect_masks,
            normal.as_ref(),
            &PrototypeConfig::default(),
        )?;
        let prob = defect_probability(&head.forward(&e.query_feats)?, &bank, config.loss.tau)?;
        let maps = to_anomaly_map(&prob, size, size, &map_config)?;
        scores.extend(maps.flatten_all()?.to_vec1::<f32>()?);
        for &i in draw.queries.iter().chain(&draw.normal_queries) {
            let m = set.images[i].mask.flatten_all()?.to_vec1::<f32>()?;
            labels.extend(m.into_iter().map(|v| v > 0.5));
        }
    }
    Ok(bpgg_metrics::average_precision(&scores, &labels)?)
}

/// Running sums between two validations.
#[derive(Debug, Default)]
struct Window {
    n: usize,
    loss: f64,
    query: f64,
    reverse: f64,
    reverse_n: usize,
}

impl Window {
    fn add(&mut self, loss: f32, query: f32, reverse: Option<f32>) {
        self.n += 1;
        self.loss += f64::from(loss);
        self.query += f64::from(query);
        if let Some(r) = reverse {
            self.reverse += f64::from(r);
            self.reverse_n += 1;
        }
    }

    fn take(&mut self, episode: usize, lr: f64, val_ap: f64) -> HistoryEntry {
        let n = self.n.max(1) as f64;
        let entry = HistoryEntry {
            episode,
            loss: self.loss / n,
            query_loss: self.query / n,
            reverse_loss: (self.reverse_n > 0).then(|| self.reverse / self.reverse_n as f64),
            lr,
            val_ap,
        };
        *self = Self::default();
        entry
    }
}

fn history_csv(state: &TrainState) -> String {
    let mut out = String::from("episode,loss,query_loss,reverse_loss,lr,val_ap\n");
    for h in &state.history {
        let reverse = h
            .reverse_loss
            .map(|r| format!("{r:.6}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{:.6},{:.6},{reverse},{:.3e},{:.6}",
            h.episode, h.loss, h.query_loss, h.lr, h.val_ap
        );
    }
    out
}
