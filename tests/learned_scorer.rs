//! The learned (SDTP MLP) scorer: loads a predictor file, checks it belongs to the model,
//! and computes hidden → hidden/4 → GELU → 1 exactly.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use sdtp::prefill::{prefill_with_pruning, PrefillOptions};
use sdtp::prune::schedule::{AttentionScoring, PruneSchedule, ScorerKind, Stage};
use sdtp::prune::score_ops::rank01;
use sdtp::prune::scorer::{
    build_scorer, model_fingerprint, ScoreInput, PREDICTOR_INPUTS_KEY, PREDICTOR_LAYERS_KEY,
    PREDICTOR_MODEL_KEY,
};

fn write_predictor(
    path: &std::path::Path,
    fingerprint: &str,
    layers: &[usize],
    hidden: usize,
) -> HashMap<String, Tensor> {
    write_predictor_reading(path, fingerprint, layers, hidden, None)
}

/// A random predictor file; with `heads`, one that reads the hidden state and the attention
/// features of that many heads (`sdtp.inputs = hidden+attention`).
fn write_predictor_reading(
    path: &std::path::Path,
    fingerprint: &str,
    layers: &[usize],
    hidden: usize,
    heads: Option<usize>,
) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let width = hidden + heads.map_or(0, |h| h + 1);
    let mut tensors = HashMap::new();
    for &l in layers {
        let p = format!("layers.{l}");
        tensors.insert(
            format!("{p}.fc1.weight"),
            Tensor::randn(0f32, 0.05, (hidden / 4, width), &dev).unwrap(),
        );
        tensors.insert(
            format!("{p}.fc1.bias"),
            Tensor::randn(0f32, 0.1, hidden / 4, &dev).unwrap(),
        );
        tensors.insert(
            format!("{p}.fc2.weight"),
            Tensor::randn(0f32, 0.3, (1, hidden / 4), &dev).unwrap(),
        );
        tensors.insert(
            format!("{p}.fc2.bias"),
            Tensor::zeros(1, DType::F32, &dev).unwrap(),
        );
    }
    let mut metadata = HashMap::from([
        (PREDICTOR_MODEL_KEY.to_string(), fingerprint.to_string()),
        (
            PREDICTOR_LAYERS_KEY.to_string(),
            layers
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]);
    if heads.is_some() {
        metadata.insert(
            PREDICTOR_INPUTS_KEY.to_string(),
            "hidden+attention".to_string(),
        );
    }
    let views: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    candle_core::safetensors::save(&views.into_iter().collect::<HashMap<_, _>>(), path).unwrap();
    // candle's save writes no metadata: rewrite with the safetensors crate to add it.
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let out = safetensors::serialize(st.tensors(), Some(metadata)).unwrap();
    std::fs::write(path, out).unwrap();
    tensors
}

/// exact GELU(x) = x/2 · (1 + erf(x/√2)), scalar reference.
fn gelu(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))) as f32
}

/// The error function by its Taylor series: exact to f32 for the |x| < 3 that the small
/// test weights give (larger |x| would cancel catastrophically).
fn erf(x: f64) -> f64 {
    let mut sum = x;
    let mut term = x;
    for n in 1..60 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    2.0 / std::f64::consts::PI.sqrt() * sum
}

/// The learned scorer at layers 1 and 3 of the tiny model, keeping half each time, with the
/// legacy attention settings (no pooling, sentences or carry: the scores are the MLP's own).
fn learned_schedule(name: &str, predictor: &std::path::Path) -> PruneSchedule {
    PruneSchedule {
        name: name.into(),
        stages: vec![
            Stage {
                layer: 1,
                keep_ratio: 0.5,
            },
            Stage {
                layer: 3,
                keep_ratio: 0.5,
            },
        ],
        min_head_tokens: 1,
        min_tail_ratio: 0.05,
        scorer: Some(ScorerKind::Learned),
        predictor: Some(predictor.to_path_buf()),
        attention: AttentionScoring::LEGACY,
    }
}

