//! `bpgg bench serve`: the service under load, beside `bpgg predict` on the same images in the
//! same run.
//!
//! A `bpgg serve` process is started on a free loopback port with a fresh data dir; a project
//! gets synthetic defect images with masks and normal images over HTTP and is fitted over HTTP.
//! Then `--clients` threads, each on its own keep-alive connection, send `--requests` predicts
//! (JSON answers) of synthetic query PNGs. Reported: requests/s, latency percentiles, errors,
//! and the server's resident memory after the first 200 requests, half way and at the end.
//!
//! The reference is `bpgg predict` (this binary, as a user runs it) with the model downloaded
//! from the service, on a folder holding the same query images, timed from start to exit; and
//! for the compute alone, the library loop that `bpgg predict` runs (decode on a loader thread,
//! `predict_prepared` in batches) without writing outputs. Both are timed before and after the
//! load, and the images over the mean of the two times make the reference rate: on a shared
//! machine whose load drifts during the run, both sides see it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use bpgg::data::image_io::load_rgb;
use bpgg::data::synth::{write_synthetic_dataset, DefectKind, SynthConfig};
use bpgg::data::ImageLimits;
use bpgg::model::FittedModel;
use bpgg_serve::client::Client;
use candle_core::Device;
use clap::Args;

/// Requests after which the server's memory is read the first time.
const EARLY_REQUESTS: usize = 200;
/// Seed of the synthetic data.
const SEED: u64 = 11;

#[derive(Debug, Args)]
pub struct BenchServeArgs {
    /// Concurrent clients, each with its own keep-alive connection.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Predict requests in all, at least 200 (the server's memory is read after 200, half way
    /// and at the end).
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Distinct synthetic query PNGs (sent round-robin).
    #[arg(long, default_value_t = 32)]
    pub images: usize,
    /// Side of the synthetic PNGs in pixels.
    #[arg(long, default_value_t = 256)]
    pub source_size: u32,
    /// The model's working size (`size` of the fit options).
    #[arg(long, default_value_t = bpgg::model::DEFAULT_IMAGE_SIZE)]
    pub size: u32,
    /// Images `bpgg predict` is timed on (the query images repeated).
    #[arg(long, default_value_t = 256)]
    pub reference_images: usize,
    /// The server's, `bpgg predict`'s and the library loop's device.
    #[command(flatten)]
    pub device: crate::device_args::DeviceArgs,
}

