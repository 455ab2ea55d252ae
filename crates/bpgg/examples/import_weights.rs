//! Converts a checkpoint to a float32 safetensors file with the library importer (what
//! `bpgg weights import` does), optionally keeping only the EfficientNet-Lite0 stride-16 trunk.
//!
//! ```text
//! cargo run -p bpgg --example import_weights -- IN.pth OUT.safetensors [--trunk]
//! ```

use std::path::PathBuf;

use anyhow::{bail, Result};
use bpgg::backbone::weights::{import_weights, is_efficientnet_lite0_trunk_key, load_state_dict};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let trunk = args.iter().any(|a| a == "--trunk");
    let paths: Vec<PathBuf> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .collect();
    let [input, output] = paths.as_slice() else {
        bail!("usage: import_weights IN OUT.safetensors [--trunk]");
    };
    let keep: Option<&dyn Fn(&str) -> bool> = if trunk {
        Some(&is_efficientnet_lite0_trunk_key)
    } else {
        None
    };
    let summary = import_weights(input, output, keep)?;
    println!("{summary:?}");
    for (name, tensor) in load_state_dict(output)?.iter() {
        println!("{name} {:?}", tensor.dims());
    }
    Ok(())
}
