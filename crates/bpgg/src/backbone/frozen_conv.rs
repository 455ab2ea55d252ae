//! A frozen 2-D convolution with its bias, optionally with an eval-mode BatchNorm folded in.
//!
//! In eval mode BatchNorm is an affine map per channel,
//! `bn(y) = (y - mean) / sqrt(var + eps) * gamma + beta`, so a convolution followed by it is
//! again a convolution: with `s = gamma / sqrt(var + eps)`,
//! `weight' = weight * s` (per output channel) and `bias' = (bias - mean) * s + beta`.
//! Folding happens once, at load time and in `f64`, which saves one pass over every feature
//! map at inference and changes the result only by `f32` rounding.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::{conv2d_direct, conv2d_fused, Activation, FusedConvParams, PackedConvWeight};
use crate::{Error, Result};

/// torchvision's BatchNorm epsilon (`nn.BatchNorm2d` default).
pub const TORCHVISION_BATCH_NORM_EPS: f64 = 1e-5;

/// Reads the tensor `key` (relative to `vb`) and checks its shape.
///
/// A missing tensor or a shape mismatch is an [`Error::WeightTensor`] naming the key, never a
/// panic. The tensor comes back in `dtype` on the builder's device.
pub(crate) fn load_weight(
    vb: &VarBuilder,
    key: &str,
    shape: &[usize],
    dtype: DType,
) -> Result<Tensor> {
    if !vb.contains_tensor(key) {
        return Err(Error::WeightTensor {
            key: key.to_string(),
            problem: format!("missing from the state dict (expected shape {shape:?})"),
        });
    }
    let tensor = match vb.get_unchecked_dtype(key, dtype) {
        Ok(tensor) => tensor,
        // A backend that stores no shapes (`VarBuilder::zeros`) builds the tensor from the
        // expected shape; any other backend fails here again, with its own error.
        Err(_) => vb.get_with_hints_dtype(shape, key, candle_nn::Init::Const(0.0), dtype)?,
    };
    if tensor.dims() != shape {
        return Err(Error::WeightTensor {
            key: key.to_string(),
            problem: format!("has shape {:?}, expected {shape:?}", tensor.dims()),
        });
    }
    Ok(tensor)
}

/// Loads a bias-free convolution `{conv_key}.weight` of `weight_shape` `(c_out, c_in / groups,
/// k, k)` and the BatchNorm `{bn_key}.*` after it (`weight`, `bias`, `running_mean`,
/// `running_var`, each `(c_out,)`), and folds the two with [`fold_batch_norm`] and `eps`.
///
/// Folds in `f64` whatever the storage dtype, then casts once to the builder's dtype. A missing
/// or misshapen tensor is an [`Error::WeightTensor`] naming its key.
///
/// # Shapes
/// - returns `(weight', bias')`: `weight_shape` and `(c_out,)`.
pub(crate) fn load_folded_conv(
    vb: &VarBuilder,
    conv_key: &str,
    bn_key: &str,
    weight_shape: &[usize; 4],
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    let fold_dtype = DType::F64;
    let channels = [weight_shape[0]];
    let weight = load_weight(vb, &format!("{conv_key}.weight"), weight_shape, fold_dtype)?;
    let bn_tensor =
        |name: &str| load_weight(vb, &format!("{bn_key}.{name}"), &channels, fold_dtype);
    let bn = BatchNormParams {
        weight: bn_tensor("weight")?,
        bias: bn_tensor("bias")?,
        running_mean: bn_tensor("running_mean")?,
        running_var: bn_tensor("running_var")?,
        eps,
    };
    let (weight, bias) = fold_batch_norm(&weight, None, &bn)?;
    let dtype = vb.dtype();
    Ok((weight.to_dtype(dtype)?, bias.to_dtype(dtype)?))
}

/// The geometry of one square-kernel convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeometry {
    fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels,
            self.kernel,
            self.kernel,
        ]
    }
}

/// The running statistics and affine parameters of one eval-mode BatchNorm, in `f64`.
#[derive(Debug, Clone)]
pub struct BatchNormParams {
    /// `gamma`, `(channels,)`.
    pub weight: Tensor,
    /// `beta`, `(channels,)`.
    pub bias: Tensor,
    /// `(channels,)`.
    pub running_mean: Tensor,
    /// `(channels,)`, non-negative.
    pub running_var: Tensor,
    pub eps: f64,
}

