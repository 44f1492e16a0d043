//! The eval runners on real forwards: identical schedules agree completely (tiny synthetic
//! model and the real default model), teacher forcing equals one decode step per token, and
//! perplexity of an identical schedule equals the baseline's.

mod common;

use sdtp::eval::agreement::{run_agreement, AgreementConfig, TokenizedPrompt};
use sdtp::eval::forward::{prefill, teacher_forced_logits, TEACHER_FORCING_CHUNK};
use sdtp::eval::perplexity::{run_perplexity, PerplexityConfig};
use sdtp::eval::prompts::{parse_prompts, DEFAULT_PROMPTS_JSONL};
use sdtp::generate::decode_step;
use sdtp::model::load::LoadedModel;
use sdtp::prune::schedule::{PruneSchedule, ScorerKind};
use sdtp::report::Contender;

fn tiny_prompts(loaded: &LoadedModel) -> Vec<TokenizedPrompt> {
    [
        "Mr. Phileas Fogg lived, in 1872, at No. 7, Saville Row, Burlington Gardens.",
        "Passepartout, a true Parisian of Paris, had, since his arrival in London, tried many trades.",
        "The Mongolia was due at Suez on Wednesday, the 9th of October, at eleven o'clock in the morning.",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| TokenizedPrompt {
        id: format!("t{i}"),
        ids: loaded.codec.encode(t).unwrap(),
    })
    .collect()
}

fn keep09(loaded: &LoadedModel, scorer: ScorerKind) -> Contender {
    let layers = loaded.model.layers().len();
    let mut s = PruneSchedule::preset("keep09", layers).unwrap().schedule;
    s.scorer = Some(scorer);
    Contender::new(s, None)
}