pub fn run(args: &BenchServeArgs) -> anyhow::Result<()> {
    ensure!(args.clients > 0, "--clients must be positive");
    ensure!(args.images > 0, "--images must be positive");
    ensure!(
        args.requests >= EARLY_REQUESTS,
        "--requests must be at least {EARLY_REQUESTS}"
    );
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let category = write_synthetic_dataset(
        dir.path(),
        &SynthConfig {
            category: "bench".into(),
            size: args.source_size,
            train_good: 4,
            test_good: args.images,
            per_type: 3,
            kinds: vec![DefectKind::Blob],
            seed: SEED,
            ..SynthConfig::default()
        },
    )?;
    let queries = png_files(&category.join("test").join("good"))?;
    let query_bytes: Vec<Vec<u8>> = queries
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .collect::<anyhow::Result<_>>()?;

    // Opened here first, so that a device that cannot be had stops the bench before anything
    // starts.
    let device = args.device.open()?;
    let choice = args.device.device.to_string();
    let server = ServerProcess::start(&dir.path().join("data"), &choice)?;
    let result = (|| -> anyhow::Result<()> {
        let mut client = Client::new(server.addr);
        let project = setup(&mut client, &category, args.size)?;
        let model_path = dir.path().join("model.bpgg");
        let model = client.get(&format!("/v1/projects/{project}/model"))?;
        ensure!(model.status == 200, "model download: {}", model.text());
        std::fs::write(&model_path, &model.body)?;
        println!(
            "serve: {} clients, {} predicts of {} synthetic {src}x{src} PNGs (model {} px, JSON \
             answers); server pid {}",
            args.clients,
            args.requests,
            queries.len(),
            args.size,
            server.child.id(),
            src = args.source_size,
        );
        let reference_dir = dir.path().join("reference");
        std::fs::create_dir_all(&reference_dir)?;
        for i in 0..args.reference_images.max(1) {
            let src = &queries[i % queries.len()];
            std::fs::copy(src, reference_dir.join(format!("{i:05}.png")))?;
        }
        let reference = Reference {
            device: &device,
            choice: &choice,
            model: &model_path,
            images: &reference_dir,
            out: &dir.path().join("predict-out"),
        };
        // The reference runs before and after the load, so that a machine whose load changes
        // during the run weighs on both sides alike.
        let before = reference.time()?;

        // Warm-up: every client once, untimed.
        load(
            server.addr,
            &project,
            &query_bytes,
            args.clients,
            args.clients,
        )?;
        let mut phases = Vec::new();
        let mut memory = Vec::new();
        // Memory is read after 200 requests, half way and at the end.
        let marks = [
            EARLY_REQUESTS,
            EARLY_REQUESTS.max(args.requests / 2),
            args.requests,
        ];
        let mut sent = 0;
        for mark in marks {
            if mark > sent {
                phases.push(load(
                    server.addr,
                    &project,
                    &query_bytes,
                    args.clients,
                    mark - sent,
                )?);
                memory.push((mark, server.memory()?));
                sent = mark;
            }
        }
        let all = phases
            .into_iter()
            .reduce(Phase::merged)
            .expect("at least one phase");
        let mut latencies = all.latencies_s.clone();
        latencies.sort_by(f64::total_cmp);
        let rps = all.latencies_s.len() as f64 / all.wall_s;
        let (p50, p95, p99) = (
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.95),
            percentile(&latencies, 0.99),
        );
        println!(
            "serve: {rps:.1} requests/s; latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms \
             (p99/p50 {:.2}); {} errors of {} requests",
            p50 * 1e3,
            p95 * 1e3,
            p99 * 1e3,
            p99 / p50,
            all.errors,
            all.latencies_s.len() + all.errors,
        );
        let rss: Vec<String> = memory
            .iter()
            .map(|(n, m)| format!("{:.1} MiB after {n}", m.rss_kib as f64 / 1024.0))
            .collect();
        let peak = memory.last().map_or(0, |(_, m)| m.peak_kib);
        println!(
            "serve: server RSS {} requests; peak {:.1} MiB",
            rss.join(", "),
            peak as f64 / 1024.0
        );
        if let Some(first) = &all.first_error {
            println!("serve: first error: {first}");
        }

        let after = reference.time()?;
        let n = args.reference_images.max(1) as f64;
        let rates = |(cli_s, lib_s): (f64, f64)| (n / cli_s, n / lib_s);
        let ((cli_before, lib_before), (cli_after, lib_after)) = (rates(before), rates(after));
        let cli_rate = n / ((before.0 + after.0) / 2.0);
        let lib_rate = n / ((before.1 + after.1) / 2.0);
        println!(
            "reference: `bpgg predict` {cli_rate:.1} images/s ({} images, process start to exit, \
             writing its maps, masks and overlays; {cli_before:.1} before the load, \
             {cli_after:.1} after); its library loop alone (decode, predict_prepared, batch 8, no \
             output) {lib_rate:.1} images/s ({lib_before:.1} before, {lib_after:.1} after)",
            args.reference_images.max(1)
        );
        println!(
            "ratio: serve throughput / bpgg predict {:.2}; / library loop {:.2}",
            rps / cli_rate,
            rps / lib_rate
        );
        Ok(())
    })();
    let stopped = server.stop();
    result?;
    let status = stopped?;
    println!("serve: SIGTERM → server exited with {status}");
    Ok(())
}

/// A project with 3 defect images (with masks) and 4 normal images, fitted at `size`.
fn setup(client: &mut Client, category: &Path, size: u32) -> anyhow::Result<String> {
    let created = client.json(
        "POST",
        "/v1/projects",
        &serde_json::json!({"name": "bench"}),
    )?;
    ensure!(created.status == 201, "create project: {}", created.text());
    let project = created.json()?["id"]
        .as_str()
        .context("no project id")?
        .to_string();
    let blob = DefectKind::Blob.name();
    for image in png_files(&category.join("test").join(blob))? {
        let up = client.send(
            "POST",
            &format!("/v1/projects/{project}/images?role=defect"),
            &std::fs::read(&image)?,
        )?;
        ensure!(up.status == 201, "upload: {}", up.text());
        let id = up.json()?["id"]
            .as_str()
            .context("no image id")?
            .to_string();
        let stem = image.file_stem().context("a png")?.to_string_lossy();
        let mask = category
            .join("ground_truth")
            .join(blob)
            .join(format!("{stem}_mask.png"));
        let put = client.send(
            "PUT",
            &format!("/v1/projects/{project}/images/{id}/mask"),
            &std::fs::read(&mask)?,
        )?;
        ensure!(put.status == 200, "mask: {}", put.text());
    }
    for image in png_files(&category.join("train").join("good"))? {
        let up = client.send(
            "POST",
            &format!("/v1/projects/{project}/images?role=normal"),
            &std::fs::read(&image)?,
        )?;
        ensure!(up.status == 201, "upload: {}", up.text());
    }
    let fit = client.json(
        "POST",
        &format!("/v1/projects/{project}/fit"),
        &serde_json::json!({"size": size}),
    )?;
    ensure!(fit.status == 200, "fit: {}", fit.text());
    let summary = fit.json()?;
    println!(
        "serve: fitted {} scoring on {} defect + {} normal images in {} ms over HTTP",
        summary["scoring"], summary["defects"], summary["normals"], summary["ms"]
    );
    Ok(project)
}

