//! Times [`bpgg_metrics::evaluate`] on random anomaly maps and optionally writes them in the
//! bench format of `scripts/metrics_reference.py` (see its docstring) for a Python comparison.
//!
//! ```text
//! cargo run --release -p bpgg-metrics --example evaluate_timing -- \
//!     [--maps 100] [--size 256] [--repeats 5] [--dir /tmp/metrics-bench]
//! python3 scripts/metrics_reference.py bench --dir /tmp/metrics-bench --repeats 3
//! ```

use std::path::PathBuf;
use std::time::Instant;

use bpgg_metrics::{evaluate, MapRef, RankedScores, DEFAULT_FPR_LIMIT};

/// Score added to defect pixels, so that the metrics land in a realistic middle range.
const DEFECT_BOOST: f32 = 0.3;
/// Fraction of images (in percent) that get defect blobs.
const DEFECTIVE_PERCENT: u64 = 50;

struct Args {
    maps: usize,
    size: usize,
    repeats: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        maps: 100,
        size: 256,
        repeats: 5,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--maps" => args.maps = number()?,
            "--size" => args.size = number()?,
            "--repeats" => args.repeats = number()?.max(1),
            "--dir" => args.dir = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [0, 1) with 24 random bits.
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32
    }
}

fn random_maps(count: usize, size: usize) -> Vec<(Vec<f32>, Vec<bool>)> {
    let mut rng = Rng(2022);
    (0..count)
        .map(|_| {
            let mut mask = vec![false; size * size];
            if rng.below(100) < DEFECTIVE_PERCENT {
                for _ in 0..1 + rng.below(3) {
                    let (cx, cy) = (rng.below(size as u64) as i64, rng.below(size as u64) as i64);
                    let radius = 1 + rng.below(size as u64 / 8) as i64;
                    for y in (cy - radius).max(0)..(cy + radius).min(size as i64) {
                        for x in (cx - radius).max(0)..(cx + radius).min(size as i64) {
                            if (x - cx).pow(2) + (y - cy).pow(2) <= radius * radius {
                                mask[y as usize * size + x as usize] = true;
                            }
                        }
                    }
                }
            }
            let scores = mask
                .iter()
                .map(|&defect| rng.unit() + if defect { DEFECT_BOOST } else { 0.0 })
                .collect();
            (scores, mask)
        })
        .collect()
}

fn write_bench_dir(
    dir: &PathBuf,
    maps: &[(Vec<f32>, Vec<bool>)],
    size: usize,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let scores: Vec<u8> = maps
        .iter()
        .flat_map(|(scores, _)| scores.iter().flat_map(|s| s.to_le_bytes()))
        .collect();
    let masks: Vec<u8> = maps
        .iter()
        .flat_map(|(_, mask)| mask.iter().map(|&d| u8::from(d)))
        .collect();
    std::fs::write(dir.join("maps.f32"), scores)?;
    std::fs::write(dir.join("masks.u8"), masks)?;
    std::fs::write(
        dir.join("shape.json"),
        format!(
            r#"{{"n": {}, "height": {size}, "width": {size}}}"#,
            maps.len()
        ),
    )
}

/// CPU time of this thread in seconds, from `/proc/thread-self/stat` (Linux; clock-tick
/// resolution, usually 10 ms). `None` elsewhere. On a shared machine the wall time overstates
/// the cost; CPU time does not.
fn thread_cpu_seconds() -> Option<f64> {
    /// Linux reports utime and stime in USER_HZ ticks, 100 per second on every common target.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / TICKS_PER_SECOND)
}

/// Median seconds of `f` over a few runs.
fn median_time<T>(mut f: impl FnMut() -> T) -> f64 {
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Where the time of one evaluation goes: the ranking (pack + sort) and each metric's sweep.
fn breakdown(owned: &[(Vec<f32>, Vec<bool>)]) -> Result<(), bpgg_metrics::Error> {
    let scores: Vec<f32> = owned.iter().flat_map(|(s, _)| s.iter().copied()).collect();
    let labels: Vec<bool> = owned.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    let ranked = RankedScores::new(&scores, &labels)?;
    let rank = median_time(|| RankedScores::new(&scores, &labels));
    let auroc = median_time(|| ranked.roc_auc());
    let ap = median_time(|| ranked.average_precision());
    let f1 = median_time(|| ranked.f1_max());
    println!(
        "breakdown (median ms): rank {:.1}, roc_auc sweep {:.1}, AP sweep {:.1}, F1 sweep {:.1}",
        rank * 1e3,
        auroc * 1e3,
        ap * 1e3,
        f1 * 1e3
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let owned = random_maps(args.maps, args.size);
    let maps: Vec<MapRef> = owned
        .iter()
        .map(|(scores, mask)| MapRef::new(scores, mask, args.size, args.size))
        .collect::<Result<_, _>>()?;
    if let Some(dir) = &args.dir {
        write_bench_dir(dir, &owned, args.size)?;
        eprintln!("wrote {}", dir.display());
    }
    let mut times = Vec::with_capacity(args.repeats);
    let mut metrics = None;
    let cpu_start = thread_cpu_seconds();
    for _ in 0..args.repeats {
        let start = Instant::now();
        metrics = Some(evaluate(&maps, &[], DEFAULT_FPR_LIMIT)?);
        times.push(start.elapsed().as_secs_f64());
    }
    let cpu_per_run = cpu_start
        .zip(thread_cpu_seconds())
        .map(|(start, end)| (end - start) / args.repeats as f64);
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "evaluate: {} maps of {}x{} ({} pixels), median {:.1} ms over {} runs (min {:.1} ms)",
        args.maps,
        args.size,
        args.size,
        args.maps * args.size * args.size,
        median * 1e3,
        args.repeats,
        times[0] * 1e3
    );
    if let Some(cpu) = cpu_per_run {
        println!("evaluate: mean CPU time {:.1} ms per run", cpu * 1e3);
    }
    println!("{metrics:?}");
    breakdown(&owned)?;
    Ok(())
}
