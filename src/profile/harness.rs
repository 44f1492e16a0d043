//! The timing loop: every mode (the unpruned baseline and each schedule) through the same
//! `prefill_with_pruning` and `generate`, warm-up runs first, then the measured repetitions
//! with the modes alternating (ABBA) so that drift — thermal, frequency, page cache — hits
//! all of them alike.
//!
//! What one run times (the device is synchronised before every clock read):
//! - prefill: `prefill_with_pruning`, embedding through the last token's logits;
//! - TTFT: the prefill plus sampling the first token;
//! - decode: `generate`'s `decode_secs`, the first sampling and the following decode steps;
//! - total: the prefill start to the last token.
//!
//! Tokenisation, building the scorer, the memory probe and the prune log stay outside the
//! clock. Decoding is greedy and ignores end-of-sequence, so every run of a length generates
//! the same number of tokens.
//!
//! The decode bandwidth of an end2end run is its analytic bytes per decode step
//! (`metrics::bandwidth`: weights plus every layer's KV cache) × its decode tokens/s; its
//! roofline share is that over the copy rate the caller measured before the runs.

use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::ProgressBar;

use super::memory::PeakMemory;
use super::prompt::PromptSource;
use super::report::{Kept, MetricSummaries, ModeResult, Repetition, Speedup, StageCount};
use crate::device::synchronize;
use crate::generate::{generate, SamplingConfig};
use crate::metrics::bandwidth::{decode_bytes_per_token, kv_entry_bytes, DecodeBytes};
use crate::metrics::flops::{prefill_flops, FlopShape, ScorerCost};
use crate::metrics::summary::{ratio, Summary};
use crate::model::llama::Llama;
use crate::prefill::{prefill_with_pruning, LayerStats, PrefillOptions};
use crate::prune::scorer::build_scorer;
use crate::prune_log::{LayerRecord, PruneLog};
use crate::report::{Contender, BASELINE};

/// Which part of a request is profiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileKind {
    /// Prefill, then `new_tokens` decoded tokens.
    End2End { new_tokens: usize },
    /// Prefill and the first token only.
    Prefill,
}

impl ProfileKind {
    /// "end2end" or "prefill", as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::End2End { .. } => "end2end",
            Self::Prefill => "prefill",
        }
    }

    /// Tokens each run generates.
    pub fn generated_tokens(self) -> usize {
        match self {
            Self::End2End { new_tokens } => new_tokens,
            Self::Prefill => 1,
        }
    }
}

/// What the loop needs besides the model.
pub struct HarnessConfig<'a> {
    pub kind: ProfileKind,
    pub lengths: &'a [usize],
    pub repeats: usize,
    pub warmup: usize,
    pub seed: u64,
    /// Name of the model in prune-log records.
    pub model_name: &'a str,
    /// The device's copy rate in bytes/s (read + write, `device::copy_rate_bytes_per_s`),
    /// measured before the runs; the decode bandwidth's roofline share is taken of it.
    pub copy_rate_bytes_per_s: Option<f64>,
}

/// Where progress and per-layer records go.
pub struct Sinks<'a> {
    pub progress: &'a ProgressBar,
    /// Per-layer stats of every measured pruned prefill (not warm-ups, not the baseline).
    pub prune_log: Option<&'a mut PruneLog>,
    /// Prefix of the prune log's run ids.
    pub run_id: &'a str,
}

/// Measures every contender at every length; returns one result per (length, contender),
/// lengths in the order given, contenders in the order given (the baseline must be first).
pub fn run(
    model: &Llama,
    prompts: &PromptSource,
    contenders: &[Contender],
    config: &HarnessConfig,
    sinks: &mut Sinks,
) -> Result<Vec<ModeResult>> {
    let memory = PeakMemory::for_device(model.device());
    let shape = FlopShape::from(model.config());
    let read = DecodeReads::of(model);
    let mut results = Vec::new();
    for &length in config.lengths {
        let prompt = prompts.take(length);
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); contenders.len()];
        for round in 0..config.warmup + config.repeats {
            let measured = round.checked_sub(config.warmup);
            let mut order: Vec<usize> = (0..contenders.len()).collect();
            if measured.is_some_and(|m| m % 2 == 1) {
                order.reverse();
            }
            for (position, &c) in order.iter().enumerate() {
                let contender = &contenders[c];
                sinks.progress.set_message(format!(
                    "length {length} · {} · {}",
                    contender.info.mode,
                    match measured {
                        Some(m) => format!("repetition {}/{}", m + 1, config.repeats),
                        None => format!("warm-up {}/{}", round + 1, config.warmup),
                    }
                ));
                let run = run_once(model, &prompt.ids, contender, config, &memory, &read)
                    .with_context(|| format!("length {length}, {}", contender.info.mode))?;
                sinks.progress.inc(1);
                let Some(index) = measured else { continue };
                if let (Some(log), false) = (
                    sinks.prune_log.as_deref_mut(),
                    contender.schedule.stages.is_empty(),
                ) {
                    let run_id = format!(
                        "{}-L{length}-{}-r{index}",
                        sinks.run_id, contender.info.mode
                    );
                    for s in &run.stats {
                        log.append(&LayerRecord::from_stats(
                            &run_id,
                            config.model_name,
                            length,
                            s,
                        ))?;
                    }
                }
                runs[c].push(Run {
                    index,
                    position,
                    ..run
                });
            }
        }
        let first = results.len();
        for (contender, runs) in contenders.iter().zip(&runs) {
            results.push(summarise(
                length,
                prompt.tiled,
                contender,
                runs,
                &shape,
                config.copy_rate_bytes_per_s,
            )?);
        }
        add_speedups(&mut results[first..]);
    }
    Ok(results)
}

