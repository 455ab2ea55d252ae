//! Per-pixel vector normalisation of feature maps.

use candle_core::Tensor;

use crate::Result;

/// Lower bound on a vector norm before dividing by it (as PyTorch `F.normalize`), so an
/// all-zero feature stays zero instead of becoming NaN.
pub const NORM_EPS: f64 = 1e-12;

/// Divides `x` by its L2 norm along `dim` (norm clamped below by [`NORM_EPS`]).
///
/// # Shapes
/// - `x`: any shape; `dim` is the axis that holds the vector components (channels).
/// - returns the shape of `x`.
pub fn l2_normalize(x: &Tensor, dim: usize) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(dim)?.sqrt()?.maximum(NORM_EPS)?;
    Ok(x.broadcast_div(&norm)?)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    #[test]
    fn zero_vector_stays_finite() {
        let x = Tensor::zeros((1, 3, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let y = l2_normalize(&x, 1).unwrap();
        assert_eq!(y.sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }
}
