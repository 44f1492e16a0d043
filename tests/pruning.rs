//! The pruned prefill: equivalences with the plain forward, the decode contract from a
//! pruned cache, the ancestor's failure as a regression test, and a tensor-level property
//! test over lengths and harsh schedules.

mod common;

use candle_core::Tensor;
use proptest::prelude::*;
use sdtp::generate::{decode_step, generate, SamplingConfig};
use sdtp::model::cache::LayerCache;
use sdtp::model::llama::Llama;
use sdtp::prefill::{prefill_with_pruning, PrefillOptions, PrefillOutput, StageKept};
use sdtp::prune::schedule::{AttentionScoring, HeadReduce, PruneSchedule, ScorerKind, Stage};
use sdtp::prune::scorer::{build_scorer, NormScorer, Scorer};

fn schedule(stages: &[(usize, f64)], head: usize, tail: f64, scorer: ScorerKind) -> PruneSchedule {
    PruneSchedule {
        name: "test".into(),
        stages: stages
            .iter()
            .map(|&(layer, keep_ratio)| Stage { layer, keep_ratio })
            .collect(),
        min_head_tokens: head,
        min_tail_ratio: tail,
        scorer: Some(scorer),
        predictor: None,
        attention: Default::default(),
    }
}

fn prefill(model: &Llama, ids: &[u32], s: &PruneSchedule, seed: u64) -> PrefillOutput {
    let mut scorer = build_scorer(s, model.config(), model.device(), seed).unwrap();
    prefill_with_pruning(model, ids, s, scorer.as_mut(), &PrefillOptions::default()).unwrap()
}

/// The textbook forward: every layer on every token, fresh caches, no pruning machinery.
fn plain_forward(model: &Llama, ids: &[u32]) -> Tensor {
    let mut hidden = model.embed(ids).unwrap();
    let positions = model.positions((0..ids.len() as u32).collect()).unwrap();
    for layer in model.layers() {
        let mut cache = LayerCache::default();
        hidden = layer
            .forward(&hidden, &positions, model.rope(), &mut cache, None)
            .unwrap()
            .hidden;
    }
    model.last_logits(&hidden).unwrap()
}

/// The slow way: the whole sequence (prompt + generated) from scratch, dropping at each stage
/// exactly the prompt tokens the pruned prefill dropped; generated tokens are never dropped.
fn slow_reference(
    model: &Llama,
    ids: &[u32],
    prompt_len: usize,
    kept_stages: &[StageKept],
) -> Tensor {
    let mut hidden = model.embed(ids).unwrap();
    let mut kept: Vec<u32> = (0..ids.len() as u32).collect();
    let mut stages = kept_stages.iter().peekable();
    for (index, layer) in model.layers().iter().enumerate() {
        let positions = model.positions(kept.clone()).unwrap();
        let mut cache = LayerCache::default();
        hidden = layer
            .forward(&hidden, &positions, model.rope(), &mut cache, None)
            .unwrap()
            .hidden;
        if let Some(stage) = stages.next_if(|s| s.layer == index) {
            let rows: Vec<u32> = kept
                .iter()
                .enumerate()
                .filter(|(_, p)| **p as usize >= prompt_len || stage.positions.contains(p))
                .map(|(row, _)| row as u32)
                .collect();
            kept = rows.iter().map(|&r| kept[r as usize]).collect();
            let rows = Tensor::new(rows.as_slice(), hidden.device()).unwrap();
            hidden = hidden.index_select(&rows, 1).unwrap();
        }
    }
    model.last_logits(&hidden).unwrap()
}

/// Decodes `steps` greedy tokens from `out` and checks each step's logits against the slow
/// reference. Returns the largest difference.
fn decode_matches_slow_reference(
    model: &Llama,
    prompt: &[u32],
    out: PrefillOutput,
    steps: usize,
) -> f32 {
    let PrefillOutput {
        last_logits,
        mut cache,
        kept,
        prompt_len,
        ..
    } = out;
    let mut ids = prompt.to_vec();
    let mut logits = last_logits;
    let mut worst = 0f32;
    for _ in 0..steps {
        let next = common::argmax(&logits);
        ids.push(next);
        logits = decode_step(model, next, (ids.len() - 1) as u32, &mut cache).unwrap();
        let reference = slow_reference(model, &ids, prompt_len, &kept);
        worst = worst.max(common::max_abs_diff(&logits, &reference));
    }
    worst
}

fn tiled_ids(len: usize, vocab: u32) -> Vec<u32> {
    (0..len as u32).map(|i| (i * 7919 + 13) % vocab).collect()
}

