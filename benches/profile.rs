//! Micro-benchmarks of the pieces a pruned prefill spends its time in, at 1K and 4K tokens on
//! the tiny synthetic model (6 layers, hidden 64, 4 heads): one layer forward, the scorers,
//! `apply_token_pruning`, and whole prefills with and without pruning.
//!
//! Run: `cargo bench --bench profile` (add `-- layer` to filter by name).
//! These time the code, not a model: use `sdtp profile` for model-level numbers.

use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use divan::Bencher;
use sdtp::model::attention::{causal_attention, causal_attention_with, tail_attention};
use sdtp::model::cache::LayerCache;
use sdtp::model::kernels::Kernels;
use sdtp::model::llama::{Llama, Positions};
use sdtp::model::load::{load_model, ModelSource};
use sdtp::model::text::{SentenceEnds, TextCodec};
use sdtp::prefill::{prefill_with_pruning, PrefillOptions};
use sdtp::prune::schedule::PruneSchedule;
use sdtp::prune::scorer::{build_scorer, NormScorer, ScoreInput, Scorer};
use sdtp::prune::select::{apply_token_pruning, mandatory_tail_len};

const LENGTHS: [usize; 2] = [1024, 4096];
const SEED: u64 = 299_792_458;

fn main() {
    divan::main();
}

fn tiny() -> &'static Llama {
    static MODEL: OnceLock<Llama> = OnceLock::new();
    MODEL.get_or_init(|| {
        let source = ModelSource::Synthetic("tiny".to_string());
        load_model(&source, &Device::Cpu, DType::F32, SEED)
            .expect("synthetic:tiny loads")
            .model
    })
}

/// Byte-like ids, as the synthetic model's codec would give.
fn ids(len: usize) -> Vec<u32> {
    (0..len as u32).map(|i| 32 + i % 90).collect()
}

fn inputs(len: usize) -> (Tensor, Positions) {
    let model = tiny();
    let hidden = model.embed(&ids(len)).expect("embed");
    let positions = model
        .positions((0..len as u32).collect())
        .expect("positions");
    (hidden, positions)
}

/// Layer 0 over `len` fresh tokens, as in the prefill (empty cache).
#[divan::bench(args = LENGTHS, sample_count = 30)]
fn layer_forward(bencher: Bencher, len: usize) {
    let model = tiny();
    let (hidden, positions) = inputs(len);
    bencher.bench_local(|| {
        let mut cache = LayerCache::default();
        model.layers()[0]
            .forward(&hidden, &positions, model.rope(), &mut cache, None)
            .expect("forward")
    });
}

/// The same layer also reporting the attention of the last 10% of queries: what a pruning
/// layer costs with the attention scorer.
#[divan::bench(args = LENGTHS, sample_count = 30)]
fn layer_forward_with_tail_attention(bencher: Bencher, len: usize) {
    let model = tiny();
    let (hidden, positions) = inputs(len);
    let tail = mandatory_tail_len(len, 0.1);
    bencher.bench_local(|| {
        let mut cache = LayerCache::default();
        model.layers()[0]
            .forward(&hidden, &positions, model.rope(), &mut cache, Some(tail))
            .expect("forward")
    });
}

/// Q, K and V of one layer over a fresh prompt at SmolLM2-135M's shape (9 query heads, 3
/// key/value heads, head size 64), f32 on the CPU.
fn smollm2_qkv(len: usize) -> (Tensor, Tensor, Tensor) {
    let tensor =
        |heads: usize| Tensor::randn(0f32, 1.0, (1, heads, len, 64), &Device::Cpu).expect("randn");
    (tensor(9), tensor(3), tensor(3))
}

/// Causal attention as the CPU prefill runs it (`model::cpu_attention`, tiled, no score
/// matrix): the part of a long CPU prefill that grows with the square of the length.
#[divan::bench(args = LENGTHS, sample_count = 10)]
fn attention_causal_smollm2(bencher: Bencher, len: usize) {
    let (q, k, v) = smollm2_qkv(len);
    bencher.bench_local(|| causal_attention(&q, &k, &v).expect("attention"));
}

/// The same through candle's ops a block of queries at a time (mask, softmax, products): the
/// path before `model::cpu_attention`, still the one training differentiates through.
#[divan::bench(args = LENGTHS, sample_count = 10)]
fn attention_blocked_smollm2(bencher: Bencher, len: usize) {
    let (q, k, v) = smollm2_qkv(len);
    bencher.bench_local(|| causal_attention_with(&q, &k, &v, Kernels::Fast).expect("attention"));
}

