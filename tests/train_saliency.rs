//! Saliency labels: the differentiable kernels compute the same model, and π̂ = Σ_d ∂L/∂h ⊙ h
//! of a tiny synthetic model matches central finite differences of the loss.

mod common;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use sdtp::generate::{generate, SamplingConfig};
use sdtp::model::llama::Kernels;
use sdtp::prefill::{prefill_with_pruning, PrefillOptions};
use sdtp::prune::schedule::PruneSchedule;
use sdtp::prune::scorer::build_scorer;
use sdtp::train::saliency::{loss_with_delta, sequence_saliency, LossSpan};

fn ids(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 53 + 17) % 512).collect()
}

#[test]
fn differentiable_kernels_compute_the_same_model() {
    let tiny = common::load_tiny_model(5);
    let fast = &tiny.model;
    let slow = fast.clone().with_kernels(Kernels::Differentiable);
    assert_eq!(fast.kernels(), Kernels::Fast);
    assert_eq!(slow.kernels(), Kernels::Differentiable);
    let none = PruneSchedule::none();
    let prompt = ids(300); // crosses an attention query block
    let run = |model: &sdtp::model::llama::Llama| {
        let mut scorer = build_scorer(&none, model.config(), &Device::Cpu, 0).unwrap();
        let out = prefill_with_pruning(
            model,
            &prompt,
            &none,
            scorer.as_mut(),
            &PrefillOptions::default(),
        )
        .unwrap();
        let logits = out.last_logits.clone();
        let sampling = SamplingConfig {
            temperature: 0.0,
            top_p: None,
            top_k: None,
            seed: 0,
        };
        // Decode appends to a non-empty cache: the differentiable path rebuilds the keys
        // and values from the cached prefix and the new token.
        let decoded = generate(model, &prompt, out, &sampling, 4, &[], |_| Ok(())).unwrap();
        (logits, decoded.tokens)
    };
    let (fast_logits, fast_tokens) = run(fast);
    let (slow_logits, slow_tokens) = run(&slow);
    let diff = common::max_abs_diff(&fast_logits, &slow_logits);
    assert!(diff < 1e-4, "last logits differ by {diff}");
    assert_eq!(fast_tokens, slow_tokens);
}

#[test]
fn saliency_matches_finite_differences() {
    // The loss (every position) and the default of `sdtp saliency` (the last ones).
    check_saliency(LossSpan::All);
    check_saliency(LossSpan::Last(4));
}

fn check_saliency(span: LossSpan) {
    let tiny = common::load_tiny_model(7);
    let model = &tiny.model;
    let prompt = ids(12);
    let layers = [1usize, 3];
    let labels = sequence_saliency(model, &prompt, prompt.len(), span, &layers, 2).unwrap();
    let hidden = model.config().hidden_size;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut checked = 0;
    for stage in &labels.stages {
        let h = stage.hidden.to_vec2::<f32>().unwrap();
        let g = stage.grad.to_vec2::<f32>().unwrap();
        for token in [0usize, 4, 9] {
            // Row `token` of a (1, len, hidden) perturbation, everything else zero.
            let delta = |row: &[f32], scale: f32| -> Tensor {
                let mut values = vec![0f32; prompt.len() * hidden];
                for (d, v) in row.iter().enumerate() {
                    values[token * hidden + d] = v * scale;
                }
                Tensor::from_vec(values, (1, prompt.len(), hidden), &Device::Cpu).unwrap()
            };
            let central = |row: &[f32], eps: f32| -> f64 {
                let plus =
                    loss_with_delta(model, &prompt, span, stage.layer, &delta(row, eps)).unwrap();
                let minus =
                    loss_with_delta(model, &prompt, span, stage.layer, &delta(row, -eps)).unwrap();
                (plus as f64 - minus as f64) / (2.0 * eps as f64)
            };

            // π̂_t is the derivative of the loss along h_t itself: L(h_t · (1 + ε)).
            let fd = central(&h[token], 1e-2);
            let analytic = stage.saliency[token] as f64;
            assert!(
                (fd - analytic).abs() <= 1e-4 + 2e-2 * analytic.abs(),
                "{span:?} layer {} token {token}: saliency {analytic} vs finite difference {fd}",
                stage.layer
            );

            // ⟨∂L/∂h_t, v⟩ along a random unit direction v.
            let v: Vec<f32> = (0..hidden).map(|_| rng.random_range(-1.0..1.0)).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let v: Vec<f32> = v.iter().map(|x| x / norm).collect();
            let fd = central(&v, 1e-2);
            let analytic: f64 = g[token]
                .iter()
                .zip(&v)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            assert!(
                (fd - analytic).abs() <= 1e-4 + 2e-2 * analytic.abs(),
                "{span:?} layer {} token {token}: directional derivative {analytic} vs finite difference {fd}",
                stage.layer
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
    // The last token predicts nothing and no earlier token reads it: zero saliency.
    assert!(labels.stages.iter().all(|s| s.saliency[11] == 0.0));
    // Saliency is not trivially zero elsewhere.
    assert!(labels.stages[0].saliency.iter().any(|s| s.abs() > 1e-6));
    let zero = Tensor::zeros((1, 12, hidden), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        loss_with_delta(model, &prompt, span, 1, &zero).unwrap(),
        labels.loss
    );
}
