//! Peak memory of one profiled run.
//!
//! On the CPU this is the process's peak resident set size (`VmHWM` in
//! `/proc/self/status`), reset before each run by writing `5` to `/proc/self/clear_refs`
//! (Linux ≥ 4.0), so each run reports its own peak rather than the largest seen so far. The
//! number includes the weights and whatever the allocator kept from earlier runs: compare it
//! between modes of one report, not with other programs' numbers.
//!
//! On CUDA it is the high-water mark of bytes in use in the device's stream-ordered memory
//! pool, which every candle allocation comes from (`device::cuda_pool`), reset before each
//! run: weights, KV cache and activations, counted exactly rather than guessed from a
//! snapshot of free memory. Where the driver has no such pool it is not measured (null).

use candle_core::Device;
use serde::{Deserialize, Serialize};

/// What a peak-memory number means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    /// Peak RSS of the run, reset before it.
    PeakRss,
    /// Peak RSS of the whole process so far (the kernel refused the reset).
    ProcessPeakRss,
    /// Peak bytes in use in the CUDA memory pool during the run, reset before it.
    CudaPoolPeak,
    /// Not measured on this device.
    NotMeasured,
}

/// Measures the peak memory of runs on one device.
#[derive(Debug)]
pub struct PeakMemory {
    kind: MemoryKind,
    device: Device,
}

impl PeakMemory {
    /// Picks what can be measured on `device`.
    pub fn for_device(device: &Device) -> Self {
        let kind = if device.is_cuda() {
            if crate::device::cuda_pool::reset_peak(device) {
                MemoryKind::CudaPoolPeak
            } else {
                MemoryKind::NotMeasured
            }
        } else if !device.is_cpu() || read_vm_hwm().is_none() {
            MemoryKind::NotMeasured
        } else if reset_peak_rss() {
            MemoryKind::PeakRss
        } else {
            MemoryKind::ProcessPeakRss
        };
        Self {
            kind,
            device: device.clone(),
        }
    }

    pub fn kind(&self) -> MemoryKind {
        self.kind
    }

    /// Starts a run: resets the peak where that is possible.
    pub fn start(&self) {
        match self.kind {
            MemoryKind::PeakRss => {
                reset_peak_rss();
            }
            MemoryKind::CudaPoolPeak => {
                crate::device::cuda_pool::reset_peak(&self.device);
            }
            _ => {}
        }
    }

    /// The peak in bytes since [`PeakMemory::start`] (or since the process began, see
    /// [`MemoryKind`]); `None` when not measured.
    pub fn peak_bytes(&self) -> Option<u64> {
        match self.kind {
            MemoryKind::NotMeasured => None,
            MemoryKind::CudaPoolPeak => crate::device::cuda_pool::peak_bytes(&self.device),
            _ => read_vm_hwm(),
        }
    }

    /// A line for reports saying what the numbers are.
    pub fn describe(&self) -> &'static str {
        match self.kind {
            MemoryKind::PeakRss => "peak RSS of each run (VmHWM, reset before the run)",
            MemoryKind::ProcessPeakRss => {
                "peak RSS of the process so far (VmHWM; the kernel refused the per-run reset)"
            }
            MemoryKind::CudaPoolPeak => {
                "peak bytes in use in the CUDA memory pool during each run (weights included; \
                 reset before the run)"
            }
            MemoryKind::NotMeasured => "not measured: no peak-allocation counter for this device",
        }
    }
}

/// `VmHWM` of this process in bytes.
fn read_vm_hwm() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut fields = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

/// Resets `VmHWM` to the current RSS; false where the kernel does not allow it.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_hwm_in_kilobytes() {
        let status = "Name:\tsdtp\nVmPeak:\t  100 kB\nVmHWM:\t   2048 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("VmRSS: 1 kB"), None);
    }

    #[test]
    fn cpu_peak_is_measured_on_linux() {
        let memory = PeakMemory::for_device(&Device::Cpu);
        if cfg!(target_os = "linux") {
            assert_ne!(memory.kind(), MemoryKind::NotMeasured);
            memory.start();
            let before = memory.peak_bytes().unwrap();
            // Touch 64 MiB so the resident set grows.
            let block = vec![1u8; 64 << 20];
            assert!(block.iter().step_by(4096).all(|&b| b == 1));
            let after = memory.peak_bytes().unwrap();
            assert!(after >= before + (32 << 20), "{before} -> {after}");
        }
    }
}
