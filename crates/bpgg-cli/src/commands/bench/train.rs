//! `bpgg bench train`: one meta-training step (head forward, prototypes, bidirectional loss,
//! backward, AdamW update) on an episode of random unit features, bpgg against the same step in
//! PyTorch (`scripts/bench_train_step.py`).

use anyhow::ensure;
use bpgg::model::{HeadConfig, ProjectionHead};
use bpgg::ops::l2_normalize;
use bpgg::train::{episode_loss, EpisodeTensors, LossConfig, Optimizer, OptimizerKind};
use candle_core::Tensor;

use super::{compute_units, json_f64, time_runs, BenchTrainArgs, Timing};

/// Milliseconds per second.
const MS: f64 = 1e3;

pub fn run(args: &BenchTrainArgs) -> anyhow::Result<()> {
    ensure!(
        args.shots > 0 && args.queries > 0 && args.grid > 0,
        "--shots, --queries and --grid must be positive"
    );
    let dev = args.device.open()?;
    let threads = candle_core::utils::get_num_threads();
    let (c, g) = (args.channels, args.grid);
    println!(
        "one training step: {} defect + {} normal supports, {} defect + {} normal queries, \
         {c} channels on a {g}x{g} grid, head width {}; median and min over {} steps after {} \
         warm-up; {} for bpgg and for pytorch",
        args.shots,
        args.normal_shots,
        args.queries,
        args.normal_queries,
        args.hidden,
        args.repeats.max(1),
        args.warmup,
        compute_units(&dev),
    );
    let feats = |n: usize| -> anyhow::Result<Tensor> {
        Ok(l2_normalize(
            &Tensor::randn(0f32, 1.0, (n, c, g, g), &dev)?,
            1,
        )?)
    };
    let mut mask = vec![0f32; g * g];
    for y in g / 4..g / 2 {
        for x in g / 4..g / 2 {
            mask[y * g + x] = 1.0;
        }
    }
    let masks = |n: usize| Tensor::from_vec(mask.repeat(n), (n, 1, g, g), &dev);
    let queries = args.queries + args.normal_queries;
    let query_masks = Tensor::cat(
        &[
            masks(args.queries)?,
            Tensor::zeros(
                (args.normal_queries, 1, g, g),
                candle_core::DType::F32,
                &dev,
            )?,
        ],
        0,
    )?;
    let episode = EpisodeTensors {
        defect_feats: feats(args.shots)?,
        defect_masks: masks(args.shots)?,
        normal_feats: (args.normal_shots > 0)
            .then(|| feats(args.normal_shots))
            .transpose()?,
        query_feats: feats(queries)?,
        query_masks,
        defect_queries: args.queries,
    };
    let head = ProjectionHead::init(
        HeadConfig {
            channels: c,
            hidden: args.hidden,
        },
        0,
        &dev,
    )?;
    let vars = head.to_vars()?;
    let mut optimizer = Optimizer::new(OptimizerKind::AdamW, 1e-4, &vars)?;
    let loss = LossConfig {
        tau: bpgg::guidance::DEFAULT_TAU,
        reverse_weight: 1.0,
        class_balance: true,
    };
    let bpgg = time_runs(args.warmup, args.repeats, || {
        let head = ProjectionHead::from_vars(&vars);
        let parts = episode_loss(&head, &episode, &loss)?;
        let grads = parts.total.backward()?;
        optimizer.step(&vars, &grads, 1e-3)?;
        bpgg::device::synchronize(&dev)?;
        Ok(())
    })?;
    let reference = args.reference.run_script(
        "bench_train_step.py",
        &[
            format!("--channels={c}"),
            format!("--hidden={}", args.hidden),
            format!("--grid={g}"),
            format!("--shots={}", args.shots),
            format!("--normal-shots={}", args.normal_shots),
            format!("--queries={}", args.queries),
            format!("--normal-queries={}", args.normal_queries),
            format!("--repeats={}", args.repeats.max(1)),
            format!("--warmup={}", args.warmup),
            format!("--threads={threads}"),
        ],
        &dev,
    );
    let line = format!(
        "train step: bpgg {:.1} ms (min {:.1}), {:.1} episodes/s",
        bpgg.median_s * MS,
        bpgg.min_s * MS,
        1.0 / bpgg.median_s
    );
    match reference {
        Ok(json) => {
            let torch = Timing {
                median_s: json_f64(&json, "median_s")?,
                min_s: json_f64(&json, "min_s")?,
            };
            println!(
                "{line}; pytorch {:.1} ms (min {:.1}), {:.1} episodes/s; ratio {:.2}",
                torch.median_s * MS,
                torch.min_s * MS,
                1.0 / torch.median_s,
                bpgg.median_s / torch.median_s
            );
        }
        Err(reason) => println!("{line}; pytorch reference skipped ({reason})"),
    }
    Ok(())
}
