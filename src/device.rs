//! `--device` and `--dtype`: parsing, availability checks, and the device clock helpers.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};

/// What the user asked for with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceRequest {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(ordinal)) => Ok(Self::Cuda(ordinal)),
                _ => bail!("unknown device \"{s}\" (use auto, cpu, cuda or cuda:N)"),
            },
        }
    }
}

/// What the user asked for with `--dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DTypeRequest {
    Auto,
    Exact(DType),
}

impl std::str::FromStr for DTypeRequest {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "f32" => Ok(Self::Exact(DType::F32)),
            "f16" => Ok(Self::Exact(DType::F16)),
            "bf16" => Ok(Self::Exact(DType::BF16)),
            _ => bail!("unknown dtype \"{s}\" (use auto, f32, f16 or bf16)"),
        }
    }
}

/// Opens the requested device. CUDA in a build without the `cuda` feature is an error that
/// says how to get one, rather than a silent fall back to the CPU.
pub fn open_device(request: DeviceRequest) -> Result<Device> {
    match request {
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Auto if candle_core::utils::cuda_is_available() => {
            Ok(cuda_pool::prepare(Device::new_cuda(0)?))
        }
        DeviceRequest::Auto => Ok(Device::Cpu),
        DeviceRequest::Cuda(ordinal) => {
            if !candle_core::utils::cuda_is_available() {
                bail!(
                    "device cuda:{ordinal} requested but this sdtp was built without CUDA; \
                     build with scripts/build_cuda.sh (cargo build --features cuda) or use --device cpu"
                );
            }
            Device::new_cuda(ordinal)
                .map(cuda_pool::prepare)
                .with_context(|| format!("cannot open CUDA device {ordinal}"))
        }
    }
}

/// Resolves `--dtype` for `device` (auto: bf16 on CUDA, f32 on CPU) and checks that the
/// device can run a matmul and a softmax in it, so an unsupported pair fails at start-up.
pub fn resolve_dtype(request: DTypeRequest, device: &Device) -> Result<DType> {
    let dtype = match request {
        DTypeRequest::Auto if device.is_cuda() => DType::BF16,
        DTypeRequest::Auto => DType::F32,
        DTypeRequest::Exact(dtype) => dtype,
    };
    let probe = || -> candle_core::Result<()> {
        let x = Tensor::ones((2, 2), DType::F32, device)?.to_dtype(dtype)?;
        let y = candle_nn::ops::softmax_last_dim(&x.matmul(&x)?)?;
        y.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    };
    probe().map_err(|e| {
        anyhow::anyhow!(
            "dtype {} is not supported on {}: {e}; use --dtype f32",
            dtype.as_str(),
            device_name(device)
        )
    })?;
    Ok(dtype)
}

/// A human name for reports: "cpu" or "cuda:0".
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Waits for queued device work, so a clock read after it measures the work itself.
pub fn synchronize(device: &Device) -> Result<()> {
    device
        .synchronize()
        .context("device synchronisation failed")
}

/// Bytes [`copy_rate_bytes_per_s`] copies: 1 GiB on a GPU, 256 MiB on the CPU (far past
/// every cache level in both cases).
pub fn copy_probe_bytes(device: &Device) -> usize {
    if device.is_cpu() {
        256 << 20
    } else {
        1 << 30
    }
}

/// Timed copies behind [`copy_rate_bytes_per_s`]: one warm-up, then the median of these.
const COPY_SAMPLES: usize = 5;

/// The device's memory copy rate, the ceiling `sdtp profile end2end` compares its decode
/// bandwidth with, in bytes per second **counting bytes read plus bytes written**:
/// `2 × size / time` for one copy of [`copy_probe_bytes`] bytes, the median of 5 copies after
/// one warm-up copy. This is how the usual quotes are measured (a PyTorch device-to-device
/// copy on an H200 gives ≈ 4.3 TB/s this way), so a decode that reads N bytes per token at
/// that rate is at 100% of it.
///
/// - On a GPU: a device-to-device copy of a u8 tensor (`Tensor::copy`, one
///   `cuMemcpyDtoDAsync` on CUDA), the device synchronised before each clock read.
/// - On the CPU: `copy_from_slice` between two buffers already touched (so no page faults
///   are timed), split in contiguous chunks over candle's CPU threads, as candle's kernels
///   are.
///
/// It allocates twice the probe size for the duration of the call.
pub fn copy_rate_bytes_per_s(device: &Device) -> Result<f64> {
    let bytes = copy_probe_bytes(device);
    let mut secs = if device.is_cpu() {
        cpu_copy_secs(bytes, candle_core::utils::get_num_threads())
    } else {
        device_copy_secs(device, bytes)?
    };
    secs.sort_by(f64::total_cmp);
    let median = secs[secs.len() / 2];
    if median <= 0.0 {
        bail!("the copy-rate probe took no measurable time");
    }
    Ok(2.0 * bytes as f64 / median)
}

/// Seconds of [`COPY_SAMPLES`] device-to-device copies of `bytes` bytes, after a warm-up.
fn device_copy_secs(device: &Device, bytes: usize) -> Result<Vec<f64>> {
    let source = Tensor::zeros(bytes, DType::U8, device)?;
    drop(source.copy()?);
    let mut secs = Vec::with_capacity(COPY_SAMPLES);
    for _ in 0..COPY_SAMPLES {
        synchronize(device)?;
        let started = std::time::Instant::now();
        let copy = source.copy()?;
        synchronize(device)?;
        secs.push(started.elapsed().as_secs_f64());
        drop(copy);
    }
    Ok(secs)
}

