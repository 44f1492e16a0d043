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
