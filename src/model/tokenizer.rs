//! Rebuilds a `tokenizers::Tokenizer` from the `tokenizer.ggml.*` metadata of a GGUF file, for
//! checkpoints that ship no tokenizer.json.
//!
//! Two vocabularies are supported, named as llama.cpp names them in `tokenizer.ggml.model`:
//! - `gpt2`: byte-level BPE from `tokens` + `merges`, pre-tokenized as `tokenizer.ggml.pre` says
//!   (SmolLM2, Llama 3, Qwen 2, ...).
//! - `llama`: SentencePiece from `tokens` + `scores` (Llama 2, Mistral, ...). The merges are
//!   derived from the scores, as transformers' `convert_slow_tokenizer` does, which reproduces
//!   SentencePiece's and llama.cpp's "merge the best-scoring pair first" algorithm; `<0xNN>`
//!   tokens are the byte fallback.
//!
//! Data from the file is never trusted: a missing key, a wrong type or an id outside the
//! vocabulary is an error naming the key, not a panic.

use std::collections::{HashMap, HashSet};

use anyhow::{anyhow, bail, ensure, Result};
use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BpeBuilder, Vocab as BpeVocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::sequence::Sequence as ProcessorSequence;
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    SplitDelimiterBehavior, Tokenizer,
};

use super::gguf_meta::{missing_key, Metadata};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_UNK: &str = "tokenizer.ggml.unknown_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const KEY_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_NORMAL: i64 = 1;
const TOKEN_TYPE_UNKNOWN: i64 = 2;
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// SentencePiece's word-boundary marker, which stands for a space.
const SPIECE_UNDERLINE: &str = "\u{2581}";

/// Word-splitting regexes of byte-level vocabularies other than GPT-2's (which
/// `ByteLevel { use_regex: true }` has built in), as llama.cpp spells them.
const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Tokenizer plus the special ids and chat template a GGUF declares.
pub struct GgufTokenizer {
    /// Encodes without a BOS for `gpt2` vocabularies unless `tokenizer.ggml.add_bos_token` is
    /// true; `llama` vocabularies add one by default. Control tokens (`<|im_start|>`, `<s>`)
    /// are special added tokens: matched whole in text, dropped by `skip_special_tokens`.
    pub tokenizer: Tokenizer,
    /// `tokenizer.ggml.bos_token_id`, checked to be inside the vocabulary.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`, checked to be inside the vocabulary.
    pub eos_token_id: Option<u32>,
    /// `tokenizer.chat_template`, a Jinja template, verbatim.
    pub chat_template: Option<String>,
}

