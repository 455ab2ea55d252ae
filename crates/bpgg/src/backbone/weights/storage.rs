//! Torch storages: their element types and the strided gather that turns a `(storage, offset,
//! size, stride)` view into a contiguous candle tensor.
//!
//! Checkpoints converted from TensorFlow (EfficientNet-Lite0 among them) store conv kernels as
//! non-contiguous views of HWIO data, so the stored strides must be honoured: reading the storage
//! as if it were contiguous OIHW silently scrambles the weights.

use candle_core::{DType, Device, Tensor};

use super::pickle::TensorSpec;

/// Element type of a torch storage (`torch.FloatStorage`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum StorageDType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    U8,
    Bool,
}

impl StorageDType {
    /// The storage class name torch pickles (`FloatStorage`, ...).
    pub(crate) fn from_torch_name(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "DoubleStorage" => Self::F64,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    pub(crate) fn torch_name(self) -> &'static str {
        match self {
            Self::F32 => "FloatStorage",
            Self::F16 => "HalfStorage",
            Self::BF16 => "BFloat16Storage",
            Self::F64 => "DoubleStorage",
            Self::I64 => "LongStorage",
            Self::I32 => "IntStorage",
            Self::U8 => "ByteStorage",
            Self::Bool => "BoolStorage",
        }
    }

    /// Bytes per element.
    pub(crate) fn element_size(self) -> usize {
        match self {
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::F64 | Self::I64 => 8,
            Self::U8 | Self::Bool => 1,
        }
    }

    /// The candle dtype of the raw data.
    fn raw_dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::BF16 => DType::BF16,
            Self::F64 => DType::F64,
            Self::I64 => DType::I64,
            Self::I32 => DType::I32,
            Self::U8 | Self::Bool => DType::U8,
        }
    }
}

/// The dtype a loaded tensor gets: every floating type becomes `F32` (the precision bpgg computes
/// in), every integer type `I64`, bytes and booleans `U8`.
pub(crate) fn loaded_dtype(raw: DType) -> DType {
    match raw {
        DType::U8 => DType::U8,
        DType::U32 | DType::I16 | DType::I32 | DType::I64 => DType::I64,
        _ => DType::F32,
    }
}

/// Builds a CPU tensor from contiguous little-endian `bytes` of type `raw`, converted to
/// [`loaded_dtype`].
///
/// # Shapes
/// `bytes.len() == shape.iter().product() * raw.size_in_bytes()`; the result has `shape`.
pub(crate) fn tensor_from_bytes(
    bytes: &[u8],
    raw: DType,
    shape: &[usize],
) -> candle_core::Result<Tensor> {
    let tensor = Tensor::from_raw_buffer(bytes, raw, shape, &Device::Cpu)?;
    let target = loaded_dtype(raw);
    if target == raw {
        Ok(tensor)
    } else {
        tensor.to_dtype(target)
    }
}

/// Gathers the strided view `spec` of `storage` (the storage's raw bytes, already cut to any
/// legacy view) into a contiguous tensor.
///
/// Returns a message on any out-of-bounds access; never panics.
///
/// # Shapes
/// The result has shape `spec.size`, row-major contiguous.
pub(crate) fn materialise(
    storage: &[u8],
    dtype: StorageDType,
    spec: &TensorSpec,
) -> Result<Tensor, String> {
    let es = dtype.element_size();
    let storage_numel = (storage.len() / es) as u64;
    let size: Vec<usize> = spec
        .size
        .iter()
        .map(|&s| usize::try_from(s).map_err(|_| format!("dimension {s} too large")))
        .collect::<Result<_, _>>()?;
    let numel = spec
        .size
        .iter()
        .try_fold(1u64, |acc, &s| acc.checked_mul(s))
        .ok_or("tensor size overflows")?;
    if numel > storage_numel {
        // Only stride-0 (expanded) views can exceed their storage; a state dict never holds
        // them, and accepting them would let a tiny file claim unbounded memory.
        return Err(format!(
            "tensor of {numel} elements views a storage of only {storage_numel} elements"
        ));
    }
    let mut out = Vec::with_capacity(numel as usize * es);
    if numel > 0 {
        let extent = spec
            .size
            .iter()
            .zip(&spec.stride)
            .try_fold(spec.offset, |acc, (&s, &st)| {
                (s - 1).checked_mul(st).and_then(|d| acc.checked_add(d))
            })
            .ok_or("tensor extent overflows")?;
        if extent >= storage_numel {
            return Err(format!(
                "tensor (offset {}, size {:?}, stride {:?}) reaches element {extent} of a \
                 storage of {storage_numel} elements",
                spec.offset, spec.size, spec.stride
            ));
        }
        gather(storage, es, spec, &size, &mut out);
    } else if spec.offset > storage_numel {
        return Err(format!(
            "storage offset {} beyond a storage of {storage_numel} elements",
            spec.offset
        ));
    }
    let raw = dtype.raw_dtype();
    tensor_from_bytes(&out, raw, &size).map_err(|e| e.to_string())
}

/// Copies the elements of a bounds-checked strided view in row-major order.
fn gather(storage: &[u8], es: usize, spec: &TensorSpec, size: &[usize], out: &mut Vec<u8>) {
    let rank = size.len();
    if rank == 0 {
        let start = spec.offset as usize * es;
        out.extend_from_slice(&storage[start..start + es]);
        return;
    }
    // All indices below were proven < storage_numel by the extent check, so they fit in usize.
    let stride: Vec<usize> = spec.stride.iter().map(|&s| s as usize).collect();
    let inner = size[rank - 1];
    let inner_stride = stride[rank - 1];
    let mut index = vec![0usize; rank - 1];
    loop {
        let base = spec.offset as usize
            + index
                .iter()
                .zip(&stride)
                .map(|(&i, &st)| i * st)
                .sum::<usize>();
        if inner_stride == 1 {
            out.extend_from_slice(&storage[base * es..(base + inner) * es]);
        } else {
            for j in 0..inner {
                let start = (base + j * inner_stride) * es;
                out.extend_from_slice(&storage[start..start + es]);
            }
        }
        // Odometer over the outer dimensions.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            if index[d] < size[d] {
                break;
            }
            index[d] = 0;
        }
    }
}