/// Folds an eval-mode BatchNorm into the convolution before it.
///
/// Computes in the dtype of the inputs (callers pass `f64`).
///
/// # Shapes
/// - `weight`: `(c_out, c_in, kh, kw)`; `bias`: `(c_out,)` or `None` (zero).
/// - every field of `bn`: `(c_out,)`.
/// - returns `(weight', bias')` with the shapes of `weight` and `(c_out,)`.
pub fn fold_batch_norm(
    weight: &Tensor,
    bias: Option<&Tensor>,
    bn: &BatchNormParams,
) -> Result<(Tensor, Tensor)> {
    let (c_out, _, _, _) = weight.dims4()?;
    let scale = bn
        .weight
        .broadcast_div(&(&bn.running_var + bn.eps)?.sqrt()?)?;
    let folded_weight = weight.broadcast_mul(&scale.reshape((c_out, 1, 1, 1))?)?;
    let shifted = match bias {
        Some(b) => (b - &bn.running_mean)?,
        None => bn.running_mean.neg()?,
    };
    let folded_bias = ((shifted * &scale)? + &bn.bias)?;
    Ok((folded_weight, folded_bias))
}

/// A frozen convolution `y = conv(x, weight) + bias`, optionally fused with a residual sum and
/// an activation.
#[derive(Debug, Clone)]
pub(crate) struct FrozenConv2d {
    weight: Tensor,
    /// `(c_out,)`.
    bias: Tensor,
    /// `weight` packed for the direct CPU kernel, where it runs (an AVX-512 CPU, `f32` weights
    /// on the CPU).
    packed: Option<PackedConvWeight>,
    stride: usize,
    padding: usize,
}

impl FrozenConv2d {
    /// Loads `{key}.weight` and `{key}.bias` (a torchvision `nn.Conv2d` with bias).
    pub fn load(vb: &VarBuilder, key: &str, geometry: ConvGeometry) -> Result<Self> {
        let dtype = vb.dtype();
        let weight = load_weight(
            vb,
            &format!("{key}.weight"),
            &geometry.weight_shape(),
            dtype,
        )?;
        let bias = load_weight(vb, &format!("{key}.bias"), &[geometry.out_channels], dtype)?;
        Self::from_parts(weight, bias, geometry)
    }

    /// Loads a bias-free convolution `{conv_key}.weight` followed by the BatchNorm `{bn_key}.*`
    /// (`weight`, `bias`, `running_mean`, `running_var`, torchvision's eps) and folds the two.
    pub fn load_with_batch_norm(
        vb: &VarBuilder,
        conv_key: &str,
        bn_key: &str,
        geometry: ConvGeometry,
    ) -> Result<Self> {
        let (weight, bias) = load_folded_conv(
            vb,
            conv_key,
            bn_key,
            &geometry.weight_shape(),
            TORCHVISION_BATCH_NORM_EPS,
        )?;
        Self::from_parts(weight, bias, geometry)
    }

    fn from_parts(weight: Tensor, bias: Tensor, geometry: ConvGeometry) -> Result<Self> {
        Ok(Self {
            packed: PackedConvWeight::new(&weight),
            weight,
            bias,
            stride: geometry.stride,
            padding: geometry.padding,
        })
    }

