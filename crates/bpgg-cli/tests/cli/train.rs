//! `bpgg train` → `bpgg fit --checkpoint` → `bpgg predict`, refusals, and a run killed mid-way.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{bpgg, s, small_dataset, stderr, stdout};

fn train_args<'a>(cat: &'a Path, out: &'a Path, episodes: &'a str) -> Vec<&'a str> {
    let data = cat.parent().unwrap();
    vec![
        "-q",
        "train",
        "--data",
        s(data),
        "--category",
        "tile",
        "--base-types",
        "blob,crack",
        "--val-types",
        "scratch",
        "--shots",
        "2",
        "--normal-shots",
        "2",
        "--queries",
        "1",
        "--episodes",
        episodes,
        "--checkpoint-every",
        "2",
        "--val-every",
        "2",
        "--val-episodes",
        "1",
        "--size",
        "64",
        "--head-width",
        "16",
        "-o",
        s(out),
    ]
}

#[test]
fn train_then_fit_and_predict_with_the_trained_head() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(&dir.path().join("data"));
    let run = dir.path().join("run");
    let out = bpgg(&train_args(&cat, &run, "4"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("trained 4 episodes"),
        "{}",
        stdout(&out)
    );
    for f in ["best.safetensors", "last.safetensors", "config.json"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 3, "{history}");
    assert!(history.starts_with("episode,loss,"));

    // A second run into the same folder is refused; --resume of a finished run does nothing.
    let again = bpgg(&train_args(&cat, &run, "4"));
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already holds a training run"),
        "{}",
        stderr(&again)
    );
    let mut resume = train_args(&cat, &run, "4");
    resume.push("--resume");
    let out = bpgg(&resume);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("trained 4 episodes"),
        "{}",
        stdout(&out)
    );

    let model = dir.path().join("model.bpgg");
    let fit = |size: &str, checkpoint: &Path| {
        bpgg(&[
            "fit",
            "--defects",
            s(&cat.join("test/stain")),
            "--masks",
            s(&cat.join("ground_truth/stain")),
            "--normal",
            s(&cat.join("train/good")),
            "--size",
            size,
            "--checkpoint",
            s(checkpoint),
            "-o",
            s(&model),
        ])
    };
    let wrong = fit("128", &run.join("best.safetensors"));
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("best.safetensors") && stderr(&wrong).contains("at 64 px"),
        "{}",
        stderr(&wrong)
    );
    let out = fit("64", &run.join("best.safetensors"));
    assert!(out.status.success(), "{}", stderr(&out));

    // A fitted model is not a training checkpoint.
    let not_ckpt = fit("64", &model);
    assert!(!not_ckpt.status.success());
    assert!(
        stderr(&not_ckpt).contains("not a training checkpoint"),
        "{}",
        stderr(&not_ckpt)
    );

    // `--checkpoint none` is the training-free model: the same file as no flag at all, and not
    // the one fitted with the head.
    let (defects, masks, normal) = (
        cat.join("test/stain"),
        cat.join("ground_truth/stain"),
        cat.join("train/good"),
    );
    let plain = |extra: &[&str], out: &Path| {
        let mut args = vec![
            "fit",
            "--defects",
            s(&defects),
            "--masks",
            s(&masks),
            "--normal",
            s(&normal),
            "--size",
            "64",
            "-o",
            s(out),
        ];
        args.extend_from_slice(extra);
        let done = bpgg(&args);
        assert!(done.status.success(), "{}", stderr(&done));
        bpgg::model::FittedModel::load(out, &candle_core::Device::Cpu).unwrap()
    };
    let none = plain(&["--checkpoint", "none"], &dir.path().join("none.bpgg"));
    let default = plain(&[], &dir.path().join("plain.bpgg"));
    let with_head = bpgg::model::FittedModel::load(&model, &candle_core::Device::Cpu).unwrap();
    assert!(none.head.is_none() && default.head.is_none() && with_head.head.is_some());
    assert_eq!(
        (none.threshold, none.image_threshold),
        (default.threshold, default.image_threshold)
    );

    let pred = dir.path().join("pred");
    let out = bpgg(&[
        "-q",
        "predict",
        "--model",
        s(&model),
        s(&cat.join("test/blob")),
        "-o",
        s(&pred),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(pred.join("000.tiff").is_file());
}

#[test]
fn a_killed_run_leaves_a_whole_checkpoint_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(&dir.path().join("data"));
    let run = dir.path().join("run");
    let episodes = "400";
    let mut child = Command::new(env!("CARGO_BIN_EXE_bpgg"))
        .args(train_args(&cat, &run, episodes))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill (SIGKILL) once the first checkpoints are on disk, in the middle of the run.
    let last = run.join("last.safetensors");
    let start = Instant::now();
    while !last.exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let finished_early = child.try_wait().unwrap().is_some();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(last.exists(), "no checkpoint within 2 minutes");

    // Whatever moment the kill hit, the checkpoint reads back whole.
    let fit = bpgg(&[
        "fit",
        "--defects",
        s(&cat.join("test/stain")),
        "--masks",
        s(&cat.join("ground_truth/stain")),
        "--normal",
        s(&cat.join("train/good")),
        "--size",
        "64",
        "--checkpoint",
        s(&last),
        "-o",
        s(&dir.path().join("m.bpgg")),
    ]);
    assert!(fit.status.success(), "{}", stderr(&fit));
    let leftovers: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            ![
                "best.safetensors",
                "last.safetensors",
                "config.json",
                "history.csv",
            ]
            .contains(&n.as_str())
        })
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "unexpected files {leftovers:?}");

    let mut resume = train_args(&cat, &run, episodes);
    resume.push("--resume");
    let out = bpgg(&resume);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("trained 400 episodes"),
        "{}",
        stdout(&out)
    );
    let temps = std::fs::read_dir(&run)
        .unwrap()
        .filter(|e| bpgg::io::is_atomic_temp_name(&e.as_ref().unwrap().file_name()))
        .count();
    assert_eq!(temps, 0, "the resumed run leaves no temp file");
    if finished_early {
        eprintln!("note: the run finished before the kill; only the read-back was tested");
    }
}
