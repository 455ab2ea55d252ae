//! `results.jsonl` of `bpgg predict`: one JSON object per line, each appended with a single
//! `write` to a file opened for appending, so that a killed run leaves whole lines only (at worst
//! the last image's line is missing, and `--resume` redoes that image).

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bpgg::io::write_atomic;

/// The JSON key naming the map file a line describes (what `--resume` checks).
pub const MAP_KEY: &str = "map";

/// An open `results.jsonl`.
#[derive(Debug)]
pub struct ResultsLog {
    file: File,
    path: PathBuf,
}

impl ResultsLog {
    /// Opens `path` for appending (creating it).
    ///
    /// With `resume`, the existing file is first tidied: lines that are not complete JSON objects,
    /// or whose map file no longer exists, are dropped (the file is rewritten atomically when
    /// anything was dropped). Returns the map paths of the lines kept: those images are done.
    pub fn open(path: &Path, resume: bool) -> anyhow::Result<(Self, HashSet<String>)> {
        let mut done = HashSet::new();
        if resume && path.is_file() {
            let text =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let text = String::from_utf8_lossy(&text);
            let mut kept = String::with_capacity(text.len());
            let mut dropped = 0usize;
            for line in text.split_inclusive('\n') {
                let map = line
                    .strip_suffix('\n')
                    .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .and_then(|v| v.get(MAP_KEY)?.as_str().map(str::to_owned))
                    .filter(|m| Path::new(m).is_file());
                if map.is_some_and(|m| done.insert(m)) {
                    kept.push_str(line);
                } else {
                    dropped += 1;
                }
            }
            if dropped > 0 {
                write_atomic(path, kept.as_bytes())?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok((
            Self {
                file,
                path: path.to_path_buf(),
            },
            done,
        ))
    }

    /// Appends `record` as one line, in one write.
    pub fn append(&mut self, record: &serde_json::Value) -> anyhow::Result<()> {
        let mut line = record.to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}