    /// # Shapes
    /// - `x`: `(batch, c_in, h, w)`
    /// - returns `(batch, c_out, (h + 2p - k) / s + 1, (w + 2p - k) / s + 1)`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_fused(x, None, Activation::Identity)
    }

    /// `activation(conv(x, weight) + bias [+ residual])` in one pass over the output.
    ///
    /// # Shapes
    /// - `x`: `(batch, c_in, h, w)`; `residual`, if any: the output's shape;
    /// - returns `(batch, c_out, (h + 2p - k) / s + 1, (w + 2p - k) / s + 1)`
    pub fn forward_fused(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        activation: Activation,
    ) -> Result<Tensor> {
        let p = self.padding;
        let params = FusedConvParams {
            stride: self.stride,
            padding: (p, p, p, p),
            activation,
        };
        // Both kernels run their candle-ops path when `x` is not an `f32` CPU tensor; weights
        // loaded onto a GPU are never packed.
        match &self.packed {
            Some(packed) => conv2d_direct(x, packed, &self.bias, residual, &params),
            None => conv2d_fused(x, &self.weight, &self.bias, residual, &params),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    use crate::test_utils::max_abs_diff;

    /// A layer loaded on `device` gives the outputs of the same layer on the CPU (the direct or
    /// im2col kernel there, candle's ops on a GPU), for ResNet's stem, 3x3 and 1x1 shapes,
    /// with a residual and ReLU.
    fn layer_on_device_matches_the_cpu(device: &Device) -> Result<()> {
        let cpu = Device::Cpu;
        for (c_in, c_out, kernel, stride, padding) in [
            (3, 16, 7, 2, 3),
            (16, 16, 3, 1, 1),
            (16, 32, 3, 2, 1),
            (16, 32, 1, 2, 0),
        ] {
            let geometry = ConvGeometry {
                in_channels: c_in,
                out_channels: c_out,
                kernel,
                stride,
                padding,
            };
            let weight = Tensor::randn(0f32, 1f32, (c_out, c_in, kernel, kernel), &cpu)?;
            let bias = Tensor::randn(0f32, 1f32, c_out, &cpu)?;
            let x = Tensor::randn(0f32, 1f32, (2, c_in, 19, 17), &cpu)?;
            let on_cpu = FrozenConv2d::from_parts(weight.clone(), bias.clone(), geometry)?;
            let on_device = FrozenConv2d::from_parts(
                weight.to_device(device)?,
                bias.to_device(device)?,
                geometry,
            )?;
            assert_eq!(
                on_device.packed.is_some(),
                on_cpu.packed.is_some() && device.is_cpu()
            );
            let expected = on_cpu.forward(&x)?;
            let residual = Tensor::randn(0f32, 1f32, expected.dims(), &cpu)?;
            let expected_fused = on_cpu.forward_fused(&x, Some(&residual), Activation::Relu)?;
            let xd = x.to_device(device)?;
            let got = on_device.forward(&xd)?;
            let got_fused = on_device.forward_fused(
                &xd,
                Some(&residual.to_device(device)?),
                Activation::Relu,
            )?;
            assert!(got.device().same_device(device), "output left {device:?}");
            let tolerance = 1e-5 * (c_in * kernel * kernel) as f32;
            for (a, b) in [(&got, &expected), (&got_fused, &expected_fused)] {
                let diff = max_abs_diff(a, b)?;
                assert!(
                    diff <= tolerance,
                    "{c_in}->{c_out} k{kernel} s{stride}: {diff}"
                );
            }
        }
        Ok(())
    }
    crate::test_device!(
        layer_on_device_matches_the_cpu,
        layer_on_device_matches_the_cpu_cpu,
        layer_on_device_matches_the_cpu_cuda
    );

    /// Folding is exact up to rounding: conv followed by an explicit eval-mode BatchNorm equals
    /// the folded conv.
    #[test]
    fn folded_conv_matches_conv_then_batch_norm() -> Result<()> {
        let dev = Device::Cpu;
        let (c_in, c_out) = (3, 4);
        let values = |n: usize, a: f64, off: f64, amp: f64| -> Vec<f64> {
            (0..n)
                .map(|i| off + amp * (i as f64 * a + 0.3).sin())
                .collect()
        };
        let weight = Tensor::from_vec(
            values(c_out * c_in * 9, 2.1, 0.0, 0.5),
            (c_out, c_in, 3, 3),
            &dev,
        )?;
        let bias = Tensor::from_vec(values(c_out, 1.3, 0.0, 0.2), c_out, &dev)?;
        let bn = BatchNormParams {
            weight: Tensor::from_vec(values(c_out, 0.7, 1.0, 0.3), c_out, &dev)?,
            bias: Tensor::from_vec(values(c_out, 0.9, 0.0, 0.1), c_out, &dev)?,
            running_mean: Tensor::from_vec(values(c_out, 1.7, 0.0, 0.4), c_out, &dev)?,
            running_var: Tensor::from_vec(values(c_out, 2.3, 1.0, 0.5), c_out, &dev)?,
            eps: TORCHVISION_BATCH_NORM_EPS,
        };
        let x = Tensor::from_vec(values(2 * c_in * 25, 0.37, 0.0, 3.0), (2, c_in, 5, 5), &dev)?;

        let conv = x
            .conv2d(&weight, 1, 1, 1, 1)?
            .broadcast_add(&bias.reshape((1, c_out, 1, 1))?)?;
        let per_channel = |t: &Tensor| t.reshape((1, c_out, 1, 1));
        let reference = conv
            .broadcast_sub(&per_channel(&bn.running_mean)?)?
            .broadcast_div(&per_channel(&(&bn.running_var + bn.eps)?.sqrt()?)?)?
            .broadcast_mul(&per_channel(&bn.weight)?)?
            .broadcast_add(&per_channel(&bn.bias)?)?;

        let (w, b) = fold_batch_norm(&weight, Some(&bias), &bn)?;
        let folded = x
            .conv2d(&w, 1, 1, 1, 1)?
            .broadcast_add(&b.reshape((1, c_out, 1, 1))?)?;
        let max_err = (folded - &reference)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f64>()?;
        let max_ref = reference.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
        assert!(max_ref > 1.0, "degenerate test data");
        assert!(max_err <= 1e-12 * max_ref, "max error {max_err}");
        Ok(())
    }
}
