//! [`StateDict`]: an ordered list of named tensors, as a checkpoint holds them.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::{Error, Result};

/// Named tensors in checkpoint order, on the CPU, each contiguous in row-major layout
/// (conv kernels are OIHW whatever strides the source file stored them with).
#[derive(Debug, Clone, Default)]
pub struct StateDict {
    tensors: Vec<(String, Tensor)>,
}

impl StateDict {
    /// Builds a state dict; fails if a name appears twice.
    pub fn new(tensors: Vec<(String, Tensor)>) -> Result<Self> {
        let mut seen = HashSet::new();
        for (name, _) in &tensors {
            if !seen.insert(name.as_str()) {
                return Err(Error::InvalidConfig(format!(
                    "tensor name {name} appears twice"
                )));
            }
        }
        Ok(Self { tensors })
    }

    /// For loaders that already checked the names are unique.
    pub(crate) fn from_vec_unchecked(tensors: Vec<(String, Tensor)>) -> Self {
        Self { tensors }
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there is no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Tensor names in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(name, _)| name.as_str())
    }

    /// `(name, tensor)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(name, t)| (name.as_str(), t))
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// The tensors whose names satisfy `keep`, in order.
    pub fn filter(&self, keep: impl Fn(&str) -> bool) -> StateDict {
        let tensors = self
            .tensors
            .iter()
            .filter(|(name, _)| keep(name))
            .cloned()
            .collect();
        StateDict { tensors }
    }

    /// The tensors whose names start with `prefix` (names unchanged).
    pub fn filter_prefix(&self, prefix: &str) -> StateDict {
        self.filter(|name| name.starts_with(prefix))
    }

    /// The tensors whose names start with `prefix`, with the prefix removed
    /// (`strip_prefix("module.")` undoes `DataParallel` names).
    pub fn strip_prefix(&self, prefix: &str) -> StateDict {
        let tensors = self
            .tensors
            .iter()
            .filter_map(|(name, t)| Some((name.strip_prefix(prefix)?.to_string(), t.clone())))
            .collect();
        StateDict { tensors }
    }

    /// Renames every tensor with `rename`; fails if two tensors end up with one name.
    pub fn rename(self, rename: impl Fn(&str) -> String) -> Result<StateDict> {
        let tensors = self
            .tensors
            .into_iter()
            .map(|(name, t)| (rename(&name), t))
            .collect();
        StateDict::new(tensors)
    }

    /// The tensors by name (for `VarBuilder::from_tensors` and friends).
    pub fn to_tensor_map(&self) -> HashMap<String, Tensor> {
        self.tensors.iter().cloned().collect()
    }

    /// A `VarBuilder` over these tensors: `vb.pp("_blocks").pp(3).get(...)` returns the tensor
    /// converted to `dtype` on `device`, or an error naming a missing key or a shape mismatch.
    pub fn to_var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.to_tensor_map(), dtype, device)
    }

    /// Writes the tensors to a safetensors file, atomically: the data goes to a temporary file
    /// in the same folder, which is then renamed over `path`, so a crash never leaves a partial
    /// file behind.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        self.save_safetensors_with_metadata(path, HashMap::new())
    }

    /// [`Self::save_safetensors`] with extra string metadata in the file header.
    pub fn save_safetensors_with_metadata(
        &self,
        path: &Path,
        extra: HashMap<String, String>,
    ) -> Result<()> {
        crate::io::write_atomic(path, &self.to_safetensors_bytes(path, extra)?)
    }

    /// The safetensors file as bytes, with extra string metadata in its header; `path` names
    /// the file in errors.
    pub fn to_safetensors_bytes(
        &self,
        path: &Path,
        extra: HashMap<String, String>,
    ) -> Result<Vec<u8>> {
        let mut views = Vec::with_capacity(self.tensors.len());
        for (name, tensor) in &self.tensors {
            views.push((name.as_str(), RawView::new(tensor)?));
        }
        let mut metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        metadata.extend(extra);
        let metadata = Some(metadata);
        let bytes = safetensors::serialize(views, &metadata).map_err(|e| {
            Error::invalid_weights(path, format!("cannot serialise safetensors: {e:?}"))
        })?;
        canonical_header(bytes)
            .map_err(|e| Error::invalid_weights(path, format!("cannot serialise safetensors: {e}")))
    }
}