/// Seconds of [`COPY_SAMPLES`] copies of `bytes` bytes between two touched buffers, over
/// `threads` threads, after a warm-up.
fn cpu_copy_secs(bytes: usize, threads: usize) -> Vec<f64> {
    let source = vec![1u8; bytes];
    let mut target = vec![0u8; bytes];
    let mut copy = || {
        let started = std::time::Instant::now();
        parallel_copy(&mut target, &source, threads);
        started.elapsed().as_secs_f64()
    };
    copy();
    let secs = (0..COPY_SAMPLES).map(|_| copy()).collect();
    // Keep the copies from being optimised away.
    std::hint::black_box(&target);
    secs
}

/// `target.copy_from_slice(source)` in `threads` contiguous chunks, one thread each.
fn parallel_copy(target: &mut [u8], source: &[u8], threads: usize) {
    let chunk = source.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for (to, from) in target.chunks_mut(chunk).zip(source.chunks(chunk)) {
            s.spawn(move || to.copy_from_slice(from));
        }
    });
}

/// The CUDA device's stream-ordered memory pool, which every candle allocation comes from
/// (cudarc allocates with `cuMemAllocAsync` where the driver supports it).
pub mod cuda_pool {
    use candle_core::Device;

    /// Sets the device up for sdtp's one-stream use: keeps freed memory in the pool instead
    /// of returning it to the driver at every synchronisation (the prune stages synchronise
    /// to read scores, and re-mapping gigabytes after each is slow), and turns off candle's
    /// per-tensor events, which only order work across streams.
    pub fn prepare(device: Device) -> Device {
        #[cfg(feature = "cuda")]
        if let Device::Cuda(cuda) = &device {
            // SAFETY: sdtp queues all work on the device's single stream, so stream order
            // alone keeps every use of a tensor before its release.
            unsafe { cuda.disable_event_tracking() };
            if let Some(pool) = imp::pool(&device) {
                imp::set(pool, imp::Attr::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, u64::MAX);
            }
        }
        device
    }

    /// Starts a measurement: the pool's high-water mark drops to what is in use now.
    /// Returns false where there is no pool to measure (CPU, or no async allocation).
    pub fn reset_peak(device: &Device) -> bool {
        #[cfg(feature = "cuda")]
        if let Some(pool) = imp::pool(device) {
            return imp::set(pool, imp::Attr::CU_MEMPOOL_ATTR_USED_MEM_HIGH, 0);
        }
        let _ = device;
        false
    }

    /// Most bytes in use at once since [`reset_peak`] (weights and cache included).
    pub fn peak_bytes(device: &Device) -> Option<u64> {
        #[cfg(feature = "cuda")]
        if let Some(pool) = imp::pool(device) {
            return imp::get(pool, imp::Attr::CU_MEMPOOL_ATTR_USED_MEM_HIGH);
        }
        let _ = device;
        None
    }

    #[cfg(feature = "cuda")]
    mod imp {
        use candle_core::cuda_backend::cudarc::driver::result::{device, mem_pool};
        use candle_core::cuda_backend::cudarc::driver::sys;
        use candle_core::Device;

        pub use sys::CUmemPool_attribute as Attr;

        pub fn pool(device: &Device) -> Option<sys::CUmemoryPool> {
            let Device::Cuda(cuda) = device else {
                return None;
            };
            let stream = cuda.cuda_stream();
            let ctx = stream.context();
            if !ctx.has_async_alloc() {
                return None;
            }
            // SAFETY: the CUdevice comes from a live context.
            unsafe { device::get_default_mem_pool(ctx.cu_device()) }.ok()
        }

        pub fn set(pool: sys::CUmemoryPool, attr: Attr, value: u64) -> bool {
            let mut value = value;
            // SAFETY: both attributes used here take a cuuint64_t.
            unsafe { mem_pool::set_attribute(pool, attr, (&mut value as *mut u64).cast()) }.is_ok()
        }

        pub fn get(pool: sys::CUmemoryPool, attr: Attr) -> Option<u64> {
            let mut value = 0u64;
            // SAFETY: as in `set`.
            unsafe { mem_pool::get_attribute(pool, attr, (&mut value as *mut u64).cast()) }
                .ok()
                .map(|_| value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cpu);
        assert_eq!(
            "cuda:3".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Cuda(3)
        );
        let err = "tpu".parse::<DeviceRequest>().unwrap_err().to_string();
        assert!(err.contains("unknown device \"tpu\""), "{err}");
        assert!("cuda:x".parse::<DeviceRequest>().is_err());
    }

    #[test]
    fn parses_dtypes_and_auto_is_f32_on_cpu() {
        assert!("f8".parse::<DTypeRequest>().is_err());
        let dtype = resolve_dtype(DTypeRequest::Auto, &Device::Cpu).unwrap();
        assert_eq!(dtype, DType::F32);
    }

    #[test]
    fn cpu_copies_are_exact_and_the_rate_is_plausible() {
        // Chunks over threads that do not divide the size still copy every byte.
        let source: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut target = vec![0u8; 1000];
        parallel_copy(&mut target, &source, 3);
        assert_eq!(target, source);
        let secs = cpu_copy_secs(1000, 3);
        assert_eq!(secs.len(), COPY_SAMPLES);
        assert!(secs.iter().all(|s| s.is_finite() && *s >= 0.0));
        assert_eq!(copy_probe_bytes(&Device::Cpu), 256 << 20);
        // Read plus write: any machine that runs the tests moves between 100 MB/s and
        // 10 TB/s.
        let rate = copy_rate_bytes_per_s(&Device::Cpu).unwrap();
        assert!((1e8..1e13).contains(&rate), "{rate} B/s");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_build_it() {
        let err = open_device(DeviceRequest::Cuda(0)).unwrap_err().to_string();
        assert!(err.contains("built without CUDA"), "{err}");
    }
}
