//! RULER's samples with the real SmolLM2 tokenizer (read from the GGUF, no weights): every
//! task fills its target length without going over, each answer is derivable from its prompt
//! and occurs where it should, needles sit at their depths, and a sample's content is a
//! function of its seed, task and index alone.

mod common;

use std::collections::{HashMap, HashSet};

use sdtp::eval::ruler::haystack::{sample_depth, Corpus};
use sdtp::eval::ruler::sample::{build_sample, build_samples, RulerSample, SampleId};
use sdtp::eval::ruler::task::Task;
use sdtp::model::load::read_gguf_content;
use sdtp::model::text::{apply_chat_template, TextCodec};
use sdtp::model::tokenizer::tokenizer_from_gguf;

const SEED: u64 = 299_792_458;

struct Setup {
    codec: TextCodec,
    chat_template: String,
    corpus: Corpus,
}

fn setup() -> Setup {
    let content = read_gguf_content(&common::real_model_path()).unwrap();
    let t = tokenizer_from_gguf(&content).unwrap();
    Setup {
        codec: TextCodec::Tokenizer(Box::new(t.tokenizer)),
        chat_template: t.chat_template.expect("SmolLM2 has a chat template"),
        corpus: Corpus::shipped().unwrap(),
    }
}

fn try_build(
    s: &Setup,
    task: Task,
    length: usize,
    index: usize,
    seed: u64,
) -> anyhow::Result<RulerSample> {
    let id = SampleId {
        task,
        length,
        index,
    };
    build_sample(id, seed, &s.corpus, &|t| s.codec.encode(t), &|t| {
        Ok(t.to_string())
    })
}

