//! The passkey prompt builder with the real SmolLM2 tokenizer: prompts fit the asked length,
//! the key sits at the asked depth (as a fraction of token positions), the chat template
//! keeps it, and the key's digits survive tokenization.

mod common;

use sdtp::eval::passkey::{build_passkey_prompt, key_sentence, PREFIX, SUFFIX};
use sdtp::model::text::apply_chat_template;

#[test]
fn key_sits_at_the_asked_depth_with_the_real_tokenizer() {
    let loaded = common::load_real_model();
    let encode = |t: &str| loaded.codec.encode(t);
    let raw = |t: &str| Ok(t.to_string());
    for length in [512, 1024, 4096] {
        for depth in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let p = build_passkey_prompt("31415", length, depth, &encode, &raw).unwrap();
            assert!(p.ids.len() <= length, "{length}: {}", p.ids.len());
            // Filled to within one filler unit (≈ 22 tokens).
            assert!(p.ids.len() + 30 > length, "{length}: {}", p.ids.len());
            let found = p.depth();
            // Within one filler unit (≈ 22 tokens) of the asked depth, except at the ends:
            // before it the instructions (≈ 30 tokens), after it the key sentence, the last
            // filler unit and the question (≈ 60).
            let slack = match depth {
                0.0 => 32.0 / length as f64,
                1.0 => 64.0 / length as f64,
                _ => 24.0 / length as f64,
            };
            assert!(
                (found - depth).abs() <= slack,
                "length {length} depth {depth}: key at {} of {} = {found}",
                p.key_position,
                p.ids.len()
            );
            // The tokens at key_position spell the key sentence.
            let tail = loaded.codec.decode(&p.ids[p.key_position..]).unwrap();
            assert!(
                tail.trim_start().starts_with("The pass key is 31415."),
                "{tail:.60}"
            );
            assert!(p.text.starts_with(PREFIX) && p.text.ends_with(SUFFIX));
            if depth == 0.0 {
                assert_eq!(p.key_unit, 0);
            }
            if depth == 1.0 {
                assert_eq!(p.key_unit, p.filler_units - 1);
            }
        }
    }
}

#[test]
fn chat_template_keeps_the_key_and_digits_are_single_tokens() {
    let loaded = common::load_real_model();
    let template = loaded
        .chat_template
        .clone()
        .expect("SmolLM2 has a chat template");
    let encode = |t: &str| loaded.codec.encode(t);
    let chat = |t: &str| apply_chat_template(&template, t, &loaded.bos_token, &loaded.eos_token);
    let p = build_passkey_prompt("27182", 1024, 0.5, &encode, &chat).unwrap();
    assert!(p.text.starts_with("<|im_start|>"));
    assert!(p.text.contains(&key_sentence("27182")));
    assert!((p.depth() - 0.5).abs() < 0.03, "{}", p.depth());
    // SmolLM2 splits numbers into digits: the five digits are five tokens.
    let digits = loaded.codec.encode("27182").unwrap();
    assert_eq!(digits.len(), 5);
}