/// Builds the tokenizer a GGUF file describes in its `tokenizer.ggml.*` metadata.
///
/// Errors name the offending key: missing or mistyped metadata, ids outside the vocabulary,
/// malformed merges, or a `tokenizer.ggml.model` other than `gpt2` or `llama`.
pub fn tokenizer_from_gguf(content: &gguf_file::Content) -> Result<GgufTokenizer> {
    let md = Metadata(&content.metadata);
    let model = md
        .string(KEY_MODEL)?
        .ok_or_else(|| missing_key(KEY_MODEL))?;
    let kind = match model {
        "gpt2" => VocabKind::Gpt2,
        "llama" => VocabKind::Llama,
        other => bail!("unsupported GGUF tokenizer model \"{other}\" (supported: gpt2, llama)"),
    };

    let vocab = Vocab::read(&md)?;
    let bos_token_id = md.token_id(KEY_BOS, vocab.len())?;
    let eos_token_id = md.token_id(KEY_EOS, vocab.len())?;
    let unk_token_id = md.token_id(KEY_UNK, vocab.len())?;
    let chat_template = md.string(KEY_CHAT_TEMPLATE)?.map(str::to_owned);

    let mut tokenizer = match kind {
        VocabKind::Gpt2 => gpt2_tokenizer(&md, &vocab)?,
        // SentencePiece reserves id 0 for <unk> unless told otherwise.
        VocabKind::Llama => llama_tokenizer(&md, &vocab, unk_token_id.unwrap_or(0))?,
    };

    let add_bos = md.bool(KEY_ADD_BOS)?.unwrap_or(kind == VocabKind::Llama);
    let add_eos = md.bool(KEY_ADD_EOS)?.unwrap_or(false);
    let template = special_token_template(
        &vocab,
        add_bos.then_some(bos_token_id).map(|id| (KEY_BOS, id)),
        add_eos.then_some(eos_token_id).map(|id| (KEY_EOS, id)),
    )?;
    let post_processor: Option<PostProcessorWrapper> = match (kind, template) {
        // The byte-level post-processor only adjusts offsets; keep it so offsets match
        // what a tokenizer.json of the same model gives.
        (VocabKind::Gpt2, None) => Some(ByteLevel::new(false, false, true).into()),
        (VocabKind::Gpt2, Some(template)) => Some(
            ProcessorSequence::new(vec![
                ByteLevel::new(false, false, true).into(),
                template.into(),
            ])
            .into(),
        ),
        (VocabKind::Llama, template) => template.map(Into::into),
    };
    tokenizer.with_post_processor(post_processor);

    let (special, user_defined) =
        added_tokens(&vocab, kind, [bos_token_id, eos_token_id, unk_token_id]);
    tokenizer.add_special_tokens(&special);
    tokenizer.add_tokens(&user_defined);

    Ok(GgufTokenizer {
        tokenizer,
        bos_token_id,
        eos_token_id,
        chat_template,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VocabKind {
    Gpt2,
    Llama,
}

/// The token strings and (optional) token types, index = id.
struct Vocab {
    tokens: Vec<String>,
    types: Option<Vec<i64>>,
}

impl Vocab {
    fn read(md: &Metadata) -> Result<Self> {
        let tokens = md
            .strings(KEY_TOKENS)?
            .ok_or_else(|| missing_key(KEY_TOKENS))?;
        ensure!(!tokens.is_empty(), "GGUF metadata `{KEY_TOKENS}` is empty");
        ensure!(
            u32::try_from(tokens.len()).is_ok(),
            "GGUF metadata `{KEY_TOKENS}` has {} entries, more than u32 ids can address",
            tokens.len()
        );
        let types = md.ints(KEY_TOKEN_TYPE)?;
        if let Some(types) = &types {
            ensure!(
                types.len() == tokens.len(),
                "GGUF metadata `{KEY_TOKEN_TYPE}` has {} entries but `{KEY_TOKENS}` has {}",
                types.len(),
                tokens.len()
            );
        }
        Ok(Self { tokens, types })
    }

    fn len(&self) -> usize {
        self.tokens.len()
    }

    /// A file without `token_type` is taken to hold only normal tokens.
    fn token_type(&self, id: usize) -> i64 {
        self.types.as_ref().map_or(TOKEN_TYPE_NORMAL, |t| t[id])
    }

    /// String → id, as the BPE model wants it. Ids are < u32::MAX (checked in `read`); a
    /// duplicated string maps to its last id, as in llama.cpp.
    fn bpe_vocab(&self) -> BpeVocab {
        (0u32..)
            .zip(&self.tokens)
            .map(|(id, t)| (t.clone(), id))
            .collect()
    }
}

/// Control tokens (and <unk> for SentencePiece, and the declared bos/eos/unk) become special
/// added tokens; user-defined tokens become plain added tokens, so they are matched whole but
/// survive `skip_special_tokens`, as llama.cpp renders them.
fn added_tokens(
    vocab: &Vocab,
    kind: VocabKind,
    declared: [Option<u32>; 3],
) -> (Vec<AddedToken>, Vec<AddedToken>) {
    let mut special_ids: Vec<usize> = (0..vocab.len())
        .filter(|&id| match vocab.token_type(id) {
            TOKEN_TYPE_CONTROL => true,
            TOKEN_TYPE_UNKNOWN => kind == VocabKind::Llama,
            _ => false,
        })
        .collect();
    special_ids.extend(declared.into_iter().flatten().map(|id| id as usize));
    let mut seen = HashSet::new();
    special_ids.retain(|id| seen.insert(*id));

    let special = special_ids
        .iter()
        .map(|&id| AddedToken::from(vocab.tokens[id].clone(), true))
        .collect();
    let user_defined = (0..vocab.len())
        .filter(|&id| vocab.token_type(id) == TOKEN_TYPE_USER_DEFINED && !seen.contains(&id))
        .map(|id| AddedToken::from(vocab.tokens[id].clone(), false).normalized(false))
        .collect();
    (special, user_defined)
}

/// Byte-level BPE: `tokens` + `merges`, pre-tokenized per `tokenizer.ggml.pre`.
fn gpt2_tokenizer(md: &Metadata, vocab: &Vocab) -> Result<Tokenizer> {
    let merges = md
        .strings(KEY_MERGES)?
        .ok_or_else(|| missing_key(KEY_MERGES))?;
    let merges = parse_merges(&merges)?;
    let pre = Gpt2PreTokenizer::from_name(md.string(KEY_PRE)?);
    let bpe = build_bpe(
        BpeBuilder::new()
            .vocab_and_merges(vocab.bpe_vocab(), merges)
            .ignore_merges(pre.ignore_merges),
    )?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre.pre_tokenizer()?));
    tokenizer.with_decoder(Some(ByteLevel::new(false, false, true)));
    Ok(tokenizer)
}

/// How a byte-level vocabulary splits text into words before BPE, after llama.cpp's
/// `llama_vocab_pre_type` (which `tokenizer.ggml.pre` names).
struct Gpt2PreTokenizer {
    /// Split every digit off on its own first (StarCoder, SmolLM).
    individual_digits: bool,
    /// A regex to split on instead of the GPT-2 one built into `ByteLevel`.
    regex: Option<&'static str>,
    /// Look whole words up in the vocabulary before merging (Llama 3).
    ignore_merges: bool,
}

impl Gpt2PreTokenizer {
    fn from_name(pre: Option<&str>) -> Self {
        let gpt2 = Self {
            individual_digits: false,
            regex: None,
            ignore_merges: false,
        };
        match pre {
            None | Some("default" | "gpt-2" | "phi-2") => gpt2,
            Some("smollm" | "starcoder" | "refact") => Self {
                individual_digits: true,
                ..gpt2
            },
            Some("llama3" | "llama-v3" | "llama-bpe") => Self {
                regex: Some(LLAMA3_REGEX),
                ignore_merges: true,
                ..gpt2
            },
            Some("qwen2") => Self {
                regex: Some(QWEN2_REGEX),
                ..gpt2
            },
            Some(other) => {
                tracing::warn!(
                    "GGUF `{KEY_PRE}` = {other:?} is not known here; splitting words with the \
                     GPT-2 regex, so token ids may differ from the model's own tokenizer"
                );
                gpt2
            }
        }
    }

    fn pre_tokenizer(&self) -> Result<PreTokenizerWrapper> {
        let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
        if self.individual_digits {
            steps.push(Digits::new(true).into());
        }
        let byte_level = match self.regex {
            None => ByteLevel::new(false, false, true),
            Some(regex) => {
                let split = Split::new(
                    SplitPattern::Regex(regex.to_owned()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| anyhow!("pre-tokenizer regex for `{KEY_PRE}`: {e}"))?;
                steps.push(split.into());
                ByteLevel::new(false, false, false)
            }
        };
        steps.push(byte_level.into());
        Ok(match steps.len() {
            1 => steps.remove(0),
            _ => PreTokenizerSequence::new(steps).into(),
        })
    }
}

/// SentencePiece BPE with byte fallback: `tokens` + `scores` (or `merges` if the file has them).
///
/// Spaces become "▁" and, with `add_space_prefix` (default true), each run of text gets a
/// leading "▁" — also the text after a special token, as llama.cpp and the "legacy" Llama
/// tokenizer.json do.
fn llama_tokenizer(md: &Metadata, vocab: &Vocab, unk_token_id: u32) -> Result<Tokenizer> {
    let merges = match md.strings(KEY_MERGES)? {
        Some(merges) => parse_merges(&merges)?,
        None => {
            let scores = md
                .floats(KEY_SCORES)?
                .ok_or_else(|| missing_key(KEY_SCORES))?;
            ensure!(
                scores.len() == vocab.len(),
                "GGUF metadata `{KEY_SCORES}` has {} entries but `{KEY_TOKENS}` has {}",
                scores.len(),
                vocab.len()
            );
            merges_from_scores(vocab, &scores)
        }
    };
    let unk = vocab
        .tokens
        .get(unk_token_id as usize)
        .ok_or_else(|| anyhow!("GGUF metadata `{KEY_UNK}` = {unk_token_id} is out of range"))?;
    let bpe = build_bpe(
        BpeBuilder::new()
            .vocab_and_merges(vocab.bpe_vocab(), merges)
            .unk_token(unk.clone())
            .fuse_unk(true)
            .byte_fallback(true),
    )?;

    let add_space_prefix = md.bool(KEY_ADD_SPACE_PREFIX)?.unwrap_or(true);
    let to_underline = replace(" ", SPIECE_UNDERLINE)?;
    let normalizer: NormalizerWrapper = if add_space_prefix {
        NormalizerSequence::new(vec![
            Prepend::new(SPIECE_UNDERLINE.to_owned()).into(),
            to_underline.into(),
        ])
        .into()
    } else {
        to_underline.into()
    };
    let mut decoders: Vec<DecoderWrapper> = vec![
        replace(SPIECE_UNDERLINE, " ")?.into(),
        ByteFallback::default().into(),
        Fuse::default().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_normalizer(Some(normalizer));
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

fn replace(pattern: &str, content: &str) -> Result<Replace> {
    Replace::new(pattern, content).map_err(|e| anyhow!("Replace({pattern:?}, {content:?}): {e}"))
}

fn build_bpe(builder: BpeBuilder) -> Result<BPE> {
    builder
        .build()
        .map_err(|e| anyhow!("building BPE from `{KEY_TOKENS}`/`{KEY_MERGES}`: {e}"))
}

/// GGUF stores each merge as "left right"; tokens never contain a plain space (it is "Ġ" or "▁").
fn parse_merges(merges: &[String]) -> Result<Vec<(String, String)>> {
    merges
        .iter()
        .enumerate()
        .map(|(i, merge)| match merge.split_once(' ') {
            Some((left, right)) if !left.is_empty() && !right.is_empty() => {
                Ok((left.to_owned(), right.to_owned()))
            }
            _ => bail!(
                "GGUF metadata `{KEY_MERGES}`[{i}] = {merge:?} is not two space-separated tokens"
            ),
        })
        .collect()
}

/// SentencePiece merges recovered from scores: every split of a piece into two pieces of the
/// vocabulary is a merge, ranked by the merged piece's score (best first), ties by the merged
/// piece's id then the halves' ids — transformers' `SentencePieceExtractor` order.
///
/// Only normal and user-defined pieces take part: control, unknown, unused and byte tokens are
/// never produced by merging text.
fn merges_from_scores(vocab: &Vocab, scores: &[f32]) -> Vec<(String, String)> {
    let mergeable = |id: usize| {
        matches!(
            vocab.token_type(id),
            TOKEN_TYPE_NORMAL | TOKEN_TYPE_USER_DEFINED
        )
    };
    let ids: HashMap<&str, usize> = (0..vocab.len())
        .filter(|&id| mergeable(id))
        .map(|id| (vocab.tokens[id].as_str(), id))
        .collect();

    // (merged id, left id, right id)
    let mut ranked: Vec<(usize, usize, usize)> = Vec::new();
    for (id, piece) in vocab.tokens.iter().enumerate() {
        if !mergeable(id) {
            continue;
        }
        for (at, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(at);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                ranked.push((id, l, r));
            }
        }
    }
    ranked.sort_by(|a, b| {
        scores[b.0]
            .total_cmp(&scores[a.0])
            .then_with(|| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)))
    });
    ranked
        .into_iter()
        .map(|(_, l, r)| (vocab.tokens[l].clone(), vocab.tokens[r].clone()))
        .collect()
}

/// `[BOS] $A [EOS]` (pair: `[BOS] $A [EOS] [BOS] $B [EOS]`, as Llama's tokenizer.json does),
/// with each of BOS/EOS only if asked for; `None` when neither is.
fn special_token_template(
    vocab: &Vocab,
    bos: Option<(&str, Option<u32>)>,
    eos: Option<(&str, Option<u32>)>,
) -> Result<Option<TemplateProcessing>> {
    // Template ids are names of our own, so token strings containing ':' or spaces are safe.
    let mut specials = Vec::new();
    for (name, wanted) in [("BOS", bos), ("EOS", eos)] {
        let Some((key, id)) = wanted else { continue };
        let id = id.ok_or_else(|| {
            let add_key = if name == "BOS" {
                KEY_ADD_BOS
            } else {
                KEY_ADD_EOS
            };
            anyhow!("GGUF metadata `{add_key}` is true but `{key}` is missing")
        })?;
        let token = vocab.tokens[id as usize].clone();
        let special = SpecialToken::new(name.to_owned(), vec![id], vec![token])
            .map_err(|e| anyhow!("special token `{key}`: {e}"))?;
        specials.push((name, special));
    }
    if specials.is_empty() {
        return Ok(None);
    }

    let has = |name: &str| specials.iter().any(|(n, _)| *n == name);
    let sequence = |seq: &str, type_id: u32| {
        let mut pieces = Vec::new();
        if has("BOS") {
            pieces.push(format!("BOS:{type_id}"));
        }
        pieces.push(format!("${seq}:{type_id}"));
        if has("EOS") {
            pieces.push(format!("EOS:{type_id}"));
        }
        pieces.join(" ")
    };
    let single = sequence("A", 0);
    let pair = format!("{single} {}", sequence("B", 1));
    let template = TemplateProcessing::builder()
        .try_single(single)
        .map_err(|e| anyhow!("BOS/EOS template: {e}"))?
        .try_pair(pair)
        .map_err(|e| anyhow!("BOS/EOS template: {e}"))?
        .special_tokens(specials.into_iter().map(|(_, s)| s).collect::<Vec<_>>())
        .build()
        .map_err(|e| anyhow!("BOS/EOS template: {e}"))?;
    Ok(Some(template))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};

    fn strings(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
    }

    fn content(metadata: Vec<(&str, Value)>) -> Content {
        Content {
            magic: VersionedMagic::GgufV3,
            metadata: metadata
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        }
    }

    /// Five tokens: a control token, "a", "b", "ab" (one merge) and "Ġ" (a space).
    fn tiny_gpt2() -> Vec<(&'static str, Value)> {
        vec![
            (KEY_MODEL, Value::String("gpt2".into())),
            (KEY_PRE, Value::String("gpt-2".into())),
            (KEY_TOKENS, strings(&["<|endoftext|>", "a", "b", "ab", "Ġ"])),
            (
                KEY_TOKEN_TYPE,
                Value::Array([3, 1, 1, 1, 1].into_iter().map(Value::I32).collect()),
            ),
            (KEY_MERGES, strings(&["a b"])),
            (KEY_EOS, Value::U32(0)),
            (KEY_CHAT_TEMPLATE, Value::String("{{ messages }}".into())),
        ]
    }

    /// SentencePiece vocabulary with scores favouring "ab" over "▁a", and two byte tokens.
    fn tiny_llama() -> Vec<(&'static str, Value)> {
        let tokens = [
            "<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab", "▁ab", "<0xC3>", "<0xA9>",
        ];
        let types = [2, 3, 3, 1, 1, 1, 1, 1, 1, 6, 6];
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -1.5, -0.5, -0.2, 0.0, 0.0];
        vec![
            (KEY_MODEL, Value::String("llama".into())),
            (KEY_TOKENS, strings(&tokens)),
            (
                KEY_TOKEN_TYPE,
                Value::Array(types.into_iter().map(Value::I32).collect()),
            ),
            (
                KEY_SCORES,
                Value::Array(scores.into_iter().map(Value::F32).collect()),
            ),
            (KEY_BOS, Value::U32(1)),
            (KEY_EOS, Value::U32(2)),
            (KEY_UNK, Value::U32(0)),
        ]
    }

    fn ids(t: &Tokenizer, text: &str, add_special_tokens: bool) -> Vec<u32> {
        t.encode(text, add_special_tokens)
            .map_err(anyhow::Error::msg)
            .unwrap()
            .get_ids()
            .to_vec()
    }

    fn error_of(metadata: Vec<(&str, Value)>) -> String {
        match tokenizer_from_gguf(&content(metadata)) {
            Ok(_) => panic!("expected an error"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn with(
        mut metadata: Vec<(&'static str, Value)>,
        key: &'static str,
        value: Option<Value>,
    ) -> Vec<(&'static str, Value)> {
        metadata.retain(|(k, _)| *k != key);
        metadata.extend(value.map(|v| (key, v)));
        metadata
    }

    #[test]
    fn gpt2_tiny_vocab_merges_and_keeps_control_tokens_whole() {
        let gguf = tokenizer_from_gguf(&content(tiny_gpt2())).unwrap();
        let t = &gguf.tokenizer;
        assert_eq!(ids(t, "ab", true), [3], "no BOS for gpt2 by default");
        assert_eq!(ids(t, "a b", false), [1, 4, 2]);
        assert_eq!(ids(t, " ab", false), [4, 3]);
        assert_eq!(ids(t, "ab<|endoftext|>ab", false), [3, 0, 3]);
        assert_eq!(
            t.decode(&[3, 0, 4, 3], false).unwrap(),
            "ab<|endoftext|> ab"
        );
        assert_eq!(t.decode(&[3, 0, 4, 3], true).unwrap(), "ab ab");
        assert_eq!(gguf.bos_token_id, None);
        assert_eq!(gguf.eos_token_id, Some(0));
        assert_eq!(gguf.chat_template.as_deref(), Some("{{ messages }}"));
    }

    #[test]
    fn gpt2_add_bos_token_prepends_bos() {
        let md = with(tiny_gpt2(), KEY_BOS, Some(Value::U32(0)));
        let md = with(md, KEY_ADD_BOS, Some(Value::Bool(true)));
        let gguf = tokenizer_from_gguf(&content(md)).unwrap();
        assert_eq!(ids(&gguf.tokenizer, "ab", true), [0, 3]);
        assert_eq!(ids(&gguf.tokenizer, "ab", false), [3]);
    }

    #[test]
    fn smollm_pre_tokenizer_splits_digits() {
        let md = with(tiny_gpt2(), KEY_PRE, Some(Value::String("smollm".into())));
        let md = with(md, KEY_TOKENS, Some(strings(&["1", "2", "12", "a", "b"])));
        let md = with(md, KEY_TOKEN_TYPE, None);
        let md = with(md, KEY_EOS, None);
        let md = with(md, KEY_MERGES, Some(strings(&["1 2"])));
        let smollm = tokenizer_from_gguf(&content(md.clone())).unwrap();
        assert_eq!(ids(&smollm.tokenizer, "12", false), [0, 1]);
        let gpt2 = with(md, KEY_PRE, Some(Value::String("gpt-2".into())));
        let gpt2 = tokenizer_from_gguf(&content(gpt2)).unwrap();
        assert_eq!(ids(&gpt2.tokenizer, "12", false), [2]);
    }

    #[test]
    fn llama_merges_by_score_with_bos_and_byte_fallback() {
        let gguf = tokenizer_from_gguf(&content(tiny_llama())).unwrap();
        let t = &gguf.tokenizer;
        // "▁ab": "ab" (-0.5) merges before "▁a" (-1.5), then "▁ab" (-0.2).
        assert_eq!(ids(t, "ab", true), [1, 8], "BOS by default for llama");
        assert_eq!(ids(t, "ab ab", false), [8, 8]);
        assert_eq!(ids(t, "é", false), [3, 9, 10]);
        assert_eq!(ids(t, "<s>ab", false), [1, 8]);
        assert_eq!(t.decode(&[1, 8, 8], true).unwrap(), "ab ab");
        assert_eq!(t.decode(&[3, 9, 10], true).unwrap(), "é");
        assert_eq!(
            merges_from_scores(
                &Vocab::read(&Metadata(&content(tiny_llama()).metadata)).unwrap(),
                &[0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -1.5, -0.5, -0.2, 0.0, 0.0]
            ),
            [("▁", "ab"), ("▁a", "b"), ("a", "b"), ("▁", "a")]
                .map(|(l, r)| (l.to_owned(), r.to_owned()))
        );
    }

    #[test]
    fn llama_add_bos_false_and_no_space_prefix() {
        let md = with(tiny_llama(), KEY_ADD_BOS, Some(Value::Bool(false)));
        let md = with(md, KEY_ADD_SPACE_PREFIX, Some(Value::Bool(false)));
        let t = tokenizer_from_gguf(&content(md)).unwrap().tokenizer;
        assert_eq!(ids(&t, "ab", true), [7]);
        assert_eq!(ids(&t, " ab", true), [8]);
        assert_eq!(t.decode(&[8], false).unwrap(), " ab");
    }

    #[test]
    fn unknown_model_is_rejected_by_name() {
        let md = with(tiny_gpt2(), KEY_MODEL, Some(Value::String("bert".into())));
        assert_eq!(
            error_of(md),
            "unsupported GGUF tokenizer model \"bert\" (supported: gpt2, llama)"
        );
    }

    #[test]
    fn bad_metadata_errors_name_the_key() {
        let cases = [
            (with(tiny_gpt2(), KEY_MODEL, None), KEY_MODEL),
            (with(tiny_gpt2(), KEY_TOKENS, None), KEY_TOKENS),
            (
                with(
                    tiny_gpt2(),
                    KEY_TOKENS,
                    Some(Value::Array(vec![Value::U8(1)])),
                ),
                KEY_TOKENS,
            ),
            (
                with(tiny_gpt2(), KEY_TOKENS, Some(Value::String("a".into()))),
                KEY_TOKENS,
            ),
            (with(tiny_gpt2(), KEY_MERGES, None), KEY_MERGES),
            (
                with(tiny_gpt2(), KEY_MERGES, Some(strings(&["ab"]))),
                KEY_MERGES,
            ),
            (
                with(tiny_gpt2(), KEY_MERGES, Some(strings(&["a c"]))),
                KEY_MERGES,
            ),
            (
                with(
                    tiny_gpt2(),
                    KEY_MERGES,
                    Some(Value::Array(vec![Value::U32(1)])),
                ),
                KEY_MERGES,
            ),
            (with(tiny_gpt2(), KEY_EOS, Some(Value::U32(5))), KEY_EOS),
            (with(tiny_gpt2(), KEY_EOS, Some(Value::I32(-1))), KEY_EOS),
            (
                with(tiny_gpt2(), KEY_EOS, Some(Value::String("0".into()))),
                KEY_EOS,
            ),
            (
                with(tiny_gpt2(), KEY_TOKEN_TYPE, Some(Value::Array(vec![]))),
                KEY_TOKEN_TYPE,
            ),
            (
                with(tiny_gpt2(), KEY_ADD_BOS, Some(Value::Bool(true))),
                KEY_BOS,
            ),
            (with(tiny_llama(), KEY_SCORES, None), KEY_SCORES),
            (
                with(
                    tiny_llama(),
                    KEY_SCORES,
                    Some(Value::Array(vec![Value::F32(0.0)])),
                ),
                KEY_SCORES,
            ),
            (
                with(tiny_llama(), KEY_UNK, Some(Value::U64(u64::MAX))),
                KEY_UNK,
            ),
            (
                with(tiny_gpt2(), KEY_CHAT_TEMPLATE, Some(Value::Bool(true))),
                KEY_CHAT_TEMPLATE,
            ),
        ];
        for (md, key) in cases {
            let err = error_of(md);
            assert!(err.contains(key), "error {err:?} should name `{key}`");
        }
    }
}
