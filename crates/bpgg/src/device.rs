//! Where tensors live and kernels run: the CPU, or a CUDA GPU when bpgg is built with its
//! `cuda` feature (candle's CUDA backend).
//!
//! Every library function that creates tensors takes a [`candle_core::Device`] (or works on the
//! device of the tensors it is given); [`DeviceChoice`] is how a user names one (`cpu`, `cuda`,
//! `cuda:N`, `auto`) and [`DeviceChoice::open`] turns that name into a device, with an
//! [`Error::Device`] that says what is missing when a GPU cannot be had. The CPU kernels of the
//! backbones and of the k-NN search fall back to candle's own ops off the CPU, so a fitted model
//! gives the same maps on either device (up to `f32` summation order).

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::{Error, Result};

/// Whether this build has candle's CUDA backend (the `cuda` cargo feature).
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

/// A device as a user names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The CPU (the default: every build has it).
    #[default]
    Cpu,
    /// CUDA GPU number N (`cuda` is `cuda:0`); an error when the build has no CUDA backend or
    /// that GPU does not answer.
    Cuda(usize),
    /// CUDA GPU 0 when the build has the CUDA backend and the GPU answers, else the CPU.
    Auto,
}

impl DeviceChoice {
    /// Opens the device (a CUDA context for a GPU).
    ///
    /// # Errors
    /// [`Error::Device`] when a GPU is asked for by number and this build has no CUDA backend,
    /// or no such GPU answers (no driver, no device, a device number past the last).
    pub fn open(self) -> Result<Device> {
        Ok(self.open_explained()?.0)
    }

    /// [`Self::open`], with a sentence saying which device was opened and, for `auto`, why (for
    /// a log line).
    pub fn open_explained(self) -> Result<(Device, String)> {
        match self {
            DeviceChoice::Cpu => Ok((Device::Cpu, "device cpu".into())),
            DeviceChoice::Cuda(ordinal) => {
                let device = open_cuda(ordinal)?;
                Ok((device, format!("device cuda:{ordinal}")))
            }
            DeviceChoice::Auto => match open_cuda(0) {
                Ok(device) => Ok((device, "device auto: cuda:0".into())),
                Err(e) => Ok((Device::Cpu, format!("device auto: cpu ({e})"))),
            },
        }
    }
}

/// CUDA GPU `ordinal`, or why there is none.
fn open_cuda(ordinal: usize) -> Result<Device> {
    if !CUDA_COMPILED {
        return Err(Error::Device(format!(
            "device cuda:{ordinal}: this bpgg was built without CUDA support (build it with the \
             `cuda` feature: scripts/build_cuda.sh)"
        )));
    }
    Device::new_cuda(ordinal).map_err(|e| {
        Error::Device(format!(
            "device cuda:{ordinal}: no CUDA GPU {ordinal} answers ({})",
            one_line(&e.to_string())
        ))
    })
}

/// The first line of a message (candle's CUDA errors carry a backtrace-like tail).
fn one_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message).trim_end()
}

impl FromStr for DeviceChoice {
    type Err = Error;

    /// `cpu`, `cuda`, `cuda:N` or `auto` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        let name = s.trim().to_ascii_lowercase();
        let bad = || {
            Error::InvalidConfig(format!(
                "device `{s}`: expected cpu, cuda, cuda:N (N a GPU number) or auto"
            ))
        };
        match name.as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            "auto" => Ok(DeviceChoice::Auto),
            _ => {
                let ordinal = name.strip_prefix("cuda:").ok_or_else(bad)?;
                ordinal.parse().map(DeviceChoice::Cuda).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
            DeviceChoice::Auto => f.write_str("auto"),
        }
    }
}

/// A device's name as [`DeviceChoice`] writes it (`cpu`, `cuda:0`).
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Waits until the device has finished the work queued on it (CUDA runs asynchronously): what
/// a benchmark does before it stops its clock. A no-op on the CPU.
pub fn synchronize(device: &Device) -> Result<()> {
    Ok(device.synchronize()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for (name, choice) in [
            ("cpu", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("CUDA:3", DeviceChoice::Cuda(3)),
            (" auto ", DeviceChoice::Auto),
        ] {
            assert_eq!(name.parse::<DeviceChoice>().unwrap(), choice, "{name}");
        }
        for choice in [DeviceChoice::Cpu, DeviceChoice::Cuda(2), DeviceChoice::Auto] {
            assert_eq!(choice.to_string().parse::<DeviceChoice>().unwrap(), choice);
        }
        assert_eq!(DeviceChoice::default(), DeviceChoice::Cpu);
    }

    #[test]
    fn bad_names_say_what_is_expected() {
        for bad in [
            "", "gpu0", "cuda:", "cuda:x", "cuda:-1", "metal", "cuda:0:1",
        ] {
            let e = bad.parse::<DeviceChoice>().unwrap_err().to_string();
            assert!(e.contains("expected cpu, cuda, cuda:N"), "{bad}: {e}");
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
    }

    #[test]
    fn cpu_always_opens() {
        let (device, why) = DeviceChoice::Cpu.open_explained().unwrap();
        assert!(device.is_cpu());
        assert_eq!(why, "device cpu");
        assert_eq!(device_name(&device), "cpu");
        synchronize(&device).unwrap();
    }

    /// Without the CUDA backend a GPU asked for by number is an error that says how to get one,
    /// and `auto` is the CPU, saying why.
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_cuda_a_gpu_is_an_error_and_auto_is_the_cpu() {
        let e = DeviceChoice::Cuda(1).open().unwrap_err();
        assert!(matches!(e, Error::Device(_)));
        let e = e.to_string();
        assert!(
            e.starts_with("device cuda:1: ") && e.contains("without CUDA support"),
            "{e}"
        );
        assert!(e.contains("scripts/build_cuda.sh"), "{e}");
        let (device, why) = DeviceChoice::Auto.open_explained().unwrap();
        assert!(device.is_cpu());
        assert!(
            why.starts_with("device auto: cpu (") && why.contains("without CUDA"),
            "{why}"
        );
    }

    /// With the CUDA backend, a GPU number past the last is an error naming it (whether or not
    /// the machine has GPUs), and `auto` opens GPU 0 exactly when `cuda:0` opens.
    #[cfg(feature = "cuda")]
    #[test]
    fn with_cuda_a_missing_gpu_is_an_error_and_auto_follows_gpu_0() {
        let e = DeviceChoice::Cuda(4096).open().unwrap_err().to_string();
        assert!(
            e.starts_with("device cuda:4096: no CUDA GPU 4096 answers ("),
            "{e}"
        );
        let (device, why) = DeviceChoice::Auto.open_explained().unwrap();
        match DeviceChoice::Cuda(0).open() {
            Ok(_) => assert!(device.is_cuda() && why == "device auto: cuda:0", "{why}"),
            Err(e) => {
                assert!(device.is_cpu(), "{why}");
                assert!(why.contains(&e.to_string()), "{why} / {e}");
            }
        }
    }
}