#[test]
fn learned_scores_equal_a_hand_computed_mlp_and_drive_pruning() {
    let tiny = common::load_tiny_model(9);
    let cfg = tiny.model.config().clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.safetensors");
    let w = write_predictor(&path, &model_fingerprint(&cfg), &[1, 3], cfg.hidden_size);
    // No pooling or carry: the scores are the MLP's own.
    let schedule = learned_schedule("learned-test", &path);
    let mut scorer = build_scorer(&schedule, &cfg, &Device::Cpu, 0).unwrap();
    // A hidden-only predictor asks for no attention.
    assert_eq!(scorer.tail_queries(7), None);
    let hidden = Tensor::randn(0f32, 1.0, (1, 7, cfg.hidden_size), &Device::Cpu).unwrap();
    let scores = scorer
        .score(&ScoreInput {
            layer: 3,
            hidden: &hidden,
            tail_attention: None,
            positions: None,
        })
        .unwrap();

    let rows = hidden.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
    let fc1 = w["layers.3.fc1.weight"].to_vec2::<f32>().unwrap();
    let b1 = w["layers.3.fc1.bias"].to_vec1::<f32>().unwrap();
    let fc2 = w["layers.3.fc2.weight"].to_vec2::<f32>().unwrap();
    for (row, score) in rows.iter().zip(&scores) {
        let inner: Vec<f32> = fc1
            .iter()
            .zip(&b1)
            .map(|(wr, b)| gelu(wr.iter().zip(row).map(|(a, x)| a * x).sum::<f32>() + b))
            .collect();
        let want: f32 = fc2[0].iter().zip(&inner).map(|(a, x)| a * x).sum();
        assert!((want - score).abs() < 1e-4, "{want} vs {score}");
    }

    let ids: Vec<u32> = (0..60).map(|i| (i * 31 + 5) % 512).collect();
    let out = prefill_with_pruning(
        &tiny.model,
        &ids,
        &schedule,
        scorer.as_mut(),
        &PrefillOptions::default(),
    )
    .unwrap();
    assert_eq!(out.kept.len(), 2);
    assert_eq!(out.stats[1].scores.as_ref().unwrap().scorer, "learned");
}

