//! The unpruned forward on the real SmolLM2 GGUF against an independent numpy
//! implementation (scripts/make_reference.py, llama.cpp's RoPE convention on the stored
//! weights, the `gguf` package's dequantiser). Fixture: tests/fixtures/smollm2_reference.json.

mod common;

use sdtp::generate::{generate, SamplingConfig};
use sdtp::prefill::{prefill_with_pruning, PrefillOptions};
use sdtp::prune::schedule::PruneSchedule;
use sdtp::prune::scorer::NormScorer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    prompts: Vec<Prompt>,
}

#[derive(Deserialize)]
struct Prompt {
    text: String,
    ids: Vec<u32>,
    last_logits_top20: Top,
    argmax: u32,
    greedy_next_8: Vec<u32>,
    greedy_margins: Vec<f32>,
}

#[derive(Deserialize)]
struct Top {
    ids: Vec<u32>,
    values: Vec<f32>,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/smollm2_reference.json");
    serde_json::from_str(text).expect("fixture parses")
}

#[test]
fn last_logits_match_the_numpy_reference() {
    let loaded = common::load_real_model();
    let model = &loaded.model;
    let mut worst = 0f32;
    for prompt in fixture().prompts {
        assert!((5..=310).contains(&prompt.ids.len()));
        let out = prefill_with_pruning(
            model,
            &prompt.ids,
            &PruneSchedule::none(),
            &mut NormScorer,
            &PrefillOptions::default(),
        )
        .unwrap();
        let logits = out.last_logits.to_vec1::<f32>().unwrap();
        for (&id, &want) in prompt
            .last_logits_top20
            .ids
            .iter()
            .zip(&prompt.last_logits_top20.values)
        {
            let diff = (logits[id as usize] - want).abs();
            worst = worst.max(diff);
            assert!(
                diff <= 1e-3,
                "{:?}: logit of {id} is {} vs {want}",
                prompt.text,
                logits[id as usize]
            );
        }
        assert_eq!(
            common::argmax(&out.last_logits),
            prompt.argmax,
            "{:?}",
            prompt.text
        );
    }
    eprintln!("max abs diff of top-20 logits vs numpy: {worst:e}");
}

#[test]
fn greedy_continuation_matches_the_reference_where_margins_are_clear() {
    let loaded = common::load_real_model();
    let model = &loaded.model;
    for prompt in fixture().prompts {
        let out = prefill_with_pruning(
            model,
            &prompt.ids,
            &PruneSchedule::none(),
            &mut NormScorer,
            &PrefillOptions::default(),
        )
        .unwrap();
        let decoded = generate(
            model,
            &prompt.ids,
            out,
            &SamplingConfig::default(),
            8,
            &[],
            |_| Ok(()),
        )
        .unwrap();
        // Compare up to the first step whose top-2 margin is too thin for f32 vs numpy to
        // be sure of the order; every earlier token must agree exactly.
        let sure = prompt
            .greedy_margins
            .iter()
            .take_while(|m| **m > 0.05)
            .count();
        assert!(
            sure >= 5,
            "fixture margins too thin to test {:?}",
            prompt.text
        );
        assert_eq!(
            decoded.tokens[..sure],
            prompt.greedy_next_8[..sure],
            "{:?}",
            prompt.text
        );
    }
}

#[test]
fn greedy_continuation_of_the_capital_of_france_names_paris() {
    let loaded = common::load_real_model();
    let ids = loaded.codec.encode("The capital of France is").unwrap();
    assert_eq!(ids, [504, 3575, 282, 4649, 314]);
    let out = prefill_with_pruning(
        &loaded.model,
        &ids,
        &PruneSchedule::none(),
        &mut NormScorer,
        &PrefillOptions::default(),
    )
    .unwrap();
    let decoded = generate(
        &loaded.model,
        &ids,
        out,
        &SamplingConfig::default(),
        4,
        &[],
        |_| Ok(()),
    )
    .unwrap();
    let text = loaded.codec.decode(&decoded.tokens).unwrap();
    assert!(text.contains("Paris"), "{text:?}");
}
