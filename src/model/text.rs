//! Text in and out of token ids: the model's tokenizer and chat template, or, for synthetic
//! models that have no vocabulary of their own, plain UTF-8 bytes as ids.

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

pub enum TextCodec {
    Tokenizer(Box<tokenizers::Tokenizer>),
    /// Byte `b` is token `b`; for random-weight models whose output is meaningless anyway.
    Bytes,
}

impl TextCodec {
    /// Token ids of `text`, without adding special tokens the text does not spell out.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Self::Tokenizer(t) => Ok(t
                .encode(text, false)
                .map_err(|e| anyhow!("tokenizer failed: {e}"))?
                .get_ids()
                .to_vec()),
            Self::Bytes => Ok(text.bytes().map(u32::from).collect()),
        }
    }

    /// The byte range in `text` of each token [`TextCodec::encode`] gives (a byte-level token
    /// that starts mid-character covers the whole character).
    pub fn token_offsets(&self, text: &str) -> Result<Vec<(usize, usize)>> {
        match self {
            Self::Tokenizer(t) => Ok(t
                .encode(text, false)
                .map_err(|e| anyhow!("tokenizer failed: {e}"))?
                .get_offsets()
                .to_vec()),
            Self::Bytes => Ok((0..text.len()).map(|i| (i, i + 1)).collect()),
        }
    }

    /// Text of `ids`, special tokens included (a stream shows what the model produced).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Self::Tokenizer(t) => t
                .decode(ids, false)
                .map_err(|e| anyhow!("tokenizer failed to decode: {e}")),
            Self::Bytes => {
                let bytes: Vec<u8> = ids.iter().map(|&id| (id % 256) as u8).collect();
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    }
}

/// Which token ids end a sentence, for scorers that keep sentences whole. A sentence ends
/// after a token that holds a line break or a full-width `。！？`, and after a token ending in
/// `.`, `!` or `?` when whitespace follows (in the token or at the start of the next one), so
/// that "3.14", "example.com" or "e.g." mid-sentence do not cut it. Read from the model's
/// vocabulary once, so a prompt is cut into sentences from its ids alone.
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceEnds {
    ends: Vec<End>,
    /// Whether the token's text starts with whitespace.
    leading_space: Vec<bool>,
}

/// How a token's text ends a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    No,
    /// Always: a line break, a full-width stop, or a stop followed by whitespace.
    Always,
    /// A stop at the very end of the token: only when the next token starts with whitespace.
    IfSpaceFollows,
}

fn end_of(text: &str) -> End {
    let trimmed = text.trim_end();
    let ends_with = |chars: &[char]| trimmed.ends_with(|c: char| chars.contains(&c));
    if text.contains('\n') || ends_with(&['。', '！', '？']) {
        End::Always
    } else if ends_with(&['.', '!', '?']) {
        if trimmed.len() < text.len() {
            End::Always
        } else {
            End::IfSpaceFollows
        }
    } else {
        End::No
    }
}

impl SentenceEnds {
    /// Reads every id below `vocab_size` through `codec` (ids it cannot decode end nothing).
    pub fn from_codec(codec: &TextCodec, vocab_size: usize) -> Self {
        let (ends, leading_space) = (0..vocab_size as u32)
            .map(|id| match codec.decode(&[id]) {
                Ok(text) => (end_of(&text), text.starts_with(char::is_whitespace)),
                Err(_) => (End::No, false),
            })
            .unzip();
        Self {
            ends,
            leading_space,
        }
    }

    fn end(&self, id: u32) -> End {
        self.ends.get(id as usize).copied().unwrap_or(End::No)
    }

    fn leading_space(&self, id: u32) -> bool {
        self.leading_space
            .get(id as usize)
            .copied()
            .unwrap_or(false)
    }