#[test]
fn identical_schedules_agree_completely_on_tiny() {
    let loaded = common::load_tiny_model(3);
    let prompts = tiny_prompts(&loaded);
    let contenders = vec![
        Contender::new(PruneSchedule::none(), None),
        keep09(&loaded, ScorerKind::Random),
    ];
    let config = AgreementConfig {
        continuation_tokens: 6,
        top_k: 5,
        seed: 11,
        eos_token_ids: vec![],
    };
    let r = run_agreement(
        &loaded.model,
        &loaded.codec,
        &prompts,
        &contenders,
        &config,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(r.baseline.len(), 3);
    assert_eq!(r.rows.len(), 6);
    for row in r.rows.iter().filter(|r| r.mode == "none") {
        assert!(row.first_token_agree);
        assert_eq!(row.kl, 0.0);
        assert_eq!(row.top_k_overlap, 1.0);
        assert_eq!(row.continuation_match, Some(6));
        assert_eq!(row.continuation_identical, Some(true));
        assert_eq!(row.final_tokens, row.prompt_tokens);
    }
    let none = &r.summary[0];
    assert_eq!(none.mode, "none");
    assert_eq!(none.first_token_agreement, 1.0);
    assert_eq!(none.kl_mean, 0.0);
    assert_eq!(none.kl_p99, 0.0);
    assert_eq!(none.continuation_identical, Some(1.0));
    assert_eq!(none.flop_reduction, 0.0);
    let pruned = &r.summary[1];
    assert_eq!(pruned.mode, "keep09/random");
    assert!(pruned.flop_reduction > 0.0 && pruned.flop_reduction < 1.0);
    assert!(pruned.final_keep_mean < 1.0);
    assert!(pruned.kl_mean >= 0.0 && pruned.kl_mean.is_finite());

    // The same seed gives the same rows.
    let again = run_agreement(
        &loaded.model,
        &loaded.codec,
        &prompts,
        &contenders,
        &config,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(again, r);
}

#[test]
fn identical_schedules_agree_completely_on_the_real_model() {
    let loaded = common::load_real_model();
    // The two shortest prompts of the shipped set.
    let mut set = parse_prompts(DEFAULT_PROMPTS_JSONL, "shipped").unwrap();
    set.sort_by_key(|p| p.approx_tokens);
    let prompts: Vec<TokenizedPrompt> = set[..2]
        .iter()
        .map(|p| TokenizedPrompt {
            id: p.id.clone(),
            ids: loaded.codec.encode(&p.text).unwrap(),
        })
        .collect();
    assert!(prompts.iter().all(|p| p.ids.len() >= 256));
    let contenders = vec![
        Contender::new(PruneSchedule::none(), None),
        keep09(&loaded, ScorerKind::Attention),
    ];
    let config = AgreementConfig {
        continuation_tokens: 8,
        top_k: 5,
        seed: 0,
        eos_token_ids: loaded.eos_token_ids.clone(),
    };
    let r = run_agreement(
        &loaded.model,
        &loaded.codec,
        &prompts,
        &contenders,
        &config,
        &mut |_, _| {},
    )
    .unwrap();
    let none = &r.summary[0];
    assert_eq!(none.first_token_agreement, 1.0);
    assert_eq!(none.kl_mean, 0.0);
    assert_eq!(none.top_k_overlap_mean, 1.0);
    assert_eq!(none.continuation_identical, Some(1.0));
    assert_eq!(none.continuation_match_mean, Some(8.0));
    let pruned = &r.summary[1];
    assert!(pruned.kl_mean.is_finite() && pruned.kl_mean >= 0.0);
    assert!(pruned.flop_reduction > 0.3, "{}", pruned.flop_reduction);
    for b in &r.baseline {
        assert!(!b.continuation_text.is_empty());
    }
}

#[test]
fn teacher_forcing_equals_one_decode_step_per_token() {
    let loaded = common::load_tiny_model(5);
    let model = &loaded.model;
    let ids: Vec<u32> = (0..40u32).map(|i| (i * 37 + 11) % 500).collect();
    let fed: Vec<u32> = (0..TEACHER_FORCING_CHUNK as u32 + 7)
        .map(|i| (i * 53 + 7) % 500)
        .collect();
    let mut s = PruneSchedule::preset("keep07", model.layers().len())
        .unwrap()
        .schedule;
    s.scorer = Some(ScorerKind::Norm);
    // Two prefills rather than a cloned cache: clones share the buffers appends write into.
    let mut chunked_cache = prefill(model, &ids, &s, 0).unwrap().cache;
    let mut step_cache = prefill(model, &ids, &s, 0).unwrap().cache;
    let rows = teacher_forced_logits(model, &mut chunked_cache, &fed, ids.len()).unwrap();
    assert_eq!(rows.len(), fed.len());
    for (i, &token) in fed.iter().enumerate() {
        let step = decode_step(model, token, (ids.len() + i) as u32, &mut step_cache)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let diff = rows[i]
            .iter()
            .zip(&step)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "token {i}: {diff}");
    }
}

#[test]
fn perplexity_of_an_identical_schedule_is_the_baseline() {
    let loaded = common::load_tiny_model(9);
    let text = "It was the best of times, it was the worst of times. ".repeat(8);
    let ids = loaded.codec.encode(&text).unwrap();
    let contenders = vec![
        Contender::new(PruneSchedule::none(), None),
        keep09(&loaded, ScorerKind::Norm),
    ];
    let config = PerplexityConfig::new(100, 30, 10, 1);
    let r = run_perplexity(&loaded.model, &ids, &contenders, &config, &mut |_, _| {}).unwrap();
    let windows = ids.len() / 130;
    assert_eq!(r.rows.len(), windows * 3);
    let (base, none, pruned) = (&r.summary[0], &r.summary[1], &r.summary[2]);
    assert_eq!(base.mode, "baseline");
    assert_eq!(base.tokens_scored, windows * 30);
    assert_eq!(none.perplexity, base.perplexity);
    assert_eq!(none.kl_mean, 0.0);
    assert_eq!(none.same_top1, 1.0);
    assert_eq!(none.perplexity_ratio, 1.0);
    assert!(pruned.perplexity.is_finite() && pruned.perplexity > 1.0);
    // Random weights over 512 ids: perplexity well above 1, below the vocabulary.
    assert!(
        base.perplexity > 1.0 && base.perplexity < 2000.0,
        "{}",
        base.perplexity
    );
}
