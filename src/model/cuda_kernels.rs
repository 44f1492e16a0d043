//! What sdtp's own CUDA kernels share: loading a PTX module once per device, launching its
//! functions with a raised shared-memory limit, the dtype names in kernel names, and the
//! CPU half of candle's custom-op traits (these ops exist only on CUDA).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::cuda_backend::cudarc::driver::sys::CUfunction_attribute;
use candle_core::cuda_backend::cudarc::driver::{CudaFunction, CudaModule, CudaStream, LaunchArgs};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::{DType, Layout, Result};

/// A kernel function ready to launch on the device's stream.
pub struct Kernel {
    func: CudaFunction,
    stream: Arc<CudaStream>,
}

impl Kernel {
    /// Function `name` of the PTX module `ptx`, loaded once per device (module and function
    /// both cached), with `smem` bytes of dynamic shared memory allowed (above the default
    /// 48 KiB needs the attribute, which candle's own custom-kernel cache gives no way to set).
    pub fn load(dev: &CudaDevice, ptx: &'static str, name: &str, smem: u32) -> Result<Self> {
        // (device, PTX text, function) -> the function, its attribute already set. The PTX
        // texts are statics: their address names the module.
        type Modules = HashMap<(usize, usize), Arc<CudaModule>>;
        type Functions = HashMap<(usize, usize, String), CudaFunction>;
        static MODULES: OnceLock<Mutex<Modules>> = OnceLock::new();
        static FUNCTIONS: OnceLock<Mutex<Functions>> = OnceLock::new();
        fn poisoned<E>(_: E) -> candle_core::Error {
            candle_core::Error::Msg("CUDA kernel cache poisoned".into())
        }
        let stream = dev.cuda_stream();
        let ctx = stream.context().clone();
        let module_key = (ctx.ordinal(), ptx.as_ptr() as usize);
        let key = (module_key.0, module_key.1, name.to_string());
        let mut functions = FUNCTIONS
            .get_or_init(Default::default)
            .lock()
            .map_err(poisoned)?;
        if let Some(func) = functions.get(&key) {
            return Ok(Self {
                func: func.clone(),
                stream,
            });
        }
        let module = {
            let mut modules = MODULES
                .get_or_init(Default::default)
                .lock()
                .map_err(poisoned)?;
            match modules.get(&module_key) {
                Some(m) => m.clone(),
                None => {
                    let m = ctx.load_module(ptx.into()).w()?;
                    modules.insert(module_key, m.clone());
                    m
                }
            }
        };
        let func = module.load_function(name).w()?;
        if smem > 48 * 1024 {
            func.set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem as i32,
            )
            .w()?;
        }
        functions.insert(key, func.clone());
        Ok(Self { func, stream })
    }

    pub fn builder(&self) -> LaunchArgs<'_> {
        self.stream.launch_builder(&self.func)
    }
}

/// Sizes of an attention call: q (1, heads, t, d) over keys (1, kv_heads, n, d).
pub struct AttentionDims {
    pub heads: usize,
    pub kv_heads: usize,
    pub t: usize,
    pub n: usize,
    pub d: usize,
}

impl AttentionDims {
    /// Reads and checks q's and k's (and v's, when given) layouts: whole query groups per
    /// key head, no more queries than keys, v as long as k. `what` names the op in the error.
    pub fn check(what: &str, lq: &Layout, lk: &Layout, lv: Option<&Layout>) -> Result<Self> {
        let (_, heads, t, d) = lq.shape().dims4()?;
        let (_, kv_heads, n, _) = lk.shape().dims4()?;
        let v_rows = lv
            .map(|l| l.shape().dims4())
            .transpose()?
            .map(|dims| dims.2);
        if kv_heads == 0 || heads % kv_heads != 0 || t > n || v_rows.is_some_and(|rows| rows != n) {
            candle_core::bail!(
                "{what}: q {:?} k {:?} v {:?}",
                lq.shape(),
                lk.shape(),
                lv.map(|l| l.shape())
            );
        }
        Ok(Self {
            heads,
            kv_heads,
            t,
            n,
            d,
        })
    }

    pub fn groups(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// The dtype as it appears in kernel names (`flash_attn_bf16_d128`).
pub fn dtype_suffix(dtype: DType, what: &str) -> Result<&'static str> {
    match dtype {
        DType::BF16 => Ok("bf16"),
        DType::F16 => Ok("f16"),
        DType::F32 => Ok("f32"),
        other => candle_core::bail!("{what}: unsupported dtype {other:?}"),
    }
}

/// The `cpu_fwd` of a custom op with N inputs that runs on CUDA only.
macro_rules! cuda_only {
    (1, $what:literal) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            candle_core::bail!(concat!($what, " runs on CUDA only"))
        }
    };
    (2, $what:literal) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            candle_core::bail!(concat!($what, " runs on CUDA only"))
        }
    };
    (3, $what:literal) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            candle_core::bail!(concat!($what, " runs on CUDA only"))
        }
    };
}
pub(crate) use cuda_only;
