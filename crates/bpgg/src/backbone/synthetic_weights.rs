//! Deterministic synthetic weights for parity tests without weight files.
//!
//! Every tensor of a state dict is filled by a closed formula of its name, shape and element
//! index, so a test can rebuild the exact weights that `scripts/torchvision_golden.py` loads
//! into PyTorch without shipping megabytes of numbers. Element `i` (row-major) of the tensor
//! `name` is
//!
//! ```text
//! value = offset + amplitude * (2 u - 1)
//! u     = (splitmix64(fnv1a32(name) + (i + 1) * 0x9E3779B97F4A7C15) >> 11) / 2^53
//! ```
//!
//! with wrapping `u64` arithmetic, evaluated in `f64` and rounded once to `f32`. Everything up
//! to the last rounding is integer or exact, so Python (numpy `uint64`) and Rust produce the same
//! bits. (A `sin`-of-index formula was tried first: with a fixed phase step its values are so
//! evenly spread that a convolution over a smooth input nearly cancels and the network's
//! output is dominated by the biases — a weak test.) `offset` and `amplitude` depend on the
//! kind of tensor, chosen so activations stay moderate through deep networks:
//!
//! | tensor | offset | amplitude |
//! |---|---|---|
//! | 4-D (conv kernel), fan-in `f` | 0 | `sqrt(6 / f)` (He-uniform) |
//! | `*.running_var` | 1 | 0.5 (so `0.5..1.5`) |
//! | `*.running_mean` | 0 | 0.1 |
//! | 1-D `*.weight` (BatchNorm gamma) | 1 | 0.2 |
//! | 1-D `*.bias` (BatchNorm beta, conv bias) | 0 | 0.1 |
//! | anything else, last-dim fan-in `f` | 0 | `1 / sqrt(f)` |

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::Result;

/// splitmix64's increment (`2^64 / φ`).
const SPLITMIX_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
const SPLITMIX_MUL1: u64 = 0xbf58_476d_1ce4_e5b9;
const SPLITMIX_MUL2: u64 = 0x94d0_49bb_1331_11eb;
/// `2^53`: a 53-bit integer divided by it is an exact `f64` in `[0, 1)`.
const TWO_POW_53: f64 = 9_007_199_254_740_992.0;

/// FNV-1a, 32-bit, of a byte string.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(PRIME)
    })
}

/// `(offset, amplitude)` of the formula for the tensor `name` of `shape` (see the module docs).
fn offset_and_amplitude(name: &str, shape: &[usize]) -> (f64, f64) {
    if name.ends_with(".running_var") {
        return (1.0, 0.5);
    }
    if name.ends_with(".running_mean") {
        return (0.0, 0.1);
    }
    match shape.len() {
        4 => {
            let fan_in = (shape[1] * shape[2] * shape[3]).max(1) as f64;
            (0.0, (6.0 / fan_in).sqrt())
        }
        1 if name.ends_with(".weight") => (1.0, 0.2),
        1 if name.ends_with(".bias") => (0.0, 0.1),
        _ => {
            let fan_in = shape.last().copied().unwrap_or(1).max(1) as f64;
            (0.0, 1.0 / fan_in.sqrt())
        }
    }
}

/// The synthetic values of the tensor `name` of `shape`, row-major.
pub fn synthetic_values(name: &str, shape: &[usize]) -> Vec<f32> {
    let numel: usize = shape.iter().product();
    let (offset, amplitude) = offset_and_amplitude(name, shape);
    let seed = u64::from(fnv1a32(name.as_bytes()));
    (0..numel as u64)
        .map(|i| {
            let u = uniform_01(seed.wrapping_add((i + 1).wrapping_mul(SPLITMIX_GAMMA)));
            (offset + amplitude * (2.0 * u - 1.0)) as f32
        })
        .collect()
}

/// splitmix64's output mix, mapped to a 53-bit `f64` in `[0, 1)`.
fn uniform_01(state: u64) -> f64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(SPLITMIX_MUL1);
    z = (z ^ (z >> 27)).wrapping_mul(SPLITMIX_MUL2);
    z ^= z >> 31;
    (z >> 11) as f64 / TWO_POW_53
}

/// A full synthetic state dict: one `f32` tensor per `(name, shape)` entry.
///
/// # Shapes
/// - each returned tensor has its entry's shape, on `device`.
pub fn synthetic_state_dict(
    shapes: &[(String, Vec<usize>)],
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    shapes
        .iter()
        .map(|(name, shape)| {
            let values = synthetic_values(name, shape);
            let tensor = Tensor::from_vec(values, shape.as_slice(), device)?;
            Ok((name.clone(), tensor))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a32_matches_reference_vectors() {
        // Reference values of the FNV-1a 32-bit specification.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn kinds_get_their_ranges() {
        let var = synthetic_values("bn1.running_var", &[64]);
        assert!(var.iter().all(|v| (0.5..=1.5).contains(v)));
        let conv = synthetic_values("conv1.weight", &[8, 3, 7, 7]);
        let bound = (6.0f32 / 147.0).sqrt();
        assert!(conv.iter().all(|v| v.abs() <= bound));
        assert!(conv.iter().any(|v| v.abs() > 0.9 * bound));
    }

    /// Values printed by `scripts/torchvision_golden.py`'s `synthetic_values` (numpy).
    #[test]
    fn values_match_the_python_generator() {
        let gamma = synthetic_values("conv1.weight", &[4]);
        let expected = [1.124_731_8_f32, 1.170_768_6, 0.917_236_9, 1.140_644_2];
        assert_eq!(gamma, expected);
    }
}
