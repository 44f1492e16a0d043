//! The fused CUDA attention against the blocked f32 path on the CPU, on random inputs over
//! lengths 1..=4096 (tile edges and non-multiples of the 64-key and 128-query tiles), prefill (t = n), decode
//! (t = 1) and chunk (t < n) shapes, GQA, head dims 64 and 128, bf16 and f16, and KV-cache
//! views whose head stride has spare capacity; and the fused attention-scorer saliency against
//! the blocked `tail_attention`. Runs only in a `--features cuda` build on a GPU.
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Tensor};
use sdtp::model::attention::{causal_attention, tail_attention};
use sdtp::model::flash::try_flash_attention;

/// The largest element: the scale tail scores (which span many decades) are compared at.
fn peak(t: &Tensor) -> f32 {
    t.flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

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
                (129, 129),
                (255, 255),
                (257, 257),
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
                let (qg, kg, vg) = (to_gpu(&q), to_gpu(&kbuf), to_gpu(&vbuf));
                let (kg, vg) = (kg.narrow(2, 0, n).unwrap(), vg.narrow(2, 0, n).unwrap());
                // What prefill runs (cuDNN where it applies and loads, else ours), and our
                // own kernel on its own.
                let dispatched = causal_attention(&qg, &kg, &vg).unwrap();
                let own = try_flash_attention(&qg, &kg, &vg)
                    .unwrap()
                    .expect("kernel applies");
                for (name, fused) in [("dispatched", dispatched), ("own kernel", own)] {
                    let fused = fused.to_dtype(DType::F32).unwrap().to_device(&cpu).unwrap();
                    assert_eq!(fused.dims(), reference.dims());
                    let diff = max_abs_diff(&fused, &reference);
                    worst = worst.max(diff);
                    // P is rounded to the input dtype before P·V (as in FlashAttention):
                    // about 2^-8 relative for bf16 and 2^-11 for f16, on outputs of order 1.
                    let tolerance = if dtype == DType::BF16 { 4e-2 } else { 1e-2 };
                    assert!(
                        diff < tolerance,
                        "{name}: {dtype:?} d={d} t={t} n={n}: max abs diff {diff}"
                    );
                }
            }
        }
    }
    eprintln!("fused attention vs f32 reference: worst max abs diff {worst:e}");
}

/// The fused attention-scorer saliency (log-sum-exp pass + column sums) against the blocked
/// f32 `tail_attention` on the CPU: same distribution over keys, to within bf16/f16 rounding
/// of the scores, for tails of one query, 10% of the rows and all rows.
#[test]
fn fused_tail_attention_matches_the_f32_reference() {
    let gpu = Device::new_cuda(0).expect("a CUDA device");
    let cpu = Device::Cpu;
    let mut worst = 0f32;
    for &dtype in &[DType::BF16, DType::F16] {
        for &d in &[64usize, 128] {
            for &(t, n) in &[
                (1usize, 1usize),
                (65, 65),
                (300, 300),
                (1000, 1000),
                (4096, 4096),
                (100, 1500),
            ] {
                for tail in [1, t.div_ceil(10), t] {
                    let (heads, kv_heads) = (8, 2);
                    let round =
                        |x: Tensor| x.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
                    let q = round(Tensor::randn(0f32, 1.0, (1, heads, t, d), &cpu).unwrap());
                    let capacity = n + 24;
                    let kbuf =
                        round(Tensor::randn(0f32, 1.0, (1, kv_heads, capacity, d), &cpu).unwrap());
                    let reference =
                        tail_attention(&q, &kbuf.narrow(2, 0, n).unwrap(), tail).unwrap();
                    let to_gpu = |x: &Tensor| x.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();
                    let fused =
                        tail_attention(&to_gpu(&q), &to_gpu(&kbuf).narrow(2, 0, n).unwrap(), tail)
                            .unwrap()
                            .to_device(&cpu)
                            .unwrap();
                    assert_eq!(fused.dims(), &[heads, n]);
                    assert_eq!(fused.dims(), reference.dims());
                    // Each head's row is a distribution over the keys.
                    for total in fused.sum(1).unwrap().to_vec1::<f32>().unwrap() {
                        assert!(
                            (total - 1.0).abs() < 1e-3,
                            "t={t} n={n} tail={tail}: a head sums to {total}"
                        );
                    }
                    // Relative to the largest score: the scores themselves span many decades.
                    let peak = peak(&reference);
                    let diff = max_abs_diff(&fused, &reference) / peak;
                    worst = worst.max(diff);
                    assert!(
                        diff < 2e-2,
                        "{dtype:?} d={d} t={t} n={n} tail={tail}: {diff}"
                    );
                }
            }
        }
    }
    eprintln!("fused tail attention vs f32 reference: worst max diff / peak {worst:e}");
}

