//! Analytic FLOP count of a prefill, pruned or not: the work the matmuls must do, whatever
//! the kernels make of it. The ratio baseline / pruned is the speedup pruning could give at
//! best (the "FLOP-ideal" speedup), printed beside the measured one.
//!
//! Counted (one multiply-add = 2 FLOPs), for a layer that sees `t` tokens:
//! - linear: `2·t·(hidden·(heads + 2·kv_heads)·head_dim + heads·head_dim·hidden + 3·hidden·intermediate)`
//!   (q/k/v projections, o_proj, gate/up/down of the SwiGLU MLP);
//! - causal attention: `2·2·heads·head_dim·t(t+1)/2` (QKᵀ and PV over the t(t+1)/2 visible
//!   query-key pairs among the tokens the layer kept);
//! - the lm_head on the last row only: `2·hidden·vocab`.
//!
//! Not counted: norms, RoPE, activations, softmax and the gathers (all O(t·hidden)).
//! The scorer's own work is counted apart (`scorer`) and left out of the FLOP-ideal ratio:
//! it is overhead that pruning pays, which is why the measured speedup may fall short.

use serde::{Deserialize, Serialize};

use crate::model::config::ModelConfig;
use crate::prefill::LayerStats;
use crate::prune::schedule::{AttentionScoring, PruneSchedule, ScorerKind};
use crate::prune::scorer::effective_scorer_kind;

/// The model dimensions the FLOP count depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlopShape {
    pub hidden: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub intermediate: u64,
    pub vocab: u64,
}

impl From<&ModelConfig> for FlopShape {
    fn from(c: &ModelConfig) -> Self {
        Self {
            hidden: c.hidden_size as u64,
            heads: c.num_attention_heads as u64,
            kv_heads: c.num_key_value_heads as u64,
            head_dim: c.head_dim as u64,
            intermediate: c.intermediate_size as u64,
            vocab: c.vocab_size as u64,
        }
    }
}

impl FlopShape {
    /// Projection and MLP FLOPs of one layer over `t` tokens.
    pub fn layer_linear(&self, t: u64) -> u64 {
        let qkv = self.hidden * (self.heads + 2 * self.kv_heads) * self.head_dim;
        let o = self.heads * self.head_dim * self.hidden;
        let mlp = 3 * self.hidden * self.intermediate;
        2 * t * (qkv + o + mlp)
    }

    /// Causal attention FLOPs (QKᵀ and PV) of one layer over `t` tokens.
    pub fn layer_attention(&self, t: u64) -> u64 {
        // 2·2·heads·head_dim·t(t+1)/2, with the halving done exactly on t(t+1) (always even).
        2 * self.heads * self.head_dim * (t * (t + 1))
    }

    /// The lm_head on one row.
    pub fn lm_head_row(&self) -> u64 {
        2 * self.hidden * self.vocab
    }
}

/// FLOPs of one prefill, split by where they go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PrefillFlops {
    pub linear: u64,
    pub attention: u64,
    pub lm_head: u64,
    /// The scorer's work at the pruning stages (0 for the baseline); not part of `model`.
    pub scorer: u64,
    /// linear + attention + lm_head: the number the FLOP-ideal speedup compares.
    pub model: u64,
}

/// What a scorer costs, for [`prefill_flops`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScorerCost {
    pub kind: ScorerKind,
    pub min_tail_ratio: f64,
    pub attention: AttentionScoring,
}

impl ScorerCost {
    /// The cost of `schedule`'s scorer; `None` when it prunes nothing.
    pub fn of(schedule: &PruneSchedule) -> Option<Self> {
        (!schedule.stages.is_empty()).then(|| Self {
            kind: effective_scorer_kind(schedule),
            min_tail_ratio: schedule.min_tail_ratio,
            attention: schedule.attention,
        })
    }
}