    /// The sentence each of `ids` belongs to, numbered from 0 in order. A sentence is cut
    /// after `max_len` tokens, so text without punctuation (code, a list of values) does not
    /// become one unit.
    pub fn sentence_ids(&self, ids: &[u32], max_len: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(ids.len());
        let (mut sentence, mut len) = (0u32, 0usize);
        for (i, &id) in ids.iter().enumerate() {
            out.push(sentence);
            len += 1;
            let ends = match self.end(id) {
                End::No => false,
                End::Always => true,
                End::IfSpaceFollows => ids.get(i + 1).is_none_or(|&next| self.leading_space(next)),
            };
            if ends || len >= max_len.max(1) {
                sentence += 1;
                len = 0;
            }
        }
        out
    }
}

/// Prints generated tokens as soon as they form whole UTF-8 text (byte-level BPE splits
/// characters across tokens), by decoding the growing sequence and emitting the new suffix.
#[derive(Default)]
pub struct TokenStreamer {
    ids: Vec<u32>,
    printed: usize,
}

impl TokenStreamer {
    /// Adds `id` and returns the text that became complete, if any.
    pub fn push(&mut self, codec: &TextCodec, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let text = codec.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}') || text.len() <= self.printed {
            return Ok(None);
        }
        let fresh = text.get(self.printed..).map(str::to_string);
        self.printed = text.len();
        Ok(fresh)
    }
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

/// Renders the model's Jinja chat template for one user turn, with the generation prompt.
pub fn apply_chat_template(
    template: &str,
    user: &str,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_template("chat", template)
        .map_err(|e| anyhow!("the model's chat template does not parse: {e}"))?;
    let messages = [Message {
        role: "user",
        content: user,
    }];
    let rendered = env
        .get_template("chat")
        .and_then(|t| {
            t.render(minijinja::context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => bos_token,
                eos_token => eos_token,
            })
        })
        .map_err(|e| anyhow!("the model's chat template failed: {e}"))?;
    if rendered.is_empty() {
        bail!("the model's chat template rendered nothing");
    }
    Ok(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn renders_chatml() {
        let out = apply_chat_template(CHATML, "Hi", "", "").unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn sentences_end_at_punctuation_and_line_breaks() {
        let ends = SentenceEnds::from_codec(&TextCodec::Bytes, 256);
        let sentences = |text: &str, max_len: usize| {
            ends.sentence_ids(&TextCodec::Bytes.encode(text).unwrap(), max_len)
        };
        // "Hi." | " Yes!" | "\n" | "ab"
        assert_eq!(
            sentences("Hi. Yes!\nab", 64),
            vec![0, 0, 0, 1, 1, 1, 1, 1, 2, 3, 3]
        );
        // A stop without whitespace after it ends nothing (decimals, domains); at the end of
        // the prompt it does.
        assert_eq!(sentences("a.b c.", 64), vec![0; 6]);
        assert_eq!(sentences("a. b", 64), vec![0, 0, 1, 1]);
        // A sentence longer than max_len is cut.
        assert_eq!(sentences("abcdefg.", 3), vec![0, 0, 0, 1, 1, 1, 2, 2]);
        // Ids past the vocabulary end nothing.
        assert_eq!(ends.sentence_ids(&[4096, 4097], 64), vec![0, 0]);
        // A stop with whitespace inside the token ends the sentence at that token.
        assert_eq!(end_of(". "), End::Always);
        assert_eq!(end_of("."), End::IfSpaceFollows);
        assert_eq!(end_of("。"), End::Always);
        assert_eq!(end_of(" e"), End::No);
    }

    #[test]
    fn byte_codec_round_trips_utf8() {
        let text = "héllo 🚀";
        let ids = TextCodec::Bytes.encode(text).unwrap();
        assert_eq!(TextCodec::Bytes.decode(&ids).unwrap(), text);
    }

    #[test]
    fn streamer_waits_for_whole_characters() {
        let mut s = TokenStreamer::default();
        let bytes = "é".as_bytes();
        assert_eq!(s.push(&TextCodec::Bytes, bytes[0] as u32).unwrap(), None);
        assert_eq!(
            s.push(&TextCodec::Bytes, bytes[1] as u32)
                .unwrap()
                .as_deref(),
            Some("é")
        );
        assert_eq!(
            s.push(&TextCodec::Bytes, b'!' as u32).unwrap().as_deref(),
            Some("!")
        );
    }
}
