//! Safetensors files: an 8-byte header length, a JSON header of `{name: {dtype, shape,
//! data_offsets}}`, then the data. The `safetensors` crate validates the header (offsets in
//! order, inside the buffer, matching each tensor's size) before we touch any data.

use std::path::Path;

use candle_core::DType;
use safetensors::{Dtype, SafeTensors};

use super::state_dict::StateDict;
use super::storage::tensor_from_bytes;
use crate::{Error, Result};

/// Bytes of the little-endian header-length prefix.
const HEADER_LENGTH_BYTES: usize = 8;

/// Reads a safetensors file held in `data`, tensors in the order of their data in the file.
pub(crate) fn load_safetensors(path: &Path, data: &[u8]) -> Result<StateDict> {
    let bad = |problem: String| Error::invalid_weights(path, problem);
    let (header_len, metadata) = SafeTensors::read_metadata(data)
        .map_err(|e| bad(format!("invalid safetensors header: {e:?}")))?;
    // `read_metadata` checked that every offset range lies inside the data and matches its
    // tensor's dtype and shape, and that the ranges tile the data exactly.
    let body = &data[HEADER_LENGTH_BYTES + header_len..];
    let mut infos: Vec<_> = metadata.tensors().into_iter().collect();
    infos.sort_by_key(|(_, info)| info.data_offsets);
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, info) in infos {
        let raw = match info.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
            Dtype::I64 => DType::I64,
            Dtype::I32 => DType::I32,
            Dtype::I16 => DType::I16,
            Dtype::U32 => DType::U32,
            Dtype::U8 | Dtype::BOOL => DType::U8,
            other => return Err(bad(format!("{name}: unsupported dtype {other:?}"))),
        };
        let (start, end) = info.data_offsets;
        let bytes = body
            .get(start..end)
            .ok_or_else(|| bad(format!("{name}: data offsets outside the file")))?;
        let tensor =
            tensor_from_bytes(bytes, raw, &info.shape).map_err(|e| bad(format!("{name}: {e}")))?;
        tensors.push((name, tensor));
    }
    Ok(StateDict::from_vec_unchecked(tensors))
}

/// Reads a safetensors file with its string metadata (the `__metadata__` header entry).
pub fn read_safetensors_with_metadata(
    path: &Path,
) -> Result<(StateDict, std::collections::HashMap<String, String>)> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    safetensors_from_bytes_with_metadata(path, &data)
}

/// [`read_safetensors_with_metadata`] on bytes already in memory; `path` only names them in
/// errors.
pub fn safetensors_from_bytes_with_metadata(
    path: &Path,
    data: &[u8],
) -> Result<(StateDict, std::collections::HashMap<String, String>)> {
    let (_, metadata) = SafeTensors::read_metadata(data)
        .map_err(|e| Error::invalid_weights(path, format!("invalid safetensors header: {e:?}")))?;
    let extra = metadata.metadata().clone().unwrap_or_default();
    Ok((load_safetensors(path, data)?, extra))
}