/// Rewrites a safetensors file's metadata object with its keys in sorted order, so that the same
/// tensors and metadata always give the same bytes: `safetensors::serialize` writes the metadata
/// first, in hash-map order, which changes from run to run (the tensors' entries are already in a
/// fixed order, and stay as they are). The header keeps its length.
fn canonical_header(mut bytes: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    use std::collections::BTreeMap;
    const PREFIX: &[u8] = br#"{"__metadata__":"#;
    let len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .filter(|&n| 8 + n <= bytes.len())
        .ok_or("header length out of range")?;
    let header = &bytes[8..8 + len];
    if !header.starts_with(PREFIX) {
        return Ok(bytes);
    }
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header.trim_ascii_end()).map_err(|e| e.to_string())?;
    let meta: BTreeMap<String, String> =
        serde_json::from_value(entries.remove("__metadata__").unwrap_or_default())
            .map_err(|e| e.to_string())?;
    let sorted = serde_json::to_vec(&meta).map_err(|e| e.to_string())?;
    let at = 8 + PREFIX.len();
    let original = bytes
        .get(at..at + sorted.len())
        .ok_or("metadata runs past the header")?;
    // The same entries written with the same escaping: the original object has this length.
    let same: BTreeMap<String, String> =
        serde_json::from_slice(original).map_err(|e| format!("metadata object: {e}"))?;
    if same != meta {
        return Err("the metadata object is not where it was expected".into());
    }
    bytes[at..at + sorted.len()].copy_from_slice(&sorted);
    Ok(bytes)
}

/// A tensor's contiguous little-endian bytes, as `safetensors::serialize` wants them.
struct RawView {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl RawView {
    fn new(tensor: &Tensor) -> Result<Self> {
        let flat = tensor.flatten_all()?;
        let (dtype, data) = match tensor.dtype() {
            DType::F32 => (
                safetensors::Dtype::F32,
                le_bytes(flat.to_vec1::<f32>()?, f32::to_le_bytes),
            ),
            DType::F64 => (
                safetensors::Dtype::F64,
                le_bytes(flat.to_vec1::<f64>()?, f64::to_le_bytes),
            ),
            DType::I64 => (
                safetensors::Dtype::I64,
                le_bytes(flat.to_vec1::<i64>()?, i64::to_le_bytes),
            ),
            DType::U32 => (
                safetensors::Dtype::U32,
                le_bytes(flat.to_vec1::<u32>()?, u32::to_le_bytes),
            ),
            DType::U8 => (safetensors::Dtype::U8, flat.to_vec1::<u8>()?),
            // Half types (only in hand-built state dicts: loaders give F32) are widened.
            _ => {
                let f = flat.to_dtype(DType::F32)?;
                (
                    safetensors::Dtype::F32,
                    le_bytes(f.to_vec1::<f32>()?, f32::to_le_bytes),
                )
            }
        };
        Ok(Self {
            dtype,
            shape: tensor.dims().to_vec(),
            data,
        })
    }
}

fn le_bytes<T: Copy, const N: usize>(values: Vec<T>, to_le: fn(T) -> [u8; N]) -> Vec<u8> {
    values.into_iter().flat_map(to_le).collect()
}

impl safetensors::View for RawView {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of_one_state_dict() -> Vec<u8> {
        let dev = Device::Cpu;
        let sd = StateDict::new(
            ["b", "a", "c"]
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let t = Tensor::full(i as f32, (2, 3), &dev).unwrap();
                    (n.to_string(), t)
                })
                .collect(),
        )
        .unwrap();
        // A fresh map each time: its iteration order differs between maps.
        let meta: HashMap<String, String> = (0..16)
            .map(|i| (format!("key{i}"), format!("value \"{i}\"")))
            .collect();
        sd.to_safetensors_bytes(Path::new("x.safetensors"), meta)
            .unwrap()
    }

    #[test]
    fn the_same_tensors_and_metadata_give_the_same_bytes() {
        let first = bytes_of_one_state_dict();
        for _ in 0..8 {
            assert_eq!(bytes_of_one_state_dict(), first);
        }
        let (sd, meta) =
            super::super::safetensors_from_bytes_with_metadata(Path::new("x"), &first).unwrap();
        assert_eq!(sd.len(), 3);
        assert_eq!(meta["key7"], "value \"7\"");
        // The tensors' entries keep safetensors' own layout (what committed files were written with).
        let header = String::from_utf8_lossy(&first[8..]);
        assert!(
            header.contains(r#""a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}"#),
            "{header}"
        );
    }
}
