//! The fused CUDA attention against the blocked f32 path on the CPU, on random inputs over
//! lengths 1..=4096 (tile edges and non-multiples of the 64-row tile), prefill (t = n), decode
//! (t = 1) and chunk (t < n) shapes, GQA, head dims 64 and 128, bf16 and f16, and KV-cache
//! views whose head stride has spare capacity. Runs only in a `--features cuda` build on a GPU.
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Tensor};
use sdtp::model::attention::causal_attention;

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn fused_attention_matches_the_f32_reference() {
    let gpu = Device::new_cuda(0).expect("a CUDA device");
    let cpu = Device::Cpu;
    let mut worst = 0f32;
    for &dtype in &[DType::BF16, DType::F16] {
        for &d in &[64usize, 128] {
            for &(t, n) in &[
                (1, 1),
                (2, 2),
                (17, 17),
                (63, 63),
                (64, 64),
                (65, 65),
                (127, 127),
                (300, 300),
                (1000, 1000),
                (4096, 4096),
                (1, 4096),
                (1, 77),
                (5, 200),
                (100, 1500),
            ] {
                let (heads, kv_heads) = (8, 2);
                let q = Tensor::randn(0f32, 1.0, (1, heads, t, d), &cpu).unwrap();
                // Keys and values live in a cache-like buffer with spare capacity.
                let capacity = n + 24;
                let kbuf = Tensor::randn(0f32, 1.0, (1, kv_heads, capacity, d), &cpu).unwrap();
                let vbuf = Tensor::randn(0f32, 1.0, (1, kv_heads, capacity, d), &cpu).unwrap();
                // Round the inputs to the GPU dtype first so both sides see the same numbers.
                let round = |x: &Tensor| x.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
                let (q, kbuf, vbuf) = (round(&q), round(&kbuf), round(&vbuf));
                let reference = causal_attention(
                    &q,
                    &kbuf.narrow(2, 0, n).unwrap(),
                    &vbuf.narrow(2, 0, n).unwrap(),
                )
                .unwrap();

                let to_gpu = |x: &Tensor| x.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();
                let (kg, vg) = (to_gpu(&kbuf), to_gpu(&vbuf));
                let fused = causal_attention(
                    &to_gpu(&q),
                    &kg.narrow(2, 0, n).unwrap(),
                    &vg.narrow(2, 0, n).unwrap(),
                )
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_device(&cpu)
                .unwrap();
                assert_eq!(fused.dims(), reference.dims());
                let diff = max_abs_diff(&fused, &reference);
                worst = worst.max(diff);
                // P is rounded to the input dtype before P·V (as in FlashAttention): about 2^-8
                // relative for bf16 and 2^-11 for f16, on outputs of order 1.
                let tolerance = if dtype == DType::BF16 { 4e-2 } else { 1e-2 };
                assert!(
                    diff < tolerance,
                    "{dtype:?} d={d} t={t} n={n}: max abs diff {diff}"
                );
            }
        }
    }
    eprintln!("fused attention vs f32 reference: worst max abs diff {worst:e}");
}
