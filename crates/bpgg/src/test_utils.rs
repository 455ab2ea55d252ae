//! One test body for every device (the pattern of candle's `test_device!`), for bpgg's own
//! tests; not part of the API.
//!
//! ```ignore
//! fn fit_and_predict(device: &Device) -> anyhow::Result<()> { ... }
//! bpgg::test_device!(fit_and_predict, fit_and_predict_cpu, fit_and_predict_cuda);
//! ```
//!
//! declares `fit_and_predict_cpu`, always, and `fit_and_predict_cuda` in builds with the `cuda`
//! feature. The CUDA test runs the body on GPU 0 when one answers; otherwise it says on stderr
//! that it skipped, or fails when `BPGG_REQUIRE_CUDA` is set (as on a GPU machine, where a
//! silent skip would hide a broken driver setup).

pub use candle_core::Device;
use candle_core::Tensor;

/// Declares `$cpu` (always) and `$cuda` (with the `cuda` feature) running
/// `$body(&device) -> Result<_, impl Debug>` on the CPU and on CUDA GPU 0.
#[macro_export]
macro_rules! test_device {
    ($body:ident, $cpu:ident, $cuda:ident) => {
        #[test]
        fn $cpu() {
            $crate::test_utils::expect_ok($body(&$crate::test_utils::Device::Cpu));
        }

        #[cfg(feature = "cuda")]
        #[test]
        fn $cuda() {
            if let Some(device) = $crate::test_utils::cuda_device_for_tests() {
                $crate::test_utils::expect_ok($body(&device));
            }
        }
    };
}

/// CUDA GPU 0, or `None` after saying on stderr why the test is skipped; panics instead when
/// `BPGG_REQUIRE_CUDA` is set.
pub fn cuda_device_for_tests() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(device) => Some(device),
        Err(e) if std::env::var_os("BPGG_REQUIRE_CUDA").is_some() => {
            panic!("BPGG_REQUIRE_CUDA is set but no CUDA GPU answers: {e}")
        }
        Err(e) => {
            let e = e.to_string();
            eprintln!(
                "skipped: no CUDA GPU answers ({}); set BPGG_REQUIRE_CUDA=1 to fail instead",
                e.lines().next().unwrap_or_default()
            );
            None
        }
    }
}

/// Unwraps a test body's result, showing the error's `Debug` (an `anyhow` chain) on failure.
#[track_caller]
pub fn expect_ok<T, E: std::fmt::Debug>(result: Result<T, E>) {
    if let Err(e) = result {
        panic!("{e:?}");
    }
}

/// The largest absolute difference between two tensors of one shape, on any devices
/// (compared on the CPU, in `f32`); a NaN against anything but itself counts as infinite.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> crate::Result<f32> {
    if a.dims() != b.dims() {
        return Err(crate::Error::ShapeMismatch(format!(
            "max_abs_diff: {:?} against {:?}",
            a.dims(),
            b.dims()
        )));
    }
    let host = |t: &Tensor| -> crate::Result<Vec<f32>> {
        Ok(t.to_device(&Device::Cpu)?
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    };
    let (a, b) = (host(a)?, host(b)?);
    // A NaN on either side (or infinities of opposite sign) is an infinite difference, never
    // one that `max` quietly drops.
    let diff = |(x, y): (&f32, &f32)| match (x - y).abs() {
        _ if x == y => 0.0,
        d if d.is_nan() => f32::INFINITY,
        d => d,
    };
    Ok(a.iter().zip(&b).map(diff).fold(0f32, f32::max))
}
