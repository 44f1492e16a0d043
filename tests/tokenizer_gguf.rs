//! The tokenizer rebuilt from GGUF metadata, checked on the real SmolLM2-135M-Instruct checkpoint
//! (`$SDTP_MODEL`, default `~/.cache/sdtp/models/SmolLM2-135M-Instruct.Q4_1.gguf`).
//!
//! These tests fail, not skip, when the model is missing: they are the only check that the
//! rebuilt tokenizer gives the ids the model was trained on.

use std::path::PathBuf;

use candle_core::quantized::gguf_file;
use sdtp::model::tokenizer::{tokenizer_from_gguf, GgufTokenizer};
use tokenizers::Tokenizer;

const CHATML: &str = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";

fn model_path() -> PathBuf {
    if let Some(path) = std::env::var_os("SDTP_MODEL") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set and neither is SDTP_MODEL");
    PathBuf::from(home).join(".cache/sdtp/models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn load() -> GgufTokenizer {
    let path = model_path();
    let mut file = std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!(
            "test model {} cannot be opened ({e}); put SmolLM2-135M-Instruct.Q4_1.gguf there \
             or point SDTP_MODEL at it",
            path.display()
        )
    });
    let content = gguf_file::Content::read(&mut file)
        .unwrap_or_else(|e| panic!("{} is not a readable GGUF: {e}", path.display()));
    tokenizer_from_gguf(&content).unwrap_or_else(|e| panic!("tokenizer_from_gguf failed: {e:#}"))
}

fn encode(t: &Tokenizer, text: &str, add_special_tokens: bool) -> Vec<u32> {
    t.encode(text, add_special_tokens)
        .unwrap_or_else(|e| panic!("encode {text:?}: {e}"))
        .get_ids()
        .to_vec()
}

fn decode(t: &Tokenizer, ids: &[u32], skip_special_tokens: bool) -> String {
    t.decode(ids, skip_special_tokens)
        .unwrap_or_else(|e| panic!("decode {ids:?}: {e}"))
}

fn id_of(t: &Tokenizer, token: &str) -> u32 {
    t.token_to_id(token)
        .unwrap_or_else(|| panic!("{token:?} is not in the vocabulary"))
}

fn assert_round_trip(t: &Tokenizer, text: &str) -> Vec<u32> {
    let ids = encode(t, text, false);
    assert!(!ids.is_empty(), "{text:?} encoded to nothing");
    assert_eq!(
        decode(t, &ids, false),
        text,
        "round trip of {text:?} via {ids:?}"
    );
    ids
}

#[test]
fn known_sentence_gives_reference_ids() {
    let t = load().tokenizer;
    let text = "The capital of France is";
    assert_eq!(encode(&t, text, false), [504, 3575, 282, 4649, 314]);
    // SmolLM2's GGUF says add_bos_token = false: adding special tokens adds nothing.
    assert_eq!(encode(&t, text, true), [504, 3575, 282, 4649, 314]);
}

#[test]
fn ascii_round_trips_and_digits_split_one_by_one() {
    let t = load().tokenizer;
    assert_round_trip(
        &t,
        "Hello, world! It's 2024: 3.14159 * 42 = 131.95; (a+b)^2 >= 0?\n\n\
         Tabs\tand   multiple    spaces.\n  indented line\r\ntrailing spaces   \n",
    );
    // tokenizer.ggml.pre = "smollm": every digit is its own word, as in SmolLM2's tokenizer.json.
    let ids = encode(&t, "2024", false);
    let pieces: Vec<String> = ids.iter().map(|&id| decode(&t, &[id], false)).collect();
    assert_eq!(pieces, ["2", "0", "2", "4"]);
}

#[test]
fn utf8_round_trips() {
    let t = load().tokenizer;
    assert_round_trip(&t, "Café, naïve, über, Größe — ça marche.");
    assert_round_trip(&t, "中文测试：你好，世界！");
    assert_round_trip(&t, "Launch 🚀 now 👩‍💻 ✓ ∑ x²");
}

