//! The random pieces of RULER's samples: needle keys and values, variable names, coded
//! words, and the shipped English word list they draw from.
//!
//! RULER's keys are "adjective-noun" pairs of the `wonderwords` lists and its common words
//! come from the same lists; offline, both come from `data/ruler/words.txt` (≈6,000 lowercase
//! words of the shipped book, see data/README.md). A key is two of them joined by a hyphen,
//! keeping RULER's shape and, unlike a single word, never occurring in the prose haystack.

use std::collections::HashSet;

use rand::Rng;

/// The shipped word list, one word a line.
pub const WORDS_TXT: &str = include_str!("../../../data/ruler/words.txt");

/// Where it lives in the repository, for reports.
pub const WORDS_PATH: &str = "data/ruler/words.txt";

/// The words of [`WORDS_TXT`], in file (sorted) order.
pub fn words() -> Vec<&'static str> {
    WORDS_TXT
        .lines()
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect()
}

/// A needle key: two shipped words joined by a hyphen ("lantern-brisk").
pub fn word_key(rng: &mut impl Rng, words: &[&str]) -> String {
    let a = words[rng.random_range(0..words.len())];
    let b = words[rng.random_range(0..words.len())];
    format!("{a}-{b}")
}

/// A 7-digit number, 1000000..=9999999 (RULER's `generate_random_number`).
pub fn number(rng: &mut impl Rng) -> String {
    rng.random_range(1_000_000u32..=9_999_999).to_string()
}

/// A version-4 UUID from 128 random bits, as Python's `uuid.UUID(int=…, version=4)` makes
/// them: 8-4-4-4-12 lowercase hex with the version and variant bits set.
pub fn uuid(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `len` random letters from `alphabet`.
fn letters(rng: &mut impl Rng, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// `count` distinct upper-case variable names of `len` letters (RULER: 5, or 3 in its
/// in-context example), none in `avoid`.
pub fn variable_names(
    rng: &mut impl Rng,
    count: usize,
    len: usize,
    avoid: &HashSet<String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(count);
    while out.len() < count {
        let name = letters(rng, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", len);
        if !avoid.contains(&name) && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// `count` distinct coded words of `len` lower-case letters, in the order drawn: a uniformly
/// random ordered choice, as RULER's sorted-then-shuffled vocabulary, with the difference
/// that a longer list starts with the shorter one (so fwe's answer does not change with the
/// length, which sets the vocabulary's size).
pub fn coded_words(rng: &mut impl Rng, count: usize, len: usize) -> Vec<String> {
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let word = letters(rng, b"abcdefghijklmnopqrstuvwxyz", len);
        if seen.insert(word.clone()) {
            out.push(word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn shipped_words_are_lowercase_and_distinct() {
        let w = words();
        assert!(w.len() > 5000, "{}", w.len());
        assert!(w.windows(2).all(|p| p[0] < p[1]), "sorted, no repeats");
        assert!(w
            .iter()
            .all(|x| x.len() >= 3 && x.bytes().all(|b| b.is_ascii_lowercase())));
        assert!(
            !w.contains(&"the") && !w.contains(&"and"),
            "function words dropped"
        );
    }

    #[test]
    fn shapes_of_keys_and_values() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let w = words();
        let key = word_key(&mut rng, &w);
        let (a, b) = key.split_once('-').unwrap();
        assert!(w.contains(&a) && w.contains(&b), "{key}");
        for _ in 0..100 {
            let n = number(&mut rng);
            assert!(n.len() == 7 && !n.starts_with('0'), "{n}");
            let u = uuid(&mut rng);
            let parts: Vec<usize> = u.split('-').map(str::len).collect();
            assert_eq!(parts, [8, 4, 4, 4, 12], "{u}");
            assert_eq!(&u[14..15], "4", "version 4: {u}");
            assert!("89ab".contains(&u[19..20]), "variant: {u}");
        }
        let avoid: HashSet<String> = ["ABCDE".to_string()].into();
        let names = variable_names(&mut rng, 50, 5, &avoid);
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), 50);
        assert!(names.iter().all(|n| n.len() == 5 && n != "ABCDE"));
        let coded = coded_words(&mut rng.clone(), 40, 6);
        assert_eq!(coded.iter().collect::<HashSet<_>>().len(), 40);
        assert_eq!(
            coded[..10],
            coded_words(&mut rng, 10, 6)[..],
            "prefix-stable"
        );
    }
}