/// The legacy attention scorer's device work: per-head mean attention of the last 10% of
/// queries over all keys.
#[divan::bench(args = LENGTHS, sample_count = 30)]
fn scorer_attention(bencher: Bencher, len: usize) {
    let cfg = tiny().config();
    let q = Tensor::randn(
        0f32,
        1.0,
        (1, cfg.num_attention_heads, len, cfg.head_dim),
        &Device::Cpu,
    )
    .expect("q");
    let k = Tensor::randn(
        0f32,
        1.0,
        (1, cfg.num_key_value_heads, len, cfg.head_dim),
        &Device::Cpu,
    )
    .expect("k");
    let tail = mandatory_tail_len(len, 0.1);
    bencher.bench_local(|| {
        tail_attention(&q, &k, tail)
            .and_then(|t| t.to_vec2::<f32>())
            .expect("tail attention")
    });
}

/// The default attention scorer's host work per stage (what runs while the device runs the
/// MLP): the preset's max-pool, whole sentences (of ~27 bytes-as-tokens), rank, carry, over
/// `len` tokens.
#[divan::bench(args = LENGTHS)]
fn scorer_attention_refine(bencher: Bencher, len: usize) {
    let preset = PruneSchedule::preset("keep09", 32)
        .expect("preset")
        .schedule;
    let cfg = tiny().config();
    let mut scorer = build_scorer(&preset, cfg, &Device::Cpu, 0).expect("scorer");
    let ends = SentenceEnds::from_codec(&TextCodec::Bytes, 256);
    let ids: Vec<u32> = "The quick brown fox jumps. "
        .bytes()
        .cycle()
        .take(len)
        .map(u32::from)
        .collect();
    scorer.begin_prefill(&ids, Some(&ends));
    let positions: Vec<u32> = (0..len as u32).collect();
    let raw: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1009) as f32).collect();
    bencher.bench_local(|| {
        scorer
            .refine(raw.clone(), Some(&positions))
            .expect("refined")
    });
}

/// The norm scorer on a layer's output.
#[divan::bench(args = LENGTHS)]
fn scorer_norm(bencher: Bencher, len: usize) {
    let (hidden, _) = inputs(len);
    let mut scorer = NormScorer;
    bencher.bench_local(|| {
        scorer
            .score(&ScoreInput {
                layer: 1,
                hidden: &hidden,
                tail_attention: None,
                positions: None,
            })
            .expect("scores")
    });
}

/// Selection alone: keep 90% of `len` scored tokens (4 head, 10% tail protected).
#[divan::bench(args = LENGTHS)]
fn select_apply_token_pruning(bencher: Bencher, len: usize) {
    // Deterministic, unsorted scores.
    let scores: Vec<f32> = (0..len)
        .map(|i| ((i as u64 * 2_654_435_761) % 1_000_003) as f32)
        .collect();
    bencher.bench_local(|| apply_token_pruning(divan::black_box(&scores), 0.9, 4, 0.1));
}

fn prefill(bencher: Bencher, len: usize, schedule: &PruneSchedule) {
    let model = tiny();
    let input = ids(len);
    bencher.bench_local(|| {
        let mut scorer =
            build_scorer(schedule, model.config(), model.device(), SEED).expect("scorer");
        prefill_with_pruning(
            model,
            &input,
            schedule,
            scorer.as_mut(),
            &PrefillOptions::default(),
        )
        .expect("prefill")
        .final_len()
    });
}

/// The whole unpruned prefill (6 layers).
#[divan::bench(args = LENGTHS, sample_count = 10)]
fn prefill_baseline(bencher: Bencher, len: usize) {
    prefill(bencher, len, &PruneSchedule::none());
}

/// The whole prefill with keep09 mapped onto 6 layers and the attention scorer.
#[divan::bench(args = LENGTHS, sample_count = 10)]
fn prefill_keep09(bencher: Bencher, len: usize) {
    let mut schedule = PruneSchedule::preset("keep09", tiny().layers().len())
        .expect("keep09 fits")
        .schedule;
    schedule.scorer = Some(sdtp::prune::schedule::ScorerKind::Attention);
    prefill(bencher, len, &schedule);
}