/// FLOPs of a prefill whose layer `i` saw `stats[i].tokens_in` tokens. Pass the stats of the
/// run itself, so the count follows the tokens each layer really kept.
pub fn prefill_flops(
    shape: &FlopShape,
    stats: &[LayerStats],
    scorer: Option<ScorerCost>,
) -> PrefillFlops {
    let mut flops = PrefillFlops {
        lm_head: shape.lm_head_row(),
        ..PrefillFlops::default()
    };
    for layer in stats {
        let t = layer.tokens_in as u64;
        flops.linear += shape.layer_linear(t);
        flops.attention += shape.layer_attention(t);
        if let (Some(_), Some(cost)) = (layer.stage_keep_ratio, scorer) {
            flops.scorer += scorer_stage(shape, layer.tokens_in, cost);
        }
    }
    flops.model = flops.linear + flops.attention + flops.lm_head;
    flops
}

/// One pruning stage's scoring over `n` tokens.
fn scorer_stage(shape: &FlopShape, n: usize, cost: ScorerCost) -> u64 {
    let t = n as u64;
    match cost.kind {
        // The scoring queries (the window, or the protected tail) against every key: QKᵀ
        // only.
        ScorerKind::Attention => {
            let m = cost.attention.queries(n, cost.min_tail_ratio) as u64;
            2 * shape.heads * shape.head_dim * m * t
        }
        // hidden → hidden/4 → 1 per token.
        ScorerKind::Learned => {
            let inner = shape.hidden / 4;
            2 * t * (shape.hidden * inner + inner)
        }
        // Square and sum per element.
        ScorerKind::Norm => 2 * t * shape.hidden,
        ScorerKind::Random => 0,
    }
}

/// Converts FLOPs to GFLOPs for tables.
pub fn gflops(flops: u64) -> f64 {
    flops as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> FlopShape {
        FlopShape {
            hidden: 8,
            heads: 2,
            kv_heads: 1,
            head_dim: 4,
            intermediate: 16,
            vocab: 10,
        }
    }

    fn layer(tokens_in: usize, stage: Option<f64>) -> LayerStats {
        LayerStats {
            layer: 0,
            tokens_in,
            tokens_out: tokens_in,
            stage_keep_ratio: stage,
            scores: None,
            wall_ms: None,
        }
    }

    #[test]
    fn one_layer_by_hand() {
        let s = shape();
        // qkv: 8·(2+2)·4 = 128; o: 2·4·8 = 64; mlp: 3·8·16 = 384; sum 576; ×2×t(3) = 3456.
        assert_eq!(s.layer_linear(3), 3456);
        // Pairs 3·4/2 = 6; per pair 2·2·heads(2)·head_dim(4) = 32 → 192.
        assert_eq!(s.layer_attention(3), 192);
        assert_eq!(s.lm_head_row(), 160);
        let f = prefill_flops(&s, &[layer(3, None)], None);
        assert_eq!(f.model, 3456 + 192 + 160);
        assert_eq!(f.scorer, 0);
    }

    #[test]
    fn pruned_layers_count_their_own_tokens() {
        let s = shape();
        let stats = [layer(10, Some(0.5)), layer(5, None)];
        let cost = ScorerCost {
            kind: ScorerKind::Attention,
            min_tail_ratio: 0.1,
            attention: AttentionScoring::LEGACY,
        };
        let f = prefill_flops(&s, &stats, Some(cost));
        assert_eq!(f.linear, s.layer_linear(10) + s.layer_linear(5));
        assert_eq!(f.attention, 2 * 2 * 4 * (110 + 30));
        // Tail of ceil(0.1·10) = 1 query over 10 keys, scored only at the stage layer.
        assert_eq!(f.scorer, 2 * 2 * 4 * 10);
        // A window of 32 queries is cut to the 10 tokens present.
        let windowed = ScorerCost {
            attention: AttentionScoring::default(),
            ..cost
        };
        let w = prefill_flops(&s, &stats, Some(windowed));
        assert_eq!(w.scorer, 2 * 2 * 4 * 10 * 10);
        let baseline = prefill_flops(&s, &[layer(10, None), layer(10, None)], None);
        assert!(baseline.model > f.model);
    }
}