/// One measured (or warm-up) run.
#[derive(Debug, Clone)]
struct Run {
    index: usize,
    position: usize,
    prefill_secs: f64,
    ttft_secs: f64,
    decode_secs: Option<f64>,
    generated: usize,
    total_secs: f64,
    peak_memory: Option<u64>,
    kv_cache_bytes: u64,
    /// Bytes read per decode step; `None` without decode steps.
    decode_bytes: Option<DecodeBytes>,
    decode_path: Option<&'static str>,
    stats: Vec<LayerStats>,
    kept: Vec<StageCount>,
}

/// What every decode step of a model reads besides the cache lengths.
struct DecodeReads {
    weight_bytes: u64,
    /// Bytes of one cached token of one layer (key and value).
    entry_bytes: u64,
}

impl DecodeReads {
    fn of(model: &Llama) -> Self {
        let c = model.config();
        Self {
            weight_bytes: model.decode_weight_bytes() as u64,
            entry_bytes: kv_entry_bytes(
                c.num_key_value_heads,
                c.head_dim,
                model.dtype().size_in_bytes(),
            ),
        }
    }
}

fn run_once(
    model: &Llama,
    input_ids: &[u32],
    contender: &Contender,
    config: &HarnessConfig,
    memory: &PeakMemory,
    read: &DecodeReads,
) -> Result<Run> {
    let device = model.device();
    let schedule = &contender.schedule;
    let mut scorer = build_scorer(schedule, model.config(), device, config.seed)?;
    let sampling = SamplingConfig {
        seed: config.seed,
        ..SamplingConfig::default()
    };
    memory.start();

    synchronize(device)?;
    let started = Instant::now();
    let prefill = prefill_with_pruning(
        model,
        input_ids,
        schedule,
        scorer.as_mut(),
        &PrefillOptions::default(),
    )?;
    synchronize(device)?;
    let prefill_secs = started.elapsed().as_secs_f64();
    let kv_cache_bytes = prefill.cache.bytes() as u64;
    let layer_lens = prefill.cache.layer_lens();
    let stats = prefill.stats.clone();
    let mut first_token = None;
    let decoded = generate(
        model,
        input_ids,
        prefill,
        &sampling,
        config.kind.generated_tokens(),
        &[],
        |_| {
            if first_token.is_none() {
                synchronize(device)?;
                first_token = Some(started.elapsed().as_secs_f64());
            }
            Ok(())
        },
    )?;
    synchronize(device)?;
    let total_secs = started.elapsed().as_secs_f64();

    let peak_memory = memory.peak_bytes();
    let decode_bytes = match config.kind {
        ProfileKind::End2End { .. } => decode_bytes_per_token(
            read.weight_bytes,
            read.entry_bytes,
            &layer_lens,
            decoded.tokens.len().saturating_sub(1),
        ),
        ProfileKind::Prefill => None,
    };
    let kept = stats
        .iter()
        .filter(|s| s.stage_keep_ratio.is_some())
        .map(|s| StageCount {
            layer: s.layer,
            tokens_in: s.tokens_in,
            tokens_out: s.tokens_out,
        })
        .collect();
    Ok(Run {
        index: 0,
        position: 0,
        prefill_secs,
        ttft_secs: first_token.context("generation produced no token")?,
        decode_secs: match config.kind {
            ProfileKind::End2End { .. } => Some(decoded.decode_secs),
            ProfileKind::Prefill => None,
        },
        generated: decoded.tokens.len(),
        total_secs,
        peak_memory,
        kv_cache_bytes,
        decode_bytes,
        decode_path: match config.kind {
            ProfileKind::End2End { .. } => Some(decoded.path.name()),
            ProfileKind::Prefill => None,
        },
        stats,
        kept,
    })
}

fn summary(values: impl Iterator<Item = f64>, what: &str) -> Result<Summary> {
    Summary::of(&values.collect::<Vec<_>>()).with_context(|| format!("no {what} measured"))
}

/// Decode throughput: steps after the first token over the decode time.
fn decode_tok_s(run: &Run) -> Option<f64> {
    let steps = run.generated.saturating_sub(1);
    run.decode_secs
        .filter(|&s| steps > 0 && s > 0.0)
        .map(|s| steps as f64 / s)
}

