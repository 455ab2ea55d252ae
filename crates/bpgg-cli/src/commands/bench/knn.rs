//! `bpgg bench knn`: the k-NN part of `knn` and `hybrid` scoring (each query pixel's distance
//! to its nearest normal support pixel, `MemoryBank::score`) for growing numbers of normal
//! images, bpgg against the same exact search in PyTorch (`scripts/bench_knn.py`: chunked
//! matmul and max, as PatchCore-style code does it).

use anyhow::ensure;
use bpgg::baseline::{KnnConfig, MemoryBank};
use bpgg::ops::l2_normalize;
use candle_core::Tensor;

use super::{compute_units, json_f64, time_runs, BenchKnnArgs, Timing};

/// Milliseconds per second.
const MS: f64 = 1e3;

pub fn run(args: &BenchKnnArgs) -> anyhow::Result<()> {
    ensure!(
        args.grid > 0 && args.channels > 0 && args.queries > 0,
        "--grid, --channels and --queries must be positive"
    );
    ensure!(
        args.normal.iter().all(|&n| n > 0),
        "--normal counts must be positive"
    );
    let dev = args.device.open()?;
    let threads = candle_core::utils::get_num_threads();
    let (c, g) = (args.channels, args.grid);
    println!(
        "k-NN distance of {} query images ({c} channels on a {g}x{g} grid: 256 px at stride 8) to \
         a bank of every pixel of N normal images; exact search; median and min per query image \
         over {} runs after {} warm-up; {} for bpgg and for pytorch",
        args.queries,
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
    let queries = feats(args.queries)?;
    for &normal in &args.normal {
        let bank = MemoryBank::new(&feats(normal)?, &KnnConfig::default())?;
        let bpgg = time_runs(args.warmup, args.repeats, || {
            bank.score(&queries)?;
            bpgg::device::synchronize(&dev)?;
            Ok(())
        })?
        .per(args.queries);
        let reference = args.reference.run_script(
            "bench_knn.py",
            &[
                "--bank".into(),
                bank.len().to_string(),
                "--queries".into(),
                (args.queries * g * g).to_string(),
                "--per".into(),
                args.queries.to_string(),
                "--channels".into(),
                c.to_string(),
                "--repeats".into(),
                args.repeats.max(1).to_string(),
                "--warmup".into(),
                args.warmup.to_string(),
                "--threads".into(),
                threads.to_string(),
            ],
            &dev,
        );
        let head = format!(
            "{normal:>4} normal images ({:>7} bank rows): bpgg {:>7.2} ms/query (min {:.2})",
            bank.len(),
            bpgg.median_s * MS,
            bpgg.min_s * MS
        );
        match reference {
            Ok(json) => {
                let torch = Timing {
                    median_s: json_f64(&json, "median_s_per_image")?,
                    min_s: json_f64(&json, "min_s_per_image")?,
                };
                println!(
                    "{head}, pytorch {:.2} ms/query (min {:.2}), ratio {:.2}",
                    torch.median_s * MS,
                    torch.min_s * MS,
                    bpgg.median_s / torch.median_s
                );
            }
            Err(reason) => println!("{head}, pytorch reference skipped ({reason})"),
        }
    }
    Ok(())
}
