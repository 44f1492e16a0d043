//! The decode step on CUDA with its lengths on the device, recorded once as a CUDA graph and
//! replayed for every token.
//!
//! Decoding one token of a 7B model launches some 600 small kernels. Launched one by one
//! through candle, the host cannot queue them as fast as the GPU runs them, and the step's
//! time is set by the host, not by the bytes it reads. [`Llama::decode_resident`] makes the
//! step independent of anything only the host knows: the token, its position and each
//! layer's cache length live in a small u32 buffer on the device, the new keys and values
//! are written at the length read from it, and attention reads the length from it too. So
//! the first step runs eagerly (loading every kernel and caching candle's small parameter
//! uploads), the second is captured into a graph, and from then on a step is: write the
//! buffer, launch the graph, read the next token (greedy: the arg max is taken on the device)
//! or the logits (sampling).
//!
//! The caches' buffers are reserved up front for every token the call may decode, since the
//! graph holds their addresses. `SDTP_DECODE` picks the path for measurements and parity
//! checks: `graph` (the default where supported), `resident` (the same step launched op by
//! op, to tell the graph's share of a speed-up from the kernels'), `host` (the step every
//! device runs, with lengths on the host).

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};

use crate::model::cache::KvCache;
use crate::model::llama::{Llama, ResidentInputs};

/// How the decode steps ran, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodePath {
    /// Every length on the host, candle ops launched one by one (CPU, and models the
    /// resident step does not cover).
    Host,
    /// The device-resident step, launched op by op (`SDTP_DECODE=resident`, or recording
    /// the graph failed).
    Resident,
    /// The device-resident step replayed from a CUDA graph.
    Graph,
}

impl DecodePath {
    pub fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Resident => "resident",
            Self::Graph => "cuda-graph",
        }
    }
}

/// What a step hands back: the next token when decoding is greedy (the arg max was taken on
/// the device), else the logits (vocab,) f32 to sample from.
pub enum StepOutput {
    Token(u32),
    Logits(Tensor),
}

enum Graph {
    /// Not recorded yet: the next step runs eagerly, then records.
    Pending,
    #[cfg(feature = "cuda")]
    Ready(candle_core::cuda_backend::cudarc::driver::CudaGraph),
    /// Runs eagerly for good (disabled, or recording failed).
    Off,
}

/// The buffers one generation's resident steps share: the inputs the host writes, the
/// logits and (greedy) the token every step leaves, and the recorded graph.
pub struct ResidentDecoder {
    inputs: Tensor,
    /// The token's embedding row, written by the host each step, for models whose table is
    /// expanded on the host (quantized).
    embedded: Option<Tensor>,
    logits: Tensor,
    token: Option<Tensor>,
    graph: Graph,
}

impl ResidentDecoder {
    /// Prepares `steps` decode steps over `cache` (each layer's buffers get room for them),
    /// or `None` where the model's decode cannot run resident.
    pub fn new(
        model: &Llama,
        cache: &mut KvCache,
        steps: usize,
        greedy: bool,
    ) -> Result<Option<Self>> {
        let asked = std::env::var("SDTP_DECODE").unwrap_or_default();
        let graph = match asked.as_str() {
            "" | "graph" => Graph::Pending,
            "resident" => Graph::Off,
            "host" => return Ok(None),
            other => anyhow::bail!(
                "SDTP_DECODE={other} is not a decode path; use graph, resident or host"
            ),
        };
        if !model.resident_decode_supported() || steps == 0 {
            return Ok(None);
        }
        for layer in &mut cache.layers {
            layer
                .reserve(steps)
                .context("cannot reserve the decode steps' room in the cache")?;
        }
        let device = model.device();
        let (vocab, hidden) = (model.config().vocab_size, model.config().hidden_size);
        Ok(Some(Self {
            inputs: Tensor::zeros(ResidentInputs::slot(cache.layers.len()), DType::U32, device)?,
            embedded: model
                .embeds_on_host()
                .then(|| Tensor::zeros((1, 1, hidden), model.dtype(), device))
                .transpose()?,
            logits: Tensor::zeros(vocab, DType::F32, device)?,
            token: greedy
                .then(|| Tensor::zeros(1, DType::U32, device))
                .transpose()?,
            graph,
        }))
    }

