//! Per-layer key/value cache. After a pruned prefill the layers hold different numbers of
//! tokens: each layer keeps exactly the tokens it saw, with their original positions.

use candle_core::{Result, Tensor};

/// Keys and values of one layer, in a buffer with spare room so decode appends are amortised
/// O(1) copies instead of re-concatenating the whole cache every token.
///
/// Not `Clone`: appends write into the buffer in place, so two handles on one buffer would
/// overwrite each other's entries.
#[derive(Debug, Default)]
pub struct LayerCache {
    /// (1, kv_heads, capacity, head_dim) buffers; only the first `positions.len()` slots hold data.
    k: Option<Tensor>,
    v: Option<Tensor>,
    positions: Vec<u32>,
}

impl LayerCache {
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Original token positions of the cached entries, in order.
    pub fn positions(&self) -> &[u32] {
        &self.positions
    }

    /// Appends `k`/`v` of shape (1, kv_heads, t, head_dim) for tokens at `positions` and
    /// returns views of the whole cached keys and values.
    pub fn append(
        &mut self,
        k: &Tensor,
        v: &Tensor,
        positions: &[u32],
    ) -> Result<(Tensor, Tensor)> {
        let (_, _, t, _) = k.dims4()?;
        if t != positions.len() {
            candle_core::bail!(
                "cache append of {t} keys with {} positions",
                positions.len()
            );
        }
        let len = self.len();
        if len == 0 {
            // A prefill's keys and values become the buffer as they are: no zeroed buffer and
            // no second copy (the first decode append grows it).
            let (k, v) = (k.contiguous()?, v.contiguous()?);
            self.k = Some(k.clone());
            self.v = Some(v.clone());
            self.positions.extend_from_slice(positions);
            return Ok((k, v));
        }
        let needed = len + t;
        let capacity = self.k.as_ref().map_or(Ok(0), |b| b.dim(2))?;
        if needed > capacity {
            let new_capacity = grown_capacity(capacity, needed);
            self.k = Some(grow(self.k.as_ref(), k, len, new_capacity)?);
            self.v = Some(grow(self.v.as_ref(), v, len, new_capacity)?);
        }
        let (kb, vb) = match (&self.k, &self.v) {
            (Some(kb), Some(vb)) => (kb, vb),
            _ => candle_core::bail!("cache buffers missing after growth"),
        };
        kb.slice_set(&k.contiguous()?, 2, len)?;
        vb.slice_set(&v.contiguous()?, 2, len)?;
        self.positions.extend_from_slice(positions);
        Ok((kb.narrow(2, 0, needed)?, vb.narrow(2, 0, needed)?))
    }

    /// Entries the buffers can hold before they must grow.
    pub fn capacity(&self) -> Result<usize> {
        self.k.as_ref().map_or(Ok(0), |b| b.dim(2))
    }

    /// Makes room for `extra` more entries without moving the buffers again until then: a
    /// device-resident decode step writes into the buffers at the address it was recorded
    /// with. Fails on an empty cache (there is no shape to grow from).
    pub fn reserve(&mut self, extra: usize) -> Result<()> {
        let (len, capacity) = (self.len(), self.capacity()?);
        if len + extra <= capacity {
            return Ok(());
        }
        let (Some(k), Some(v)) = (&self.k, &self.v) else {
            candle_core::bail!("cannot reserve room in an empty layer cache");
        };
        let (k, v) = (k.clone(), v.clone());
        self.k = Some(grow(Some(&k), &k, len, len + extra)?);
        self.v = Some(grow(Some(&v), &v, len, len + extra)?);
        Ok(())
    }

    /// The whole (1, kv_heads, capacity, head_dim) key and value buffers, spare room
    /// included, for kernels that read the length from elsewhere.
    pub fn buffers(&self) -> Option<(&Tensor, &Tensor)> {
        self.k.as_ref().zip(self.v.as_ref())
    }

    /// Records an entry at `position` that a device kernel wrote into the buffers at index
    /// `len()` (the CUDA decode step's cache write, `model::decode_attention`).
    pub fn note_written(&mut self, position: u32) -> Result<()> {
        if self.len() >= self.capacity()? {
            candle_core::bail!("cache entry written past the capacity of {}", self.len());
        }
        self.positions.push(position);
        Ok(())
    }

    /// Bytes held by the cached entries (not the spare capacity).
    pub fn bytes(&self) -> usize {
        match &self.k {
            Some(k) => {
                let (_, heads, _, dim) = k.dims4().unwrap_or((0, 0, 0, 0));
                2 * heads * self.len() * dim * k.dtype().size_in_bytes()
            }
            None => 0,
        }
    }
}

/// Room for `needed` entries and then some: an eighth more (at least 256), so decode appends
/// copy the cache O(1) times per eighth of its length, while a long prompt's cache never
/// doubles (at 128K tokens a doubled Llama-2-7B cache would need another 68 GB).
fn grown_capacity(capacity: usize, needed: usize) -> usize {
    needed.max(capacity + (capacity / 8).max(256))
}

/// A new (1, heads, capacity, dim) buffer holding the first `len` entries of `old`.
fn grow(old: Option<&Tensor>, like: &Tensor, len: usize, capacity: usize) -> Result<Tensor> {
    let (b, heads, _, dim) = like.dims4()?;
    let buffer = Tensor::zeros((b, heads, capacity, dim), like.dtype(), like.device())?;
    if let Some(old) = old {
        if len > 0 {
            buffer.slice_set(&old.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
        }
    }
    Ok(buffer)
}

/// The caches of all layers of one sequence.
#[derive(Debug)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| LayerCache::default()).collect(),
        }
    }

    pub fn layer_lens(&self) -> Vec<usize> {
        self.layers.iter().map(LayerCache::len).collect()
    }

    pub fn bytes(&self) -> usize {
        self.layers.iter().map(LayerCache::bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn appends_grow_and_keep_earlier_entries() -> Result<()> {
        let dev = Device::Cpu;
        let mut cache = LayerCache::default();
        let first = Tensor::arange(0f32, 40.0, &dev)?.reshape((1, 2, 10, 2))?;
        cache.append(&first, &first, &(0..10).collect::<Vec<_>>())?;
        let mut last = None;
        for step in 0..20u32 {
            let t = Tensor::full(step as f32, (1, 2, 1, 2), &dev)?;
            last = Some(cache.append(&t, &t, &[100 + step])?);
        }
        let (k, _) = last.unwrap();
        assert_eq!(k.dims4()?, (1, 2, 30, 2));
        assert_eq!(cache.len(), 30);
        let head0 = k.narrow(1, 0, 1)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(&head0[..4], &[0.0, 1.0, 2.0, 3.0]);
        assert_eq!(head0[58], 19.0);
        assert_eq!(cache.positions()[10], 100);
        assert_eq!(cache.bytes(), 2 * 2 * 30 * 2 * DType::F32.size_in_bytes());
        Ok(())
    }

    #[test]
    fn long_caches_grow_by_an_eighth_not_by_doubling() {
        assert_eq!(grown_capacity(1000, 1001), 1256);
        assert_eq!(grown_capacity(65536, 65537), 65536 + 8192);
        assert_eq!(grown_capacity(0, 5000), 5000);
    }

    #[test]
    fn mismatched_positions_are_an_error() -> Result<()> {
        let t = Tensor::zeros((1, 2, 3, 2), DType::F32, &Device::Cpu)?;
        assert!(LayerCache::default().append(&t, &t, &[0, 1]).is_err());
        Ok(())
    }
}