/// What a load phase measured.
#[derive(Debug, Default)]
struct Phase {
    latencies_s: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
    wall_s: f64,
}

impl Phase {
    fn merged(mut self, other: Phase) -> Phase {
        self.latencies_s.extend(other.latencies_s);
        self.errors += other.errors;
        self.first_error = self.first_error.or(other.first_error);
        self.wall_s += other.wall_s;
        self
    }
}

/// `count` predicts from `clients` threads (each takes the next request number until none is
/// left).
fn load(
    addr: SocketAddr,
    project: &str,
    images: &[Vec<u8>],
    clients: usize,
    count: usize,
) -> anyhow::Result<Phase> {
    let next = AtomicUsize::new(0);
    let phase = Mutex::new(Phase::default());
    let path = format!("/v1/projects/{project}/predict");
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                let mut client = Client::new(addr).with_timeout(Duration::from_secs(120));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let t = Instant::now();
                    let outcome = client.send("POST", &path, &images[i % images.len()]);
                    let elapsed = t.elapsed().as_secs_f64();
                    let mut p = phase.lock().unwrap_or_else(|e| e.into_inner());
                    match outcome {
                        Ok(r) if r.status == 200 => p.latencies_s.push(elapsed),
                        Ok(r) => {
                            p.errors += 1;
                            p.first_error
                                .get_or_insert_with(|| format!("{} {}", r.status, r.text()));
                        }
                        Err(e) => {
                            p.errors += 1;
                            p.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
            });
        }
    });
    let mut phase = phase.into_inner().unwrap_or_else(|e| e.into_inner());
    phase.wall_s = start.elapsed().as_secs_f64();
    Ok(phase)
}

/// The value at quantile `q` of sorted values (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The reference: `bpgg predict` on a folder of the query images, and its library loop.
struct Reference<'a> {
    device: &'a Device,
    /// `--device` of `bpgg predict`.
    choice: &'a str,
    model: &'a Path,
    images: &'a Path,
    out: &'a Path,
}

impl Reference<'_> {
    /// Seconds of `bpgg predict` (process start to exit) and of its library loop.
    fn time(&self) -> anyhow::Result<(f64, f64)> {
        if self.out.exists() {
            std::fs::remove_dir_all(self.out)
                .with_context(|| format!("cannot remove {}", self.out.display()))?;
        }
        let start = Instant::now();
        let out = Command::new(std::env::current_exe()?)
            .arg("-q")
            .arg("predict")
            .arg("--device")
            .arg(self.choice)
            .arg("--model")
            .arg(self.model)
            .arg(self.images)
            .arg("-o")
            .arg(self.out)
            .output()
            .context("cannot run bpgg predict")?;
        let cli_s = start.elapsed().as_secs_f64();
        ensure!(
            out.status.success(),
            "bpgg predict failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((cli_s, library_loop(self.model, self.images, self.device)?))
    }
}

/// Seconds the library loop of `bpgg predict` takes over the folder: a loader thread decodes
/// and prepares batches of 8 while this one runs `predict_prepared` (no output written).
fn library_loop(model_path: &Path, folder: &Path, device: &Device) -> anyhow::Result<f64> {
    let model = FittedModel::load(model_path, device)?;
    let encoder = model.encoder(device)?;
    let files = png_files(folder)?;
    let model = &model;
    let start = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (sender, batches) = std::sync::mpsc::sync_channel(1);
        let files = &files;
        scope.spawn(move || {
            for chunk in files.chunks(8) {
                let prepared: bpgg::Result<Vec<_>> = chunk
                    .iter()
                    .map(|f| model.prepare(&load_rgb(f, ImageLimits::default())?))
                    .collect();
                if sender.send(prepared).is_err() {
                    break;
                }
            }
        });
        for prepared in batches {
            model.predict_prepared(&encoder, &prepared?, None)?;
        }
        Ok(())
    })?;
    Ok(start.elapsed().as_secs_f64())
}

/// The `.png` files of a folder, sorted.
fn png_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    files.retain(|p| p.extension().is_some_and(|e| e == "png"));
    files.sort();
    Ok(files)
}

/// Resident and peak memory of a process, in KiB.
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss_kib: u64,
    peak_kib: u64,
}

/// A `bpgg serve` child process on a free loopback port.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(data_dir: &Path, device: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg("--device")
            .arg(device)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--bind")
            .arg("127.0.0.1:0")
            .env_remove("BPGG_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start bpgg serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        // Keep reading what the server prints, so that its last line never meets a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            bail!(
                "bpgg serve did not print its address (it printed `{}`)",
                line.trim()
            );
        };
        Ok(Self { child, addr })
    }

    fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("cannot read the server's /proc status")?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in the server's /proc status"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            peak_kib: field("VmHWM:")?,
        })
    }

    /// SIGTERM, then waits for the exit.
    fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        if !sent.is_ok_and(|s| s.success()) {
            self.child.kill()?;
        }
        Ok(self.child.wait()?)
    }
}
