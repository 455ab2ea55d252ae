//! Training checkpoints: one safetensors file holding the head (and, for `last`, the
//! optimiser state) whose header metadata holds the format name, its version, the training
//! configuration and the training state as JSON. Written atomically, so an interrupted run
//! always leaves the previous checkpoint whole.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use crate::backbone::weights::StateDict;
use crate::model::head::{read_checkpoint_file, CHECKPOINT_FORMAT, CHECKPOINT_VERSION};
use crate::model::ProjectionHead;
use crate::{Error, Result};

/// One line of the training history (one per validation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Episodes done.
    pub episode: usize,
    /// Mean total loss over the episodes since the previous entry.
    pub loss: f64,
    pub query_loss: f64,
    /// Mean reverse term (over the episodes that had one).
    pub reverse_loss: Option<f64>,
    /// Learning rate of the last episode.
    pub lr: f64,
    /// Pixel AP over the validation episodes.
    pub val_ap: f64,
}

/// Where training stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Episodes done.
    pub episode: usize,
    /// The best validation so far: `(episode, pixel AP)`.
    pub best: Option<(usize, f64)>,
    /// Validation pixel AP of the untrained head (the training-free features), for reference.
    #[serde(default)]
    pub initial_val_ap: Option<f64>,
    pub history: Vec<HistoryEntry>,
}

/// A checkpoint read back.
#[derive(Debug)]
pub struct Checkpoint {
    pub config: TrainConfig,
    pub state: TrainState,
    pub head: ProjectionHead,
    /// Optimiser tensors (`optim.*`); empty in a `best` checkpoint.
    pub optimizer: HashMap<String, Tensor>,
    pub optimizer_steps: u64,
}

/// Writes a checkpoint atomically.
pub fn save_checkpoint(
    path: &Path,
    config: &TrainConfig,
    state: &TrainState,
    head: &ProjectionHead,
    optimizer: Option<(&[(String, Tensor)], u64)>,
) -> Result<()> {
    let mut tensors = head.named();
    let mut meta = HashMap::from([
        ("bpgg_format".to_string(), CHECKPOINT_FORMAT.to_string()),
        ("bpgg_version".to_string(), CHECKPOINT_VERSION.to_string()),
        ("config".to_string(), to_json(path, config)?),
        ("state".to_string(), to_json(path, state)?),
    ]);
    if let Some((state_tensors, steps)) = optimizer {
        tensors.extend(state_tensors.iter().cloned());
        meta.insert("optimizer_steps".into(), steps.to_string());
    }
    StateDict::new(tensors)?.save_safetensors_with_metadata(path, meta)
}

/// Reads a checkpoint, checking format, version, configuration and the head's shapes.
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bad = |problem: String| Error::invalid_data(path, problem);
    let (sd, meta) = read_checkpoint_file(path)?;
    let parse = |key: &str| -> Result<&String> {
        meta.get(key)
            .ok_or_else(|| bad(format!("checkpoint has no {key}")))
    };
    let config: TrainConfig = serde_json::from_str(parse("config")?)
        .map_err(|e| bad(format!("checkpoint config is invalid: {e}")))?;
    config
        .validate()
        .map_err(|e| bad(format!("checkpoint config is invalid: {e}")))?;
    let state: TrainState = serde_json::from_str(parse("state")?)
        .map_err(|e| bad(format!("checkpoint state is invalid: {e}")))?;
    let get = |name: &str| sd.get(name).and_then(|t| t.to_device(device).ok());
    let head = ProjectionHead::from_named(path, get)?;
    if head.config().hidden != config.head_hidden {
        return Err(bad(format!(
            "head width {} differs from the configured {}",
            head.config().hidden,
            config.head_hidden
        )));
    }
    let optimizer: HashMap<String, Tensor> = sd
        .iter()
        .filter(|(k, _)| k.starts_with("optim."))
        .map(|(k, t)| Ok((k.to_string(), t.to_device(device)?)))
        .collect::<Result<_>>()?;
    let optimizer_steps = match meta.get("optimizer_steps") {
        Some(v) => v
            .parse()
            .map_err(|_| bad(format!("optimizer_steps `{v}` is not a count")))?,
        None => 0,
    };
    Ok(Checkpoint {
        config,
        state,
        head,
        optimizer,
        optimizer_steps,
    })
}

/// JSON for a metadata value, with the file named in errors.
fn to_json<T: Serialize>(path: &Path, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}