#[test]
fn schedule_none_equals_the_plain_forward_bit_for_bit() {
    let tiny = common::load_tiny_model(1);
    let ids = tiled_ids(77, 512);
    let out = prefill(&tiny.model, &ids, &PruneSchedule::none(), 0);
    let plain = plain_forward(&tiny.model, &ids);
    assert_eq!(
        out.last_logits.to_vec1::<f32>().unwrap(),
        plain.to_vec1::<f32>().unwrap()
    );
    assert_eq!(out.cache.layer_lens(), vec![77; 6]);
}

#[test]
fn keep_ratio_one_everywhere_equals_the_plain_forward_bit_for_bit() {
    let tiny = common::load_tiny_model(2);
    let ids = tiled_ids(150, 512);
    for kind in [ScorerKind::Attention, ScorerKind::Norm, ScorerKind::Random] {
        let s = schedule(&[(0, 1.0), (1, 1.0), (3, 1.0), (5, 1.0)], 4, 0.1, kind);
        let out = prefill(&tiny.model, &ids, &s, 0);
        let plain = plain_forward(&tiny.model, &ids);
        assert_eq!(
            out.last_logits.to_vec1::<f32>().unwrap(),
            plain.to_vec1::<f32>().unwrap(),
            "{kind}"
        );
    }
}

#[test]
fn pruned_prefill_then_decode_equals_the_slow_reference_on_a_tiny_model() {
    let tiny = common::load_tiny_model(3);
    let ids = tiled_ids(120, 512);
    let s = schedule(
        &[(1, 0.5), (2, 0.7), (4, 0.3)],
        2,
        0.05,
        ScorerKind::Attention,
    );
    let out = prefill(&tiny.model, &ids, &s, 0);
    assert_eq!(out.cache.layer_lens()[0], 120);
    assert!(out.final_len() < 40);
    let worst = decode_matches_slow_reference(&tiny.model, &ids, out, 6);
    assert!(worst <= 1e-4, "max diff {worst}");
}

#[test]
fn pruned_prefill_then_decode_equals_the_slow_reference_on_smollm2() {
    let real = common::load_real_model();
    let ids = real
        .codec
        .encode(&"The river rose in the hills and ran down through the old town, past the mill and the church, to the sea. ".repeat(8))
        .unwrap();
    let s = PruneSchedule::preset("keep07", 30).unwrap().schedule;
    let out = prefill(&real.model, &ids, &s, 0);
    // Each layer's cache holds exactly the tokens that layer saw.
    let lens = out.cache.layer_lens();
    for stat in &out.stats {
        assert_eq!(lens[stat.layer], stat.tokens_in);
    }
    let worst = decode_matches_slow_reference(&real.model, &ids, out, 4);
    assert!(worst <= 1e-4, "max diff {worst}");
}