fn build(s: &Setup, task: Task, length: usize, index: usize) -> RulerSample {
    try_build(s, task, length, index, SEED)
        .unwrap_or_else(|e| panic!("{task} @ {length} #{index}: {e}"))
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The prompt up to its final question (the context the answer must come from).
fn context(s: &RulerSample) -> &str {
    let at = ["\nWhat ", "\nQuestion:"]
        .iter()
        .filter_map(|q| s.text.rfind(q))
        .max()
        .expect("a question");
    &s.text[..at]
}

#[test]
fn prompts_fill_their_length_and_never_exceed_it() {
    let s = setup();
    for task in Task::ALL {
        // cwe needs ≈ 700 tokens (its worked example and 10 × 6 common words); 4096 switches
        // cwe to RULER's long-context counts.
        let lengths: &[usize] = match task {
            Task::Cwe => &[1024, 2048, 4096],
            _ => &[512, 1024, 2048],
        };
        for &length in lengths {
            for index in 0..2 {
                let sample = build(&s, task, length, index);
                let n = sample.ids.len();
                assert_eq!(n, s.codec.encode(&sample.text).unwrap().len());
                assert!(n <= length, "{task} @ {length}: {n} tokens");
                // Within 2%, or one haystack unit where that is more: the needle haystacks'
                // unit is a whole needle line (≈ 18 tokens; ≈ 70 with UUIDs, so
                // niah_multikey_3 is within 2% only from 4096 tokens, checked below).
                let slack = match task {
                    Task::NiahMultikey2 => (length / 50).max(20),
                    Task::NiahMultikey3 => 80,
                    _ => length / 50,
                };
                assert!(n + slack >= length, "{task} @ {length}: only {n} tokens");
            }
        }
    }
    let uuids = build(&s, Task::NiahMultikey3, 4096, 0);
    assert!(uuids.ids.len() <= 4096 && uuids.ids.len() * 50 >= 4096 * 49);
}

#[test]
fn every_reference_occurs_once_and_only_the_queried_keys_hold_them() {
    let s = setup();
    let niah = &Task::ALL[..8];
    for &task in niah {
        for index in 0..3 {
            let sample = build(&s, task, 1024, index);
            let ctx = context(&sample);
            for r in &sample.references {
                assert_eq!(count(&sample.text, r), 1, "{task}: {r} once");
            }
            let needles = count(ctx, "One of the special magic");
            let kind = if task == Task::NiahSingle3 || task == Task::NiahMultikey3 {
                "uuids"
            } else {
                "numbers"
            };
            // The queried keys, from the answer prefix.
            let prefix = format!(" The special magic {}", &kind[..kind.len() - 1]);
            let tail = &sample.text[sample.text.rfind(&prefix).unwrap()..];
            let keys = tail
                .split(" for ")
                .nth(1)
                .unwrap()
                .split(" mentioned")
                .next()
                .unwrap()
                .replace(", and ", ", ");
            let keys: Vec<&str> = keys.split(", ").collect();
            // Each reference sits in a needle of a queried key.
            for r in &sample.references {
                let needle_start = ctx[..ctx.find(r.as_str()).unwrap()]
                    .rfind("One of the special magic")
                    .unwrap();
                let needle = &ctx[needle_start..];
                assert!(
                    keys.iter().any(|k| needle
                        .starts_with(&format!("One of the special magic {kind} for {k} is: {r}."))),
                    "{task}: {r} under {keys:?}"
                );
            }
            match task {
                Task::NiahMultikey1 => assert_eq!(needles, 4, "1 needle + 3 distractors"),
                Task::NiahMultivalue | Task::NiahMultiquery => assert_eq!(needles, 4),
                Task::NiahMultikey2 | Task::NiahMultikey3 => {
                    assert_eq!(needles, sample.haystack_units + 1, "all needles")
                }
                _ => assert_eq!(needles, 1),
            }
            assert_eq!(keys.len(), if task == Task::NiahMultiquery { 4 } else { 1 });
            assert_eq!(
                sample.references.len(),
                if matches!(task, Task::NiahMultiquery | Task::NiahMultivalue) {
                    4
                } else {
                    1
                }
            );
            // A queried key occurs in the context once per value it holds.
            let per_key = if task == Task::NiahMultivalue { 4 } else { 1 };
            for k in &keys {
                assert_eq!(count(ctx, &format!(" {k} is: ")), per_key, "{task}: {k}");
            }
        }
    }
}

#[test]
fn needles_sit_at_their_depths() {
    let s = setup();
    for &task in &Task::ALL[..8] {
        for index in 0..5 {
            let sample = build(&s, task, 2048, index);
            let depth = sample_depth(index);
            assert_eq!(sample.depth, Some(depth));
            let at = sample.answer_position.unwrap() as f64;
            // Depth is a fraction of the haystack's units (as RULER: of its sentences for
            // prose, whose lengths vary), from the end of the instructions' line to the
            // question; in tokens it lands within a few sentences of the spot.
            let start = s
                .codec
                .encode(&sample.text[..=sample.text.find('\n').unwrap()])
                .unwrap()
                .len() as f64;
            let end = s.codec.encode(context(&sample)).unwrap().len() as f64;
            let wanted = start + depth * (end - start);
            let unit = match task {
                // Two UUID lines: the floor to a whole line and the needle's own line.
                Task::NiahMultikey3 => 150.0,
                _ => 0.08 * sample.ids.len() as f64,
            };
            let last = if depth == 1.0 { end - at } else { 0.0 };
            assert!(
                (at - wanted).abs() <= unit + last,
                "{task} depth {depth}: token {at}, wanted {wanted} ({start}..{end})"
            );
            let at = at as usize;
            let from = s.codec.decode(&sample.ids[at..]).unwrap();
            assert!(
                from.trim_start().starts_with("One of the special magic"),
                "{task}: {:.60}",
                from
            );
            assert!(from.contains(&sample.references[0]) || task == Task::NiahMultiquery);
        }
    }
}

/// Follows `VAR X = value`, then `VAR Y = VAR X`, … in `text`.
fn follow_chain(text: &str, value: &str) -> HashSet<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut held: HashSet<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("VAR "))
        .filter_map(|l| l.split_once(" = "))
        .filter(|(_, v)| *v == value)
        .map(|(name, _)| name.to_string())
        .collect();
    loop {
        let more: Vec<String> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("VAR "))
            .filter_map(|l| l.split_once(" = VAR "))
            .filter(|(to, from)| held.contains(*from) && !held.contains(*to))
            .map(|(to, _)| to.to_string())
            .collect();
        if more.is_empty() {
            return held;
        }
        held.extend(more);
    }
}

