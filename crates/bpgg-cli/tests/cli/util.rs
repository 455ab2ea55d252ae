//! Helpers shared by the CLI tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bpgg::data::{write_synthetic_dataset, SynthConfig};

/// Runs `bpgg` with `args`.
pub fn bpgg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bpgg"))
        .args(args)
        .output()
        .expect("bpgg runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A small synthetic MVTec-layout data set; returns the category folder.
pub fn small_dataset(root: &Path) -> PathBuf {
    let config = SynthConfig {
        category: "tile".into(),
        size: 48,
        train_good: 4,
        test_good: 3,
        per_type: 3,
        ..SynthConfig::default()
    };
    write_synthetic_dataset(root, &config).expect("synthetic data")
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}
