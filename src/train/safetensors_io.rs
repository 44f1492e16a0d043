//! Small safetensors helpers: writing raw tensors with metadata (candle's writer stores no
//! metadata) through the one atomic writer, and reading a file's metadata from its header
//! alone.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use half::f16;
use safetensors::tensor::{Dtype, View};

use crate::report::write_atomic;

/// A tensor as little-endian bytes, ready to serialise.
pub struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl RawTensor {
    pub fn f32(shape: Vec<usize>, values: &[f32]) -> Self {
        Self {
            dtype: Dtype::F32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// Stored as f16 (half the bytes; hidden states need no more for a predictor's input).
    pub fn f16(shape: Vec<usize>, values: &[f32]) -> Self {
        Self {
            dtype: Dtype::F16,
            shape,
            data: values
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                .collect(),
        }
    }

    pub fn u32(shape: Vec<usize>, values: &[u32]) -> Self {
        Self {
            dtype: Dtype::U32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

impl View for &RawTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes `tensors` with `metadata` to `path` with `crate::report::write_atomic`, so a file
/// at `path` is always complete (an interrupted run leaves at most a `.tmp` beside it).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, RawTensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let bytes =
        safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), Some(metadata))
            .with_context(|| format!("cannot serialise {}", path.display()))?;
    write_atomic(path, &bytes)
}

/// The `__metadata__` of a safetensors file, read from its header only.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        bail!(
            "{} is not a safetensors file (header length {len})",
            path.display()
        );
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let metadata = header
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn round_trip_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let tensors = vec![
            ("a".to_string(), RawTensor::f32(vec![2], &[1.5, -2.0])),
            ("b".to_string(), RawTensor::f16(vec![1, 2], &[0.25, 3.0])),
            ("c".to_string(), RawTensor::u32(vec![3], &[7, 8, 9])),
        ];
        let md = HashMap::from([("k".to_string(), "v".to_string())]);
        write_safetensors(&path, &tensors, md.clone()).unwrap();
        assert_eq!(read_metadata(&path).unwrap(), md);
        let loaded = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert_eq!(loaded["a"].to_vec1::<f32>().unwrap(), [1.5, -2.0]);
        assert_eq!(loaded["b"].dtype(), DType::F16);
        let b = loaded["b"].to_dtype(DType::F32).unwrap();
        assert_eq!(b.to_vec2::<f32>().unwrap(), [[0.25, 3.0]]);
        assert_eq!(loaded["c"].to_vec1::<u32>().unwrap(), [7, 8, 9]);
        assert!(!dir.path().join("t.safetensors.tmp").exists());
        std::fs::write(dir.path().join("junk"), b"no").unwrap();
        assert!(read_metadata(&dir.path().join("junk")).is_err());
    }
}
