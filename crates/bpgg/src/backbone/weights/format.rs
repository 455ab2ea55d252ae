//! Checkpoint format detection (from the bytes, never the file extension) and dispatch.

use std::path::Path;

use super::legacy::load_legacy;
use super::safetensors_file::load_safetensors;
use super::state_dict::StateDict;
use super::zip_archive::load_zip;
use crate::{Error, Result};

/// Every zip file starts with a local file header signature.
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// Pickle protocol 2+ starts with the PROTO opcode.
const PICKLE_PROTO_OPCODE: u8 = 0x80;

/// The on-disk layout of a weight file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// `torch.save` before torch 1.6 (a sequence of pickles followed by raw storages).
    TorchLegacy,
    /// `torch.save` since torch 1.6 (a zip of `data.pkl` and `data/<key>`).
    TorchZip,
    /// A safetensors file.
    Safetensors,
}

impl std::fmt::Display for CheckpointFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckpointFormat::TorchLegacy => "legacy torch pickle",
            CheckpointFormat::TorchZip => "torch zip",
            CheckpointFormat::Safetensors => "safetensors",
        })
    }
}

/// Recognises the format of a weight file from its first bytes.
pub fn detect_format(path: &Path, data: &[u8]) -> Result<CheckpointFormat> {
    if data.starts_with(ZIP_MAGIC) {
        return Ok(CheckpointFormat::TorchZip);
    }
    if data.first() == Some(&PICKLE_PROTO_OPCODE) {
        return Ok(CheckpointFormat::TorchLegacy);
    }
    // Safetensors: u64 header length, then a JSON object.
    if data.len() >= 9 && data[8] == b'{' {
        return Ok(CheckpointFormat::Safetensors);
    }
    Err(Error::invalid_weights(
        path,
        "unrecognised format (expected a torch .pth/.pt checkpoint or a safetensors file)",
    ))
}

/// Loads every tensor of a weight file into memory, on the CPU.
///
/// The format (legacy torch pickle, torch zip, safetensors) is detected from the contents.
/// Torch pickles are interpreted by a restricted unpickler that executes nothing and refuses any
/// global a state dict does not need. Floating tensors (f16, bf16, f32, f64) are converted to
/// `F32`, integer tensors to `I64` (BatchNorm's `num_batches_tracked` counters are kept), bytes
/// and booleans to `U8`. Nested dicts are flattened with `.`; non-tensor entries are skipped.
pub fn load_state_dict(path: &Path) -> Result<StateDict> {
    load_state_dict_with_format(path).map(|(_, sd)| sd)
}

/// [`load_state_dict`] that also reports the detected format.
pub fn load_state_dict_with_format(path: &Path) -> Result<(CheckpointFormat, StateDict)> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    state_dict_from_bytes(path, &data)
}

/// [`load_state_dict_with_format`] on bytes already in memory; `path` only names them in errors.
pub fn state_dict_from_bytes(path: &Path, data: &[u8]) -> Result<(CheckpointFormat, StateDict)> {
    let format = detect_format(path, data)?;
    let state_dict = match format {
        CheckpointFormat::TorchLegacy => load_legacy(path, data)?,
        CheckpointFormat::TorchZip => load_zip(path, data)?,
        CheckpointFormat::Safetensors => load_safetensors(path, data)?,
    };
    Ok((format, state_dict))
}
