//! Typed access to the metadata of a GGUF file, each error naming the key: the one reader
//! behind `ModelConfig::from_gguf` (`general.*`, `llama.*`) and the tokenizer rebuilt from
//! `tokenizer.ggml.*`.
//!
//! The two ask in two ways, each with its own wording of the errors: the config's values are
//! required (`required_*`, an error when missing or mistyped; the config falls back to a
//! default where it chooses to), the tokenizer's are optional (`None` when missing, an error
//! when mistyped).

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::Value;

/// Typed, key-naming access to GGUF metadata.
pub(super) struct Metadata<'a>(pub(super) &'a HashMap<String, Value>);

/// The config's values: an error when missing or mistyped.
impl Metadata<'_> {
    /// The value of `key`, an error when it is missing.
    pub(super) fn required(&self, key: &str) -> Result<&Value> {
        self.0
            .get(key)
            .with_context(|| format!("GGUF metadata key {key} is missing"))
    }

    pub(super) fn required_string(&self, key: &str) -> Result<String> {
        Ok(self
            .required(key)?
            .to_string()
            .with_context(|| format!("GGUF metadata key {key} is not a string"))?
            .clone())
    }

    /// Any non-negative integer type.
    pub(super) fn required_usize(&self, key: &str) -> Result<usize> {
        let Some(n) = integer(self.required(key)?).and_then(|n| u64::try_from(n).ok()) else {
            bail!("GGUF metadata key {key} is not a non-negative integer");
        };
        usize::try_from(n).with_context(|| format!("GGUF metadata key {key} is too large"))
    }

    pub(super) fn required_f64(&self, key: &str) -> Result<f64> {
        match self.required(key)? {
            Value::F32(v) => Ok(*v as f64),
            Value::F64(v) => Ok(*v),
            _ => bail!("GGUF metadata key {key} is not a float"),
        }
    }
}

/// The tokenizer's values: `None` when missing, an error when mistyped.
impl Metadata<'_> {
    pub(super) fn string(&self, key: &str) -> Result<Option<&str>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => bail!(
                "GGUF metadata `{key}` must be a string, found {:?}",
                v.value_type()
            ),
        }
    }

    pub(super) fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => bail!(
                "GGUF metadata `{key}` must be a bool, found {:?}",
                v.value_type()
            ),
        }
    }

    /// A token id, checked against the vocabulary size.
    pub(super) fn token_id(&self, key: &str, vocab_size: usize) -> Result<Option<u32>> {
        let Some(value) = self.0.get(key) else {
            return Ok(None);
        };
        let id = integer(value).ok_or_else(|| {
            anyhow!(
                "GGUF metadata `{key}` must be an integer, found {:?}",
                value.value_type()
            )
        })?;
        match u32::try_from(id) {
            Ok(id) if (id as usize) < vocab_size => Ok(Some(id)),
            _ => bail!(
                "GGUF metadata `{key}` = {id} is out of range for a vocabulary of {vocab_size}"
            ),
        }
    }

    pub(super) fn array(&self, key: &str) -> Result<Option<&Vec<Value>>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Array(values)) => Ok(Some(values)),
            Some(v) => bail!(
                "GGUF metadata `{key}` must be an array, found {:?}",
                v.value_type()
            ),
        }
    }

    pub(super) fn strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        let Some(values) = self.array(key)? else {
            return Ok(None);
        };
        let strings = values
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                v => bail!(
                    "GGUF metadata `{key}` must be an array of strings, element {i} is {:?}",
                    v.value_type()
                ),
            })
            .collect::<Result<_>>()?;
        Ok(Some(strings))
    }

    pub(super) fn ints(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(values) = self.array(key)? else {
            return Ok(None);
        };
        let ints = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                integer(v).and_then(|x| i64::try_from(x).ok()).ok_or_else(|| {
                    anyhow!(
                        "GGUF metadata `{key}` must be an array of i64-range integers, element {i} is {:?}",
                        v.value_type()
                    )
                })
            })
            .collect::<Result<_>>()?;
        Ok(Some(ints))
    }

    pub(super) fn floats(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let Some(values) = self.array(key)? else {
            return Ok(None);
        };
        let floats = values
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::F32(x) => Ok(*x),
                Value::F64(x) => Ok(*x as f32),
                v => bail!(
                    "GGUF metadata `{key}` must be an array of floats, element {i} is {:?}",
                    v.value_type()
                ),
            })
            .collect::<Result<_>>()?;
        Ok(Some(floats))
    }
}

/// The error for a key the tokenizer needs and the file lacks.
pub(super) fn missing_key(key: &str) -> anyhow::Error {
    anyhow!("GGUF metadata key `{key}` is missing")
}

/// Any GGUF integer type, widened losslessly; `None` for non-integers.
fn integer(value: &Value) -> Option<i128> {
    match value {
        Value::U8(x) => Some(i128::from(*x)),
        Value::I8(x) => Some(i128::from(*x)),
        Value::U16(x) => Some(i128::from(*x)),
        Value::I16(x) => Some(i128::from(*x)),
        Value::U32(x) => Some(i128::from(*x)),
        Value::I32(x) => Some(i128::from(*x)),
        Value::U64(x) => Some(i128::from(*x)),
        Value::I64(x) => Some(i128::from(*x)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_values_name_the_key_in_their_errors() {
        let md: HashMap<String, Value> = [
            ("n", Value::I16(7)),
            ("negative", Value::I8(-1)),
            ("flag", Value::Bool(true)),
            ("eps", Value::F32(0.5)),
            ("name", Value::String("llama".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let md = Metadata(&md);
        let error = |r: Result<()>| r.unwrap_err().to_string();
        assert_eq!(md.required_usize("n").unwrap(), 7);
        assert_eq!(md.required_f64("eps").unwrap(), 0.5);
        assert_eq!(md.required_string("name").unwrap(), "llama");
        assert_eq!(
            error(md.required_usize("missing").map(drop)),
            "GGUF metadata key missing is missing"
        );
        for key in ["negative", "flag"] {
            assert_eq!(
                error(md.required_usize(key).map(drop)),
                format!("GGUF metadata key {key} is not a non-negative integer")
            );
        }
        assert_eq!(
            error(md.required_f64("n").map(drop)),
            "GGUF metadata key n is not a float"
        );
        assert_eq!(
            error(md.required_string("n").map(drop)),
            "GGUF metadata key n is not a string"
        );
    }
}