/// The Python ancestor died here: "The size of tensor a (0) must match the size of tensor b
/// (1024) at non-singleton dimension 2".
#[test]
fn ancestor_failure_at_1024_tokens_is_impossible() {
    let real = common::load_real_model();
    let text = include_str!("fixtures/smollm2_reference.json");
    let fixture: serde_json::Value = serde_json::from_str(text).unwrap();
    let base: Vec<u32> = fixture["prompts"][3]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let ids: Vec<u32> = base.iter().copied().cycle().take(1024).collect();
    let twelve_halvings: Vec<(usize, f64)> = (0..12).map(|i| (2 + 2 * i, 0.5)).collect();
    for s in [
        PruneSchedule::preset("keep07", 30).unwrap().schedule,
        schedule(&twelve_halvings, 4, 0.1, ScorerKind::Attention),
    ] {
        let out = prefill(&real.model, &ids, &s, 0);
        assert_eq!(out.prompt_len, 1024);
        assert!(out.final_len() >= 1 && out.final_len() < 1024);
        let positions = &out.kept.last().unwrap().positions;
        assert_eq!(*positions.last().unwrap(), 1023, "last token kept");
        let decoded = generate(
            &real.model,
            &ids,
            out,
            &SamplingConfig::default(),
            8,
            &[],
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(decoded.tokens.len(), 8, "{}", s.name);
    }
}

#[test]
fn decode_continues_from_the_original_prompt_length() {
    // If decode used the pruned length as its position, the result would differ from the
    // slow reference, which places generated tokens after the whole prompt.
    let tiny = common::load_tiny_model(4);
    let ids = tiled_ids(64, 512);
    let s = schedule(&[(0, 0.25)], 0, 0.0, ScorerKind::Norm);
    let out = prefill(&tiny.model, &ids, &s, 0);
    assert!(out.final_len() <= 17);
    assert!(decode_matches_slow_reference(&tiny.model, &ids, out, 3) <= 1e-4);
}

#[test]
fn prefill_then_decode_equals_a_full_recompute() {
    let real = common::load_real_model();
    let mut ids = real
        .codec
        .encode("Bread is made from flour, water, salt and yeast. The dough")
        .unwrap();
    let out = prefill(&real.model, &ids, &PruneSchedule::none(), 0);
    let mut logits = out.last_logits.clone();
    let mut cache = out.cache;
    for _ in 0..6 {
        let next = common::argmax(&logits);
        ids.push(next);
        logits = decode_step(&real.model, next, (ids.len() - 1) as u32, &mut cache).unwrap();
        let full = plain_forward(&real.model, &ids);
        let diff = common::max_abs_diff(&logits, &full);
        assert!(diff <= 1e-4, "step {}: {diff}", ids.len());
    }
}

fn harsh_schedule() -> impl Strategy<Value = PruneSchedule> {
    (
        proptest::sample::subsequence((0..6usize).collect::<Vec<_>>(), 1..=6),
        proptest::collection::vec(0.01f64..=1.0, 6),
        0usize..=8,
        prop_oneof![Just(0.0), 0.0f64..=1.0],
        prop_oneof![
            Just(ScorerKind::Attention),
            Just(ScorerKind::Norm),
            Just(ScorerKind::Random)
        ],
        // Every [attention] setting: window (0 = the tail), head reduction, pool, carry.
        (
            0usize..=64,
            prop_oneof![Just(HeadReduce::Max), Just(HeadReduce::Mean)],
            (0usize..=5).prop_map(|k| 2 * k + 1),
            prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0],
            any::<bool>(),
        ),
    )
        .prop_map(
            |(layers, ratios, head, tail, kind, (window, heads, pool, carry, sentences))| {
                let stages: Vec<(usize, f64)> =
                    layers.iter().zip(ratios).map(|(&l, r)| (l, r)).collect();
                PruneSchedule {
                    attention: AttentionScoring {
                        window,
                        heads,
                        pool,
                        carry,
                        sentences,
                        relative: 0,
                        relative_depth: 1.0,
                        question_overlap: false,
                        union: false,
                    },
                    ..schedule(&stages, head, tail, kind)
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any length 1..=300 with any harsh schedule: never empty, never a mismatch, the last
    /// token always kept, positions strictly increasing, decode works from the result.
    #[test]
    fn any_length_any_schedule_keeps_the_invariants(len in 1usize..=300, s in harsh_schedule(), seed in 0u64..1000) {
        let tiny = common::load_tiny_model(5);
        let ids = tiled_ids(len, 512);
        let mut scorer: Box<dyn Scorer> = build_scorer(&s, tiny.model.config(), tiny.model.device(), seed).unwrap();
        let out = prefill_with_pruning(&tiny.model, &ids, &s, scorer.as_mut(), &PrefillOptions::default()).unwrap();
        let mut previous_len = len;
        for stage in &out.kept {
            prop_assert!(!stage.positions.is_empty());
            prop_assert!(stage.positions.windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(*stage.positions.last().unwrap() as usize, len - 1);
            prop_assert!(stage.positions.len() <= previous_len);
            previous_len = stage.positions.len();
        }
        let lens = out.cache.layer_lens();
        for stat in &out.stats {
            prop_assert_eq!(lens[stat.layer], stat.tokens_in);
            prop_assert!(stat.tokens_out >= 1);
        }
        let decoded = generate(&tiny.model, &ids, out, &SamplingConfig::default(), 2, &[], |_| Ok(())).unwrap();
        prop_assert_eq!(decoded.tokens.len(), 2);
    }
}

#[test]
fn scorers_return_one_finite_score_per_token() {
    let tiny = common::load_tiny_model(6);
    let ids = tiled_ids(40, 512);
    let hidden = tiny.model.embed(&ids).unwrap();
    let scores = NormScorer
        .score(&sdtp::prune::scorer::ScoreInput {
            layer: 0,
            hidden: &hidden,
            tail_attention: None,
            positions: None,
        })
        .unwrap();
    assert_eq!(scores.len(), 40);
    assert!(scores.iter().all(|s| s.is_finite() && *s > 0.0));
    // The default attention scorer asks the layer for its window of 32 queries (all 20 of a
    // shorter prompt); the legacy one for the last ceil(0.1 · 40) = 4.
    let s = schedule(&[(0, 0.5)], 0, 0.1, ScorerKind::Attention);
    let attention: Box<dyn Scorer> =
        build_scorer(&s, tiny.model.config(), tiny.model.device(), 0).unwrap();
    assert_eq!(attention.tail_queries(40), Some(32));
    assert_eq!(attention.tail_queries(20), Some(20));
    let legacy = PruneSchedule {
        attention: AttentionScoring::LEGACY,
        ..s
    };
    let legacy: Box<dyn Scorer> =
        build_scorer(&legacy, tiny.model.config(), tiny.model.device(), 0).unwrap();
    assert_eq!(legacy.tail_queries(40), Some(4));
    assert_eq!(NormScorer.tail_queries(40), None);
}