#[test]
fn a_question_aware_predictor_reads_each_heads_attention_as_a_multiple_of_uniform() {
    let tiny = common::load_tiny_model(9);
    let cfg = tiny.model.config().clone();
    let heads = cfg.num_attention_heads;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aware.safetensors");
    let w = write_predictor_reading(
        &path,
        &model_fingerprint(&cfg),
        &[1, 3],
        cfg.hidden_size,
        Some(heads),
    );
    let mut schedule = learned_schedule("aware-test", &path);
    schedule.attention.window = 4;
    let mut scorer = build_scorer(&schedule, &cfg, &Device::Cpu, 0).unwrap();
    assert_eq!(scorer.tail_queries(7), Some(4));
    let n = 7;
    let hidden = Tensor::randn(0f32, 1.0, (1, n, cfg.hidden_size), &Device::Cpu).unwrap();
    // Each head's attention over the 7 tokens, one value tiny enough to hit the floor.
    let mut att: Vec<Vec<f32>> = (0..heads)
        .map(|h| (0..n).map(|t| ((h * 3 + t * 5) % 11 + 1) as f32).collect())
        .collect();
    att[0][2] = 1e-9;
    let att: Vec<Vec<f32>> = att
        .into_iter()
        .map(|row| {
            let sum: f32 = row.iter().sum();
            row.iter().map(|v| v / sum).collect()
        })
        .collect();
    let tail = Tensor::new(att.clone(), &Device::Cpu).unwrap();
    let scores = scorer
        .score(&ScoreInput {
            layer: 1,
            hidden: &hidden,
            tail_attention: Some(&tail),
            positions: None,
        })
        .unwrap();
    let rows = hidden.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
    let fc1 = w["layers.1.fc1.weight"].to_vec2::<f32>().unwrap();
    let b1 = w["layers.1.fc1.bias"].to_vec1::<f32>().unwrap();
    let fc2 = w["layers.1.fc2.weight"].to_vec2::<f32>().unwrap();
    for (t, (row, score)) in rows.iter().zip(&scores).enumerate() {
        let mut x = row.clone();
        let features: Vec<f32> = (0..heads)
            .map(|h| (att[h][t] * n as f32).max(1e-3).ln())
            .collect();
        let best = features.iter().cloned().fold(f32::MIN, f32::max);
        x.extend(features);
        x.push(best);
        let inner: Vec<f32> = fc1
            .iter()
            .zip(&b1)
            .map(|(wr, b)| gelu(wr.iter().zip(&x).map(|(a, v)| a * v).sum::<f32>() + b))
            .collect();
        let want: f32 = fc2[0].iter().zip(&inner).map(|(a, v)| a * v).sum();
        assert!((want - score).abs() < 1e-4, "token {t}: {want} vs {score}");
    }
    // Without the layer's attention, or with another model's head count, it refuses.
    let no_attention = scorer.score(&ScoreInput {
        layer: 1,
        hidden: &hidden,
        tail_attention: None,
        positions: None,
    });
    assert!(no_attention.is_err());
    let wrong = Tensor::ones((heads + 1, n), DType::F32, &Device::Cpu).unwrap();
    let wrong_heads = scorer.score(&ScoreInput {
        layer: 1,
        hidden: &hidden,
        tail_attention: Some(&wrong),
        positions: None,
    });
    assert!(wrong_heads.unwrap_err().to_string().contains("heads"));

    // With `union`, a token ranks at the better of its learned and attention ranks.
    let mut union = schedule.clone();
    union.attention.union = true;
    let mut both = build_scorer(&union, &cfg, &Device::Cpu, 0).unwrap();
    let joint = both
        .score(&ScoreInput {
            layer: 1,
            hidden: &hidden,
            tail_attention: Some(&tail),
            positions: None,
        })
        .unwrap();
    // The legacy read: mean over heads.
    let mean: Vec<f32> = (0..n)
        .map(|t| (0..heads).map(|h| att[h][t]).sum::<f32>() / heads as f32)
        .collect();
    let want: Vec<f32> = rank01(&scores)
        .into_iter()
        .zip(rank01(&mean))
        .map(|(a, b)| a.max(b))
        .collect();
    for (w, g) in want.iter().zip(&joint) {
        assert!((w - g).abs() < 1e-6, "{want:?} vs {joint:?}");
    }

    // It drives a pruned prefill: the layers hand it their tail attention.
    let ids: Vec<u32> = (0..60).map(|i| (i * 31 + 5) % 512).collect();
    let out = prefill_with_pruning(
        &tiny.model,
        &ids,
        &schedule,
        scorer.as_mut(),
        &PrefillOptions::default(),
    )
    .unwrap();
    assert_eq!(out.kept.len(), 2);
}

#[test]
fn a_predictor_missing_a_schedule_layer_is_refused() {
    let tiny = common::load_tiny_model(9);
    let cfg = tiny.model.config().clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.safetensors");
    write_predictor(&path, &model_fingerprint(&cfg), &[1], cfg.hidden_size);
    let schedule = PruneSchedule {
        name: "needs-layer-2".into(),
        stages: vec![Stage {
            layer: 2,
            keep_ratio: 0.5,
        }],
        min_head_tokens: 1,
        min_tail_ratio: 0.05,
        scorer: Some(ScorerKind::Learned),
        predictor: Some(path),
        attention: Default::default(),
    };
    let err = build_scorer(&schedule, &cfg, &Device::Cpu, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no stage for layer 2"), "{err}");
}