#[test]
fn chatml_control_tokens_are_single_ids_and_round_trip() {
    let t = load().tokenizer;
    let im_start = id_of(&t, "<|im_start|>");
    let im_end = id_of(&t, "<|im_end|>");
    println!("<|im_start|> = {im_start}, <|im_end|> = {im_end}");

    assert_eq!(encode(&t, "<|im_start|>", false), [im_start]);
    assert_eq!(encode(&t, "<|im_end|>", false), [im_end]);

    let ids = assert_round_trip(&t, CHATML);
    assert_eq!(ids[0], im_start);
    assert_eq!(ids.iter().filter(|&&id| id == im_start).count(), 3);
    assert_eq!(ids.iter().filter(|&&id| id == im_end).count(), 2);
    // Text next to a control token is tokenized as if the token were not there.
    let system = encode(&t, "system\nYou are helpful.", false);
    assert_eq!(ids[1..=system.len()], system[..]);
    assert_eq!(ids[system.len() + 1], im_end);

    assert_eq!(
        decode(&t, &ids, true),
        "system\nYou are helpful.\nuser\nHi\nassistant\n"
    );
}

#[test]
fn special_ids_and_chat_template_come_from_metadata() {
    let gguf = load();
    let t = &gguf.tokenizer;
    let eos = gguf.eos_token_id.expect("eos_token_id missing");
    let eos_token = t.id_to_token(eos).expect("eos id outside the vocabulary");
    println!("eos_token_id = {eos} = {eos_token:?}");
    assert!(
        ["<|im_end|>", "<|endoftext|>"].contains(&eos_token.as_str()),
        "unexpected eos token {eos_token:?}"
    );
    assert_eq!(eos, id_of(t, &eos_token));
    println!(
        "bos_token_id = {:?} = {:?}",
        gguf.bos_token_id,
        gguf.bos_token_id.and_then(|id| t.id_to_token(id))
    );

    let template = gguf.chat_template.expect("chat_template missing");
    assert!(template.contains("im_start"), "template: {template}");
}

/// Sentence ends read from the shipped tokenizer cut a RULER-style needle as one sentence (its
/// UUID value stays with its key), and do not cut at a stop without whitespace after it.
#[test]
fn sentence_ends_from_the_shipped_vocabulary() {
    use sdtp::model::text::{SentenceEnds, TextCodec};
    let gguf = load();
    let vocab = gguf.tokenizer.get_vocab_size(true);
    let codec = TextCodec::Tokenizer(Box::new(gguf.tokenizer));
    let started = std::time::Instant::now();
    let ends = SentenceEnds::from_codec(&codec, vocab);
    eprintln!("sentence ends of {vocab} ids in {:?}", started.elapsed());
    let text = "The grass is green. One of the special magic uuids for calm-river is: \
                dc7b82b5-f637-44fb-a0c1-e1e2804c251a. The sky is blue at 3.14 pm!\nNext line";
    let ids = codec.encode(text).unwrap();
    let offsets = codec.token_offsets(text).unwrap();
    let sentence = ends.sentence_ids(&ids, 128);
    // The sentence of the token that covers the first byte of `needle` (its last byte with
    // `last`).
    let sentence_at = |needle: &str, last: bool| {
        let byte = text.find(needle).unwrap() + if last { needle.len() - 1 } else { 0 };
        let token = offsets
            .iter()
            .position(|&(s, e)| s <= byte && byte < e)
            .unwrap();
        sentence[token]
    };
    assert_eq!(sentence_at("grass", false), 0);
    // The needle from its first word to the last character of its UUID is one sentence.
    assert_eq!(sentence_at("One of", false), 1);
    assert_eq!(sentence_at("dc7b82b5", false), 1);
    assert_eq!(sentence_at("e1e2804c251a", true), 1);
    assert_eq!(sentence_at("sky", false), 2);
    // "3.14" does not end the sentence: "pm" is still in it; "!" and the line break do.
    assert_eq!(sentence_at("pm", false), 2);
    assert_eq!(sentence_at("Next", false), 4);
}
