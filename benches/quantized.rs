//! Quantized matmul on the CPU, the measurements behind `model::quant::runtime_type` and
//! `model::proj::EXPAND_FROM_ROWS`: candle's `QMatMul` against expanding the matrix to
//! f32 and multiplying densely (the expansion timed too, as the prefill pays it), per block
//! type, for SmolLM2's shapes (width 576 and 1536) and a 7–8B model's 4096 × 4096, at 1 input
//! row (decode), 32 and 512 (prefill).
//!
//! Run: `cargo bench --bench quantized` (add `-- q4_1` to filter by name; `-- "q4_0 4096"`
//! compares the row layout (`expanded_sdtp`, `blocks_sdtp`) with the grouped one).

use std::fmt;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use divan::Bencher;

fn main() {
    divan::main();
}

#[derive(Clone, Copy)]
struct Case {
    dtype: GgmlDType,
    /// Output and input widths of the matrix.
    n: usize,
    k: usize,
    /// Input rows.
    m: usize,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let name = sdtp::model::quant::type_name(self.dtype);
        write!(f, "{name} {}->{} rows {}", self.k, self.n, self.m)
    }
}

fn cases() -> Vec<Case> {
    let types = [
        GgmlDType::Q8_0,
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q4K,
    ];
    let mut cases = Vec::new();
    for dtype in types {
        for (n, k) in [(1536, 576), (576, 1536), (4096, 4096)] {
            if k % dtype.block_size() != 0 {
                continue;
            }
            let rows: &[usize] = if n == 4096 {
                &[1, 4, 8, 16, 32, 512]
            } else {
                &[1, 32, 512]
            };
            for &m in rows {
                cases.push(Case { dtype, n, k, m });
            }
        }
    }
    cases
}

fn inputs(case: Case) -> (QTensor, Tensor) {
    let w = Tensor::randn(0f32, 0.02, (case.n, case.k), &Device::Cpu).expect("weights");
    let x = Tensor::randn(0f32, 1.0, (1, case.m, case.k), &Device::Cpu).expect("input");
    (QTensor::quantize(&w, case.dtype).expect("quantize"), x)
}

#[divan::bench(args = cases(), sample_count = 10)]
fn quantized(bencher: Bencher, case: Case) {
    let (q, x) = inputs(case);
    let mm = QMatMul::from_qtensor(q).expect("qmatmul");
    mm.forward(&x).expect("the first call packs candle's tiles");
    bencher.bench_local(|| mm.forward(&x).expect("forward"));
}

#[divan::bench(args = cases(), sample_count = 10)]
fn expanded(bencher: Bencher, case: Case) {
    let (q, x) = inputs(case);
    bencher.bench_local(|| {
        let w = q.dequantize(&Device::Cpu).expect("dequantize");
        x.broadcast_matmul(&w.t().expect("transpose"))
            .expect("matmul")
    });
}

/// sdtp's GEMM on slabs it expands on AVX-512 (`model::cpu_dequant`), where it applies.
#[divan::bench(args = cases(), sample_count = 10)]
fn expanded_sdtp(bencher: Bencher, case: Case) {
    let (q, x) = inputs(case);
    bencher.bench_local(|| sdtp::model::cpu_dequant::matmul(&x, &q).expect("matmul"));
}

/// sdtp's VNNI kernel on the blocks (`model::cpu_qmatmul`), where it applies.
#[divan::bench(args = cases(), sample_count = 10)]
fn blocks_sdtp(bencher: Bencher, case: Case) {
    let (q, x) = inputs(case);
    bencher.bench_local(|| sdtp::model::cpu_qmatmul::matmul(&x, &q).expect("matmul"));
}

/// The same matrix regrouped eight rows at a time (`model::cpu_q4x8`), q4_0 only: the decode
/// kernel on the groups below `EXPAND_FROM_ROWS` input rows, the slab GEMM on groups from it.
#[divan::bench(args = cases(), sample_count = 10)]
fn grouped_sdtp(bencher: Bencher, case: Case) {
    use sdtp::model::cpu_q4x8::{applies, Q4x8};
    let (q, x) = inputs(case);
    if !applies(case.dtype, case.n, case.k) {
        return;
    }
    let grouped = Q4x8::from_rows(&q.data().expect("bytes"), case.n, case.k).expect("regroup");
    bencher.bench_local(|| {
        if case.m >= sdtp::model::proj::EXPAND_FROM_ROWS {
            sdtp::model::cpu_dequant::matmul_grouped(&x, &grouped).expect("matmul")
        } else {
            grouped.products(&x).expect("matmul")
        }
    });
}
