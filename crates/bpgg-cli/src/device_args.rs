//! `--device`: where a command computes. One flattened struct shared by every command that
//! computes, turned into the library's device in one function.

use bpgg::device::DeviceChoice;
use candle_core::Device;
use clap::Args;
use tracing::info;

/// Where tensors live and kernels run.
#[derive(Debug, Args, Clone)]
pub struct DeviceArgs {
    /// Where to compute: cpu, cuda (GPU 0), cuda:N, or auto (GPU 0 when this bpgg was built with
    /// CUDA and a GPU answers, else the CPU; -v says which).
    #[arg(long, default_value_t = DeviceChoice::default(), value_parser = parse_device, value_name = "DEVICE")]
    pub device: DeviceChoice,
}

fn parse_device(name: &str) -> Result<DeviceChoice, String> {
    name.parse().map_err(|e: bpgg::Error| e.to_string())
}

impl DeviceArgs {
    /// Opens the device and says which it is on stderr with `-v`. A GPU that cannot be had (a
    /// build without CUDA, no GPU answering) is an error that says so; `auto` falls back to the
    /// CPU.
    pub fn open(&self) -> anyhow::Result<Device> {
        let (device, why) = self.device.open_explained()?;
        info!("{why}");
        Ok(device)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        device: DeviceArgs,
    }

    #[test]
    fn default_is_the_cpu_and_names_parse() {
        let probe = Probe::try_parse_from(["probe"]).unwrap();
        assert_eq!(probe.device.device, DeviceChoice::Cpu);
        assert!(probe.device.open().unwrap().is_cpu());
        for (name, choice) in [
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:1", DeviceChoice::Cuda(1)),
            ("auto", DeviceChoice::Auto),
        ] {
            let probe = Probe::try_parse_from(["probe", "--device", name]).unwrap();
            assert_eq!(probe.device.device, choice);
        }
        let e = Probe::try_parse_from(["probe", "--device", "tpu"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected cpu, cuda, cuda:N"), "{e}");
    }
}