/// The fused SwiGLU activation against an f32 reference from the same rounded inputs,
/// including sizes that leave a tail after the 16-byte vector loop: one rounding of the result
/// to the dtype, nothing more.
#[test]
fn fused_silu_mul_matches_an_f32_reference() {
    use sdtp::model::fused::silu_mul;
    use sdtp::model::llama::Kernels;
    let gpu = Device::new_cuda(0).expect("a CUDA device");
    let cpu = Device::Cpu;
    for &dtype in &[DType::BF16, DType::F16, DType::F32] {
        for &len in &[1usize, 7, 8, 1000, 11008 * 3 + 5] {
            let gate = Tensor::randn(0f32, 3.0, len, &gpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let up = Tensor::randn(0f32, 1.0, len, &gpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let fused = silu_mul(&gate, &up, Kernels::Fast).unwrap();
            let f32_cpu = |x: &Tensor| x.to_dtype(DType::F32).unwrap().to_device(&cpu).unwrap();
            let reference = silu_mul(&f32_cpu(&gate), &f32_cpu(&up), Kernels::Fast).unwrap();
            let err = (f32_cpu(&fused) - &reference).unwrap().abs().unwrap();
            let bound = (reference.abs().unwrap() + 1e-3).unwrap();
            let worst = (err / bound)
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let unit = match dtype {
                DType::BF16 => 2f32.powi(-8),
                DType::F16 => 2f32.powi(-11),
                _ => 4e-6,
            };
            assert!(
                worst <= 1.01 * unit,
                "{dtype:?} len={len}: relative error {worst}"
            );
        }
    }
}

/// What a prune stage runs on CUDA: attention plus the scorer's saliency in one call (through
/// cuDNN's row statistics where cuDNN loads), against the separate f32 CPU computations.
#[test]
fn attention_with_tail_scores_matches_the_f32_reference() {
    use sdtp::model::attention::causal_attention_and_tail;
    let gpu = Device::new_cuda(0).expect("a CUDA device");
    let cpu = Device::Cpu;
    for &(t, n) in &[(64usize, 64usize), (300, 300), (1000, 1000), (100, 1500)] {
        let (heads, kv_heads, d) = (8, 2, 128);
        let round = |x: Tensor| {
            x.to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
        };
        let q = round(Tensor::randn(0f32, 1.0, (1, heads, t, d), &cpu).unwrap());
        let k = round(Tensor::randn(0f32, 1.0, (1, kv_heads, n, d), &cpu).unwrap());
        let v = round(Tensor::randn(0f32, 1.0, (1, kv_heads, n, d), &cpu).unwrap());
        let tail = t.div_ceil(10);
        let want_out = causal_attention(&q, &k, &v).unwrap();
        let want_scores = tail_attention(&q, &k, tail).unwrap();
        let to_gpu = |x: &Tensor| x.to_dtype(DType::BF16).unwrap().to_device(&gpu).unwrap();
        let (out, scores) =
            causal_attention_and_tail(&to_gpu(&q), &to_gpu(&k), &to_gpu(&v), Some(tail)).unwrap();
        let out = out.to_dtype(DType::F32).unwrap().to_device(&cpu).unwrap();
        let scores = scores.expect("tail scores").to_device(&cpu).unwrap();
        assert!(max_abs_diff(&out, &want_out) < 4e-2, "t={t} n={n}: output");
        assert_eq!(scores.dims(), &[heads, n]);
        let peak = peak(&want_scores);
        let diff = max_abs_diff(&scores, &want_scores) / peak;
        assert!(diff < 2e-2, "t={t} n={n}: scores off by {diff} of the peak");
    }
}

/// The coalesced (1, t, heads, d) -> (1, heads, t, d) copy equals candle's transpose copy.
#[test]
fn heads_major_copy_equals_a_transpose() {
    use sdtp::model::fused::to_heads_major;
    let gpu = Device::new_cuda(0).expect("a CUDA device");
    for &dtype in &[DType::BF16, DType::F16] {
        for &(t, heads, d) in &[
            (1usize, 1usize, 8usize),
            (5, 3, 64),
            (1000, 8, 128),
            (77, 32, 128),
        ] {
            let x = Tensor::randn(0f32, 1.0, (1, t, heads, d), &gpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let fast = to_heads_major(&x).unwrap();
            let plain = x.transpose(1, 2).unwrap().contiguous().unwrap();
            assert_eq!(fast.dims(), plain.dims());
            let f32 = |x: Tensor| x.to_dtype(DType::F32).unwrap();
            assert_eq!(
                max_abs_diff(&f32(fast), &f32(plain)),
                0.0,
                "t={t} heads={heads} d={d}"
            );
        }
    }
}

/// The kept-row gather equals candle's index_select.
#[test]
fn row_gather_equals_index_select() {
    use sdtp::model::fused::gather_rows;
    let gpu = Device::new_cuda(0).expect("a CUDA device");
    for &dtype in &[DType::BF16, DType::F16] {
        let x = Tensor::randn(0f32, 1.0, (1, 300, 576), &gpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let kept: Vec<u32> = (0..300).filter(|i| i % 3 != 1).collect();
        let index = Tensor::new(kept.as_slice(), &gpu).unwrap();
        let fast = gather_rows(&x, &index).unwrap();
        let plain = x.index_select(&index, 1).unwrap();
        let f32 = |x: Tensor| x.to_dtype(DType::F32).unwrap();
        assert_eq!(fast.dims(), plain.dims());
        assert_eq!(max_abs_diff(&f32(fast), &f32(plain)), 0.0);
    }
}

/// The decode step's kernels with lengths on the device: the new entry written at `len` and
/// one query per head attending to the first len + 1 entries of buffers with spare capacity
/// (empty splits past the length), against the blocked f32 attention on the CPU; GQA groups
/// 1, 3 and 4, head dims 64 and 128, bf16, f16 and f32.
#[test]
fn decode_attention_matches_the_f32_reference() {
    use sdtp::model::decode_attention::{cache_write, decode_attention};
    let gpu = Device::new_cuda(0).expect("a CUDA device");
    let cpu = Device::Cpu;
    let mut worst = 0f32;
    for &dtype in &[DType::BF16, DType::F16, DType::F32] {
        for &d in &[64usize, 128] {
            for &(heads, kv_heads) in &[(4, 4), (9, 3), (32, 8)] {
                for &(len, spare) in &[
                    (1, 0),
                    (2, 5),
                    (63, 1),
                    (64, 0),
                    (65, 300),
                    (1000, 7),
                    (4097, 64),
                ] {
                    let capacity = len + 1 + spare;
                    let q = Tensor::randn(0f32, 1.0, (1, heads, 1, d), &cpu).unwrap();
                    let kbuf = Tensor::randn(0f32, 1.0, (1, kv_heads, capacity, d), &cpu).unwrap();
                    let vbuf = Tensor::randn(0f32, 1.0, (1, kv_heads, capacity, d), &cpu).unwrap();
                    let knew = Tensor::randn(0f32, 1.0, (1, kv_heads, 1, d), &cpu).unwrap();
                    let vnew = Tensor::randn(0f32, 1.0, (1, kv_heads, 1, d), &cpu).unwrap();
                    let round =
                        |x: &Tensor| x.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
                    let (q, kbuf, vbuf, knew, vnew) = (
                        round(&q),
                        round(&kbuf),
                        round(&vbuf),
                        round(&knew),
                        round(&vnew),
                    );
                    // Reference: the first len entries, then the new one, as the host path
                    // would have appended it.
                    let keys = Tensor::cat(&[&kbuf.narrow(2, 0, len).unwrap(), &knew], 2).unwrap();
                    let values =
                        Tensor::cat(&[&vbuf.narrow(2, 0, len).unwrap(), &vnew], 2).unwrap();
                    let reference = causal_attention(&q, &keys, &values).unwrap();

                    let to_gpu = |x: &Tensor| x.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();
                    let (qg, kg, vg) = (to_gpu(&q), to_gpu(&kbuf), to_gpu(&vbuf));
                    // [token, position, len of layer 0, len of layer 1]: layer 1's slot.
                    let inputs = Tensor::new(&[7u32, 99, 3, len as u32], &gpu).unwrap();
                    cache_write(&kg, &to_gpu(&knew), &inputs, 3).unwrap();
                    cache_write(&vg, &to_gpu(&vnew), &inputs, 3).unwrap();
                    // The write lands at entry len and nowhere else.
                    let written = kg.to_dtype(DType::F32).unwrap().to_device(&cpu).unwrap();
                    assert_eq!(
                        max_abs_diff(&written.narrow(2, len, 1).unwrap(), &knew),
                        0.0
                    );
                    assert_eq!(
                        max_abs_diff(
                            &written.narrow(2, 0, len).unwrap(),
                            &kbuf.narrow(2, 0, len).unwrap()
                        ),
                        0.0
                    );
                    let out = decode_attention(&qg, &kg, &vg, &inputs, 3).unwrap();
                    let out = out.to_dtype(DType::F32).unwrap().to_device(&cpu).unwrap();
                    assert_eq!(out.dims(), reference.dims());
                    let diff = max_abs_diff(&out, &reference);
                    worst = worst.max(diff);
                    // f32 accumulation throughout; only the output is rounded to the dtype.
                    let tolerance = match dtype {
                        DType::BF16 => 1e-2,
                        DType::F16 => 2e-3,
                        _ => 1e-5,
                    };
                    assert!(
                        diff < tolerance,
                        "{dtype:?} d={d} heads={heads}/{kv_heads} len={len} spare={spare}: max abs diff {diff}"
                    );
                }
            }
        }
    }
    eprintln!("decode attention vs f32 reference: worst max abs diff {worst:e}");
}

/// Decoding over a pruned cache with every length on the device (eagerly and replayed from a
/// CUDA graph) against the host-side step: teacher-forced on the same tokens, the logits of
/// each step agree, in f32 to rounding and in bf16 with the f32 host path as the reference.
#[test]
fn resident_decode_matches_the_host_step_over_a_pruned_cache() {
    use sdtp::generate::decode_step;
    use sdtp::model::load::{load_model, ModelSource};
    use sdtp::prefill::{prefill_with_pruning, PrefillOptions};
    use sdtp::prune::schedule::PruneSchedule;
    use sdtp::prune::scorer::build_scorer;
    use sdtp::resident_decode::{ResidentDecoder, StepOutput};

    let gpu = Device::new_cuda(0).expect("a CUDA device");
    let source = ModelSource::Synthetic("smollm2-135m".into());
    let ids: Vec<u32> = (0..700u32).map(|i| (i * 7919 + 13) % 49152).collect();
    let steps = 12;
    let prefill = |model: &sdtp::model::llama::Llama| {
        // The random scorer keeps the same tokens in every dtype.
        let mut schedule = PruneSchedule::preset("keep07", model.layers().len())
            .unwrap()
            .schedule;
        schedule.scorer = Some(sdtp::prune::schedule::ScorerKind::Random);
        let mut scorer = build_scorer(&schedule, model.config(), model.device(), 5).unwrap();
        prefill_with_pruning(
            model,
            &ids,
            &schedule,
            scorer.as_mut(),
            &PrefillOptions::default(),
        )
        .unwrap()
    };
    // The host path in f32: the tokens to force and the reference logits.
    let f32_model = load_model(&source, &gpu, DType::F32, 3).unwrap().model;
    let mut host = prefill(&f32_model);
    let lens = host.cache.layer_lens();
    assert!(
        lens.windows(2).any(|w| w[0] != w[1]),
        "the cache is pruned: {lens:?}"
    );
    let mut tokens = vec![host
        .last_logits
        .argmax(0)
        .unwrap()
        .to_scalar::<u32>()
        .unwrap()];
    let mut reference = Vec::new();
    for step in 0..steps {
        let logits = decode_step(
            &f32_model,
            tokens[step],
            (ids.len() + step) as u32,
            &mut host.cache,
        )
        .unwrap();
        tokens.push(logits.argmax(0).unwrap().to_scalar::<u32>().unwrap());
        reference.push(logits.to_device(&Device::Cpu).unwrap());
    }
    for (dtype, tolerance) in [(DType::F32, 1e-3f32), (DType::BF16, 0.25)] {
        for path in ["resident", "graph"] {
            std::env::set_var("SDTP_DECODE", path);
            let model = load_model(&source, &gpu, dtype, 3).unwrap().model;
            assert!(model.resident_decode_supported());
            let mut out = prefill(&model);
            assert_eq!(
                out.cache.layer_lens(),
                lens,
                "{dtype:?}: the same tokens are kept"
            );
            let mut decoder = ResidentDecoder::new(&model, &mut out.cache, steps, false)
                .unwrap()
                .expect("resident decode runs here");
            for step in 0..steps {
                let StepOutput::Logits(logits) = decoder
                    .step(
                        &model,
                        &mut out.cache,
                        tokens[step],
                        (ids.len() + step) as u32,
                    )
                    .unwrap()
                else {
                    panic!("sampling steps return logits")
                };
                let logits = logits.to_device(&Device::Cpu).unwrap();
                let diff = max_abs_diff(&logits, &reference[step]);
                let spread = reference[step]
                    .abs()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    diff <= tolerance * spread.max(1.0),
                    "{dtype:?} {path} step {step}: max abs diff {diff} (logits up to {spread})"
                );
            }
            assert_eq!(
                out.cache.layer_lens(),
                lens.iter().map(|l| l + steps).collect::<Vec<_>>()
            );
            eprintln!(
                "resident decode {dtype:?} {path}: {} steps within {tolerance}",
                steps
            );
        }
    }
    std::env::remove_var("SDTP_DECODE");
}