#[test]
fn variable_tracking_answers_follow_the_chain() {
    let s = setup();
    for (length, example) in [(256, false), (1024, true), (2048, true)] {
        for index in 0..3 {
            let sample = build(&s, Task::Vt, length, index);
            let text = &sample.text;
            let value = text
                .rsplit("assigned the value ")
                .next()
                .unwrap()
                .split(',')
                .next()
                .unwrap();
            let refs: HashSet<String> = sample.references.iter().cloned().collect();
            assert_eq!(refs.len(), 5);
            assert_eq!(follow_chain(text, value), refs, "{length} #{index}");
            assert!(text.ends_with(&format!(
                "5 variables are assigned the value {value}, they are: "
            )));
            // The worked example (when there is room for it) has its own value and names.
            assert_eq!(count(text, "Memorize and track") == 2, example, "{length}");
            if example {
                let shown = text
                    .split("they are:  ")
                    .nth(1)
                    .unwrap()
                    .lines()
                    .next()
                    .unwrap();
                let names: HashSet<String> = shown.split(' ').map(String::from).collect();
                assert_eq!(names.len(), 5);
                assert!(names.is_disjoint(&refs));
                let first = text.split("VAR ").nth(1).unwrap();
                let shown_value = first.split(" = ").nth(1).unwrap().lines().next().unwrap();
                assert_ne!(shown_value, value);
                assert_eq!(follow_chain(text, shown_value), names);
            }
        }
    }
}

/// Counts of the words of the last numbered list ("1. a 2. b …").
fn list_counts(sample: &RulerSample) -> HashMap<String, usize> {
    let ctx = context(sample);
    let list = &ctx[ctx.rfind("most often.\n").unwrap() + "most often.\n".len()..];
    let mut counts = HashMap::new();
    for (i, item) in list.split(' ').collect::<Vec<_>>().chunks(2).enumerate() {
        assert_eq!(item[0], format!("{}.", i + 1), "numbered in order");
        *counts.entry(item[1].to_string()).or_insert(0) += 1;
    }
    counts
}

/// Whether `refs` are exactly the words with the top counts, each above every other word.
fn strictly_most_frequent(counts: &HashMap<String, usize>, refs: &[String]) -> bool {
    let lowest_ref = refs
        .iter()
        .map(|r| counts.get(r).copied().unwrap_or(0))
        .min()
        .unwrap();
    let highest_other = counts
        .iter()
        .filter(|(w, _)| !refs.contains(w))
        .map(|(_, &c)| c)
        .max()
        .unwrap_or(0);
    lowest_ref > highest_other
}

#[test]
fn common_words_are_strictly_the_most_common() {
    let s = setup();
    for (length, common, other) in [(1024, 6, 1), (4096, 30, 3)] {
        for index in 0..2 {
            let sample = build(&s, Task::Cwe, length, index);
            let counts = list_counts(&sample);
            assert_eq!(sample.references.len(), 10);
            assert!(strictly_most_frequent(&counts, &sample.references));
            assert!(sample.references.iter().all(|r| counts[r] == common));
            assert!(counts
                .iter()
                .all(|(w, &c)| sample.references.contains(w) || c == other));
            assert_eq!(counts.len(), sample.haystack_units);
            // The worked example's answer is its 10 common words, none of them the question's.
            let example_answer = sample
                .text
                .split("appear most often in the list are: ")
                .nth(1)
                .unwrap();
            assert!(sample.references.iter().all(|r| !example_answer
                .lines()
                .next()
                .unwrap()
                .contains(&format!(" {r} "))));
        }
    }
}

#[test]
fn frequent_words_are_strictly_the_most_frequent() {
    let s = setup();
    for length in [256, 1024, 2048] {
        for index in 0..3 {
            let sample = build(&s, Task::Fwe, length, index);
            let ctx = context(&sample);
            let coded = &ctx[ctx.find("coded words. ").unwrap() + "coded words. ".len()..];
            let mut counts: HashMap<String, usize> = HashMap::new();
            for w in coded.split(' ').filter(|w| *w != "...") {
                assert!(
                    w.len() == 6 && w.bytes().all(|b| b.is_ascii_lowercase()),
                    "{w}"
                );
                *counts.entry(w.to_string()).or_insert(0) += 1;
            }
            assert_eq!(sample.references.len(), 3);
            assert!(
                strictly_most_frequent(&counts, &sample.references),
                "{length} #{index}"
            );
            // Zipf: rank 2 before rank 3 before rank 4.
            let c: Vec<usize> = sample.references.iter().map(|r| counts[r]).collect();
            assert!(c[0] > c[1] && c[1] > c[2], "{c:?}");
            assert!(count(coded, "...") > c[0], "\"...\" takes the top rank");
        }
    }
}