    /// The path the steps take now.
    pub fn path(&self) -> DecodePath {
        match self.graph {
            #[cfg(feature = "cuda")]
            Graph::Ready(_) => DecodePath::Graph,
            Graph::Pending => DecodePath::Graph,
            Graph::Off => DecodePath::Resident,
        }
    }

    /// Runs `token` at `position` through the model, appending its keys and values to every
    /// layer's cache (room reserved by [`ResidentDecoder::new`]).
    pub fn step(
        &mut self,
        model: &Llama,
        cache: &mut KvCache,
        token: u32,
        position: u32,
    ) -> Result<StepOutput> {
        let values = ResidentInputs::values(token, position, &cache.layer_lens());
        self.inputs
            .slice_set(&Tensor::new(values.as_slice(), model.device())?, 0, 0)?;
        if let Some(row) = &self.embedded {
            row.slice_set(&model.embed(&[token])?, 0, 0)?;
        }
        self.run(model, cache)?;
        for layer in &mut cache.layers {
            layer.note_written(position)?;
        }
        Ok(match &self.token {
            Some(next) => StepOutput::Token(next.to_vec1::<u32>()?[0]),
            None => StepOutput::Logits(self.logits.clone()),
        })
    }

    fn run(&mut self, model: &Llama, cache: &KvCache) -> Result<()> {
        match &self.graph {
            Graph::Off => self.record(model, cache),
            #[cfg(feature = "cuda")]
            Graph::Ready(graph) => graph.launch().context("CUDA graph launch failed"),
            #[cfg(feature = "cuda")]
            Graph::Pending => {
                let candle_core::Device::Cuda(cuda) = model.device() else {
                    anyhow::bail!("device-resident decode off CUDA");
                };
                {
                    // This step, eagerly: it loads every kernel and fills candle's cache of
                    // small parameter uploads, which the recording then reuses.
                    let _params = cuda.enable_cuda_graph_htod_cache();
                    self.record(model, cache)?;
                }
                self.graph = match self.capture(model, cache, cuda) {
                    Ok(graph) => Graph::Ready(graph),
                    Err(error) => {
                        tracing::warn!("decoding without a CUDA graph: {error:#}");
                        Graph::Off
                    }
                };
                Ok(())
            }
            #[cfg(not(feature = "cuda"))]
            Graph::Pending => self.record(model, cache),
        }
    }

    /// The step's work, queued on the device: logits, and the arg max when greedy, into the
    /// buffers every step shares.
    fn record(&self, model: &Llama, cache: &KvCache) -> Result<()> {
        #[cfg(feature = "cuda")]
        {
            let logits = model.decode_resident(&self.inputs, self.embedded.as_ref(), cache)?;
            self.logits.slice_set(&logits, 0, 0)?;
            if let Some(token) = &self.token {
                token.slice_set(&logits.argmax(0)?.reshape(1)?, 0, 0)?;
            }
            Ok(())
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (model, cache);
            anyhow::bail!("device-resident decode needs the cuda build")
        }
    }

    /// Records [`ResidentDecoder::record`] into a graph (nothing runs while recording).
    #[cfg(feature = "cuda")]
    fn capture(
        &self,
        model: &Llama,
        cache: &KvCache,
        cuda: &candle_core::CudaDevice,
    ) -> Result<candle_core::cuda_backend::cudarc::driver::CudaGraph> {
        use candle_core::cuda_backend::cudarc::driver::sys;
        let stream = cuda.cuda_stream();
        let _params = cuda.enable_cuda_graph_htod_cache();
        stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .context("cannot start recording the decode step")?;
        // Whatever the recording did, the stream must leave capture mode.
        let recorded = self.record(model, cache);
        let ended = stream.end_capture(sys::CUgraphInstantiate_flags(0));
        recorded.context("recording the decode step failed")?;
        let graph = ended
            .context("cannot instantiate the decode step's graph")?
            .context("recording the decode step gave no graph")?;
        graph
            .upload()
            .context("cannot upload the decode step's graph")?;
        Ok(graph)
    }
}