/// Decode bandwidth in GB/s: bytes per decode step × decode steps per second.
fn decode_gb_s(run: &Run) -> Option<f64> {
    run.decode_bytes
        .zip(decode_tok_s(run))
        .map(|(bytes, rate)| bytes.bandwidth_gb_s(rate))
}

fn summarise(
    length: usize,
    tiled: bool,
    contender: &Contender,
    runs: &[Run],
    shape: &FlopShape,
    copy_rate_bytes_per_s: Option<f64>,
) -> Result<ModeResult> {
    let first = runs.first().context("no repetition ran")?;
    let ms = |f: fn(&Run) -> f64| runs.iter().map(move |r| f(r) * 1e3);
    let decode: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.decode_secs)
        .map(|s| s * 1e3)
        .collect();
    let throughput: Vec<f64> = runs.iter().filter_map(decode_tok_s).collect();
    let bandwidth = Summary::of(&runs.iter().filter_map(decode_gb_s).collect::<Vec<_>>());
    let peaks: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.peak_memory)
        .map(|b| b as f64)
        .collect();
    let summary = MetricSummaries {
        prefill_ms: summary(ms(|r| r.prefill_secs), "prefill time")?,
        prefill_tok_s: summary(
            runs.iter().map(|r| length as f64 / r.prefill_secs),
            "prefill throughput",
        )?,
        ttft_ms: summary(ms(|r| r.ttft_secs), "time to first token")?,
        decode_ms: Summary::of(&decode),
        decode_tok_s: Summary::of(&throughput),
        decode_bandwidth_gb_s: bandwidth,
        total_ms: summary(ms(|r| r.total_secs), "total time")?,
        peak_memory_bytes: Summary::of(&peaks),
    };
    let final_tokens = first.stats.last().map_or(length, |s| s.tokens_out);
    let scorer_cost = ScorerCost::of(&contender.schedule);
    Ok(ModeResult {
        length,
        mode: contender.info.mode.clone(),
        schedule: contender.info.name.clone(),
        scorer: contender.info.scorer.clone(),
        prompt_tiled: tiled,
        tokens_per_layer: first.stats.iter().map(|s| s.tokens_in).collect(),
        kept: Kept {
            stages: first.kept.clone(),
            final_tokens,
            final_ratio: final_tokens as f64 / length as f64,
        },
        kv_cache_bytes: first.kv_cache_bytes,
        decode_bytes_per_token: first.decode_bytes.map(|b| b.total()),
        decode_weight_bytes_per_token: first.decode_bytes.map(|b| b.weights),
        decode_kv_bytes_per_token: first.decode_bytes.map(|b| b.kv),
        decode_path: first.decode_path.map(str::to_string),
        roofline_share: bandwidth
            .zip(copy_rate_bytes_per_s)
            .and_then(|(b, rate)| roofline_share(b.median, rate)),
        flops: prefill_flops(shape, &first.stats, scorer_cost),
        summary,
        speedup: None,
        repetitions: runs
            .iter()
            .map(|r| Repetition {
                index: r.index,
                position: r.position,
                prefill_ms: r.prefill_secs * 1e3,
                ttft_ms: r.ttft_secs * 1e3,
                decode_ms: r.decode_secs.map(|s| s * 1e3),
                generated_tokens: r.generated,
                decode_tok_s: decode_tok_s(r),
                decode_bandwidth_gb_s: decode_gb_s(r),
                total_ms: r.total_secs * 1e3,
                peak_memory_bytes: r.peak_memory,
                kv_cache_bytes: r.kv_cache_bytes,
                final_tokens: r.stats.last().map_or(length, |s| s.tokens_out),
            })
            .collect(),
    })
}

/// Decode bandwidth (GB/s) as a share of the copy rate (bytes/s); `None` unless both are
/// positive and finite.
fn roofline_share(bandwidth_gb_s: f64, copy_rate_bytes_per_s: f64) -> Option<f64> {
    let share = bandwidth_gb_s * 1e9 / copy_rate_bytes_per_s;
    (share.is_finite() && share > 0.0).then_some(share)
}

/// Fills `speedup` of every non-baseline result of one length from that length's baseline.
fn add_speedups(length_results: &mut [ModeResult]) {
    let Some(base) = length_results.iter().find(|r| r.mode == BASELINE).cloned() else {
        return;
    };
    let b = &base.summary;
    for r in length_results.iter_mut().filter(|r| r.mode != BASELINE) {
        let s = &r.summary;
        let median = |x: Option<Summary>| x.map(|v| v.median);
        r.speedup = Some(Speedup {
            prefill: ratio(b.prefill_ms.median, s.prefill_ms.median),
            ttft: ratio(b.ttft_ms.median, s.ttft_ms.median),
            decode: median(b.decode_ms)
                .zip(median(s.decode_ms))
                .and_then(|(x, y)| ratio(x, y)),
            total: ratio(b.total_ms.median, s.total_ms.median),
            prefill_flop_ideal: ratio(base.flops.model as f64, r.flops.model as f64),
        });
    }
}
