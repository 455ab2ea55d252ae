//! `bpgg weights import`: any supported checkpoint in, a float32 safetensors file out.

use std::path::Path;

use candle_core::DType;

use super::format::{load_state_dict_with_format, CheckpointFormat};
use super::state_dict::StateDict;
use crate::Result;

/// What [`import_weights`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Format of the input file.
    pub format: CheckpointFormat,
    /// Tensors found in the input.
    pub tensors_read: usize,
    /// Tensors written to the output.
    pub tensors_written: usize,
    /// Tensors left out by the `keep` filter.
    pub tensors_filtered_out: usize,
    /// Integer tensors dropped (BatchNorm's `num_batches_tracked`: a training counter that
    /// inference never reads).
    pub integer_tensors_dropped: usize,
    /// Number of `f32` values written.
    pub parameters_written: usize,
}

/// Converts the weight file `input` (legacy torch, torch zip or safetensors) into the float32
/// safetensors file `output`, keeping the tensors whose names pass `keep` (all when `None`).
///
/// Integer tensors are dropped (see [`ImportSummary::integer_tensors_dropped`]); every tensor
/// written is contiguous, so conv kernels come out in standard OIHW layout. The output is
/// written atomically.
pub fn import_weights(
    input: &Path,
    output: &Path,
    keep: Option<&dyn Fn(&str) -> bool>,
) -> Result<ImportSummary> {
    let (format, state_dict) = load_state_dict_with_format(input)?;
    let tensors_read = state_dict.len();
    let kept = match keep {
        Some(keep) => state_dict.filter(keep),
        None => state_dict,
    };
    let tensors_filtered_out = tensors_read - kept.len();
    let floats = StateDict::from_vec_unchecked(
        kept.iter()
            .filter(|(_, t)| t.dtype() == DType::F32)
            .map(|(name, t)| (name.to_string(), t.clone()))
            .collect(),
    );
    let integer_tensors_dropped = kept.len() - floats.len();
    let parameters_written = floats.iter().map(|(_, t)| t.elem_count()).sum();
    floats.save_safetensors(output)?;
    Ok(ImportSummary {
        format,
        tensors_read,
        tensors_written: floats.len(),
        tensors_filtered_out,
        integer_tensors_dropped,
        parameters_written,
    })
}