#[test]
fn samples_depend_on_seed_task_and_index_only() {
    let s = setup();
    for task in Task::ALL {
        let a = build(&s, task, 1024, 3);
        assert_eq!(a, build(&s, task, 1024, 3), "{task}: deterministic");
        // The same needles at every length; only the haystack grows.
        let longer = build(&s, task, 2048, 3);
        assert_eq!(a.references, longer.references, "{task}");
        assert!(longer.haystack_units > a.haystack_units, "{task}");
        assert_ne!(a.references, build(&s, task, 1024, 4).references, "{task}");
        let other_seed = try_build(&s, task, 1024, 3, SEED + 1).unwrap();
        assert_ne!(a.references, other_seed.references, "{task}");
    }
}

#[test]
fn too_short_lengths_name_their_minimum() {
    let s = setup();
    for task in [Task::NiahSingle1, Task::Vt, Task::Cwe, Task::Fwe] {
        let err = try_build(&s, task, 64, 0, SEED).unwrap_err().to_string();
        let minimum: usize = err
            .split("at least ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{err}"));
        assert!(err.contains(task.name()), "{err}");
        // The minimum is a length that works; one less does not (vt's example is left out
        // below 4 × its size, so the named minimum is that of the bare question).
        let at = try_build(&s, task, minimum, 0, SEED).unwrap();
        assert!(at.ids.len() <= minimum);
        assert!(
            try_build(&s, task, minimum - 1, 0, SEED).is_err(),
            "{task} {minimum}"
        );
    }
    let fwe = try_build(&s, Task::Fwe, 200, 0, SEED)
        .unwrap_err()
        .to_string();
    assert!(fwe.contains("at least 250"), "{fwe}");
    // Over many samples, the named minimum is the one that fits them all.
    let all = |length: usize| {
        build_samples(
            &[Task::NiahSingle1, Task::NiahMultikey3],
            &[length],
            10,
            SEED,
            &s.corpus,
            &|t| s.codec.encode(t),
            &|t| Ok(t.to_string()),
        )
    };
    let err = all(40).unwrap_err().to_string();
    assert!(err.starts_with("task niah_single_1 needs"), "{err}");
    let minimum = stated_minimum(&err);
    let err = all(minimum).unwrap_err().to_string();
    assert!(err.starts_with("task niah_multikey_3 needs"), "{err}");
    let uuid_minimum = stated_minimum(&err);
    assert_eq!(all(uuid_minimum).unwrap().len(), 20);
    assert!(all(uuid_minimum - 1).is_err());
}

#[test]
fn the_chat_template_wraps_the_body_before_the_answer_prefix() {
    let s = setup();
    let wrap = |t: &str| apply_chat_template(&s.chat_template, t, "", "");
    let id = SampleId {
        task: Task::NiahSingle2,
        length: 1024,
        index: 2,
    };
    let chat = build_sample(id, SEED, &s.corpus, &|t| s.codec.encode(t), &wrap).unwrap();
    assert!(chat.ids.len() <= 1024 && chat.ids.len() + 20 >= 1024);
    assert!(chat.text.starts_with("<|im_start|>"));
    // RULER's model templates end at the assistant's turn; the answer prefix follows.
    assert!(chat
        .text
        .contains("<|im_end|>\n<|im_start|>assistant\n The special magic number for "));
    assert!(chat.text.ends_with("mentioned in the provided text is"));
    let at = chat.answer_position.unwrap();
    let from = s.codec.decode(&chat.ids[at..]).unwrap();
    assert!(from
        .trim_start()
        .starts_with("One of the special magic numbers"));
}

/// The length a "needs a --length of at least N tokens" error names.
fn stated_minimum(err: &str) -> usize {
    err.split("at least ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no minimum length in {err:?}"))
}
