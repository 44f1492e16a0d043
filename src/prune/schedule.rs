//! Pruning schedules: after which layers SDTP prunes and how many tokens each stage keeps.
//!
//! A schedule is data: a list of [`Stage`]s plus the tokens that are never pruned. It comes from a
//! preset name (backed by the files in `configs/`, compiled in with `include_str!` so that file is
//! the one source of truth) or from a user's TOML file, and it is validated against the model's
//! depth before a run starts, so a bad schedule is a one-line error, never a failure mid-forward.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Depth the presets in `configs/` are written for (Llama-2-7B / Llama-3-8B have 32 layers).
pub const REFERENCE_LAYERS: usize = 32;

/// Names accepted by [`PruneSchedule::preset`], in the order help texts list them.
pub const PRESET_NAMES: [&str; 5] = ["none", "keep09", "keep08", "keep07", "paper"];

/// How the per-token importance scores of a pruning stage are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScorerKind {
    /// The SDTP saliency predictor (a small MLP trained on gradient × hidden saliency).
    Learned,
    /// Training-free: attention the last tokens pay to each token.
    Attention,
    /// Training-free: L2 norm of each token's hidden state.
    Norm,
    /// Uniform random scores: the control that any real scorer must beat.
    Random,
}

impl ScorerKind {
    /// Every scorer, in the order help texts list them.
    pub const ALL: [ScorerKind; 4] = [
        ScorerKind::Learned,
        ScorerKind::Attention,
        ScorerKind::Norm,
        ScorerKind::Random,
    ];

    /// The lowercase name used on the command line and in TOML.
    pub fn as_str(self) -> &'static str {
        match self {
            ScorerKind::Learned => "learned",
            ScorerKind::Attention => "attention",
            ScorerKind::Norm => "norm",
            ScorerKind::Random => "random",
        }
    }
}

impl fmt::Display for ScorerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ScorerKind {
    type Err = ScheduleError;

    /// Parses a lowercase scorer name; anything else is [`ScheduleError::UnknownScorer`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScorerKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| ScheduleError::UnknownScorer {
                name: s.to_string(),
            })
    }
}

/// One pruning stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Prune after this layer (0-based) has run; the layers above it see only the kept tokens.
    pub layer: usize,
    /// Fraction of the tokens present at this point (not of the prompt) that survive, in (0, 1].
    pub keep_ratio: f64,
}

/// A pruning schedule; an empty `stages` is the unpruned baseline. Nothing here is checked on
/// construction: call [`PruneSchedule::validate`] with the model's depth before a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneSchedule {
    /// Shown in reports and error messages. In a TOML file it defaults to the file name.
    #[serde(default)]
    pub name: String,
    /// Stages in the order they run; layers strictly increasing.
    pub stages: Vec<Stage>,
    /// The first `min_head_tokens` tokens are never pruned (attention sinks). Default 4.
    #[serde(default = "default_min_head_tokens")]
    pub min_head_tokens: usize,
    /// The last `ceil(min_tail_ratio * n)` tokens are never pruned, and the last token never is,
    /// whatever this says. In [0, 1]; default 0.1.
    #[serde(default = "default_min_tail_ratio")]
    pub min_tail_ratio: f64,
    /// `None`: the caller picks (learned if a predictor exists, else attention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scorer: Option<ScorerKind>,
    /// Predictor weights (safetensors) for the `learned` scorer. [`PruneSchedule::load`] resolves
    /// a relative path against the folder of the TOML file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor: Option<PathBuf>,
    /// How the `attention` scorer reads the layer's attention (the `[attention]` table).
    #[serde(default)]
    pub attention: AttentionScoring,
}

/// How attention scores are combined over heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadReduce {
    /// The largest share any head gives the token: a token one head needs is kept.
    Max,
    /// The mean over heads (LazyLLM-style).
    Mean,
}

/// How the `attention` scorer turns a layer's attention into one score per token. Each
/// setting is a lever against pruning what the prompt's question needs (docs/fidelity.md has
/// the measurements that chose the defaults):
///
/// - `window`: only the last `window` queries score the tokens (SnapKV's observation window:
///   the question at the end of a prompt), rather than the whole protected tail, most of
///   which is context that attends to its neighbours. 0 uses the protected tail.
/// - `heads`: a head that retrieves attends to the answer sharply while most heads do not, so
///   `max` keeps what any head needs; `mean` dilutes it.
/// - `pool`: max over a window of `pool` neighbouring tokens (SnapKV's 1-D pooling), so a
///   token that draws attention keeps the few around it (the digits after "pass key is").
/// - `carry`: a token's score is at least `carry` × its score at earlier stages (scores as
///   ranks in [0, 1]), so a token found relevant at one layer is not dropped at the next
///   because that layer looks elsewhere. 0 turns it off.
/// - `sentences`: a token scores at least the best score in its sentence (cut at the model's
///   sentence-ending tokens, at most [`SENTENCE_MAX_TOKENS`] long), so a sentence the question
///   points at is kept whole: decoding copies a long value (a UUID) token by token, and the
///   question's queries look only at its start.
/// - `relative`: a token also ranks by its attention over the mean attention of the
///   `relative` tokens around it, and keeps the better of that rank and the plain one. The
///   early layers' attention falls with distance from the question, so a needle far back draws
///   less than any recent token even where it stands out from its own neighbourhood; the
///   relative rank sees that peak. 0 turns it off. Only stages after a layer below
///   `relative_depth` × the model's layers use it (1 = every stage): the later layers' own
///   attention finds what the question needs, and the relative rank's local peaks would
///   crowd it there. The relative rank is never carried to later stages.
/// - `question_overlap`: a token ranks at least the share of the question (the prompt's last
///   `window` tokens) its sentence spells out, each token id weighed by its rarity in the
///   prompt (`score_ops::question_overlap`): a sentence naming the question's key is kept
///   even where the early layers' attention has not found it yet.
/// - `union` (the `learned` scorer only): a token ranks at the better of its learned rank and
///   the rank the attention read above gives it, so the kept set is what either would keep
///   first. Each signal goes through the refinement (pool, sentences, carry, floor) on its own.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttentionScoring {
    pub window: usize,
    pub heads: HeadReduce,
    pub pool: usize,
    pub carry: f64,
    pub sentences: bool,
    pub relative: usize,
    pub relative_depth: f64,
    pub question_overlap: bool,
    pub union: bool,
}

/// The longest unit `sentences` keeps whole: text without sentence ends (code, a list of
/// values) is cut every this many tokens rather than becoming one unit.
pub const SENTENCE_MAX_TOKENS: usize = 128;

/// The default, chosen on the dev seed by passkey, RULER and agreement (docs/fidelity.md):
/// the last 32 queries, max over heads, a 15-token max-pool, whole sentences, full carry and
/// the question-overlap floor; no relative ranks (measured, no gain).
impl Default for AttentionScoring {
    fn default() -> Self {
        Self {
            window: 32,
            heads: HeadReduce::Max,
            pool: 15,
            carry: 1.0,
            sentences: true,
            // The first stage only (layer 4 of 30–32 is under 15% of the depth): it decides on
            // the weakest attention and, ranking globally, cut a hole of ~600 filler tokens in
            // 8K passkey prompts that lost the key (docs/fidelity.md, "A hole at the first
            // stage").
            relative: 127,
            relative_depth: 0.15,
            question_overlap: true,
            union: false,
        }
    }
}

impl AttentionScoring {
    /// The scorer before the `[attention]` table existed: the whole protected tail, mean over
    /// heads, no pooling, no carry (LazyLLM-style). Kept for comparison.
    pub const LEGACY: AttentionScoring = AttentionScoring {
        window: 0,
        heads: HeadReduce::Mean,
        pool: 1,
        carry: 0.0,
        sentences: false,
        relative: 0,
        relative_depth: 1.0,
        question_overlap: false,
        union: false,
    };
}

impl AttentionScoring {
    /// Whether the stage after `layer` (0-based) of a `num_layers`-layer model also ranks
    /// tokens against their neighbourhood.
    pub fn relative_at(&self, layer: usize, num_layers: usize) -> bool {
        self.relative > 0 && (layer as f64) < self.relative_depth * num_layers as f64
    }

    /// Trailing queries whose attention scores a stage over `n` tokens: `window` (at most
    /// `n`), or the protected tail when `window` is 0.
    pub fn queries(&self, n: usize, min_tail_ratio: f64) -> usize {
        match self.window {
            0 => super::select::mandatory_tail_len(n, min_tail_ratio),
            w => w.min(n),
        }
    }
}

fn default_min_head_tokens() -> usize {
    4
}

fn default_min_tail_ratio() -> f64 {
    0.1
}

/// A schedule ready for one model, with a note when a preset's layers had to be moved.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetResolution {
    pub schedule: PruneSchedule,
    /// How preset layers were mapped onto this model's depth, e.g.
    /// `keep09 defined for 32 layers; mapped to 4 layers: 4->1, 7->1 (merged), ...`.
    /// `None` when the schedule is used exactly as written.
    pub mapping: Option<String>,
}

/// Why a schedule cannot be used. Every message is one line that names the schedule and the fix.
/// Stage numbers are 0-based indices into `stages`.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown scorer {name:?}; valid scorers are {}", scorer_names())]
    UnknownScorer { name: String },

    #[error("unknown schedule preset {name:?}; presets are {}", PRESET_NAMES.join(", "))]
    UnknownPreset { name: String },

    #[error(
        "schedule {:?} is neither a preset nor an existing file; use a preset ({}) or the path of a TOML schedule like configs/keep09.toml",
        .path.display().to_string(),
        PRESET_NAMES.join(", ")
    )]
    NotFound { path: PathBuf },

    #[error("cannot read schedule file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("schedule file {origin}: {location}{message}; see configs/keep09.toml for the format")]
    Parse {
        origin: String,
        /// `line L, column C: ` when the TOML parser knows where, else empty.
        location: String,
        message: String,
    },

    #[error(
        "preset {preset:?} needs a model with at least 2 layers; this model has {num_layers}; use the preset \"none\""
    )]
    TooFewLayers { preset: String, num_layers: usize },

    #[error(
        "schedule {schedule:?}: stage {stage} layer {layer} is outside the model ({}); use a layer below {num_layers}",
        layer_range(*.num_layers)
    )]
    LayerOutOfRange {
        schedule: String,
        stage: usize,
        layer: usize,
        num_layers: usize,
    },

    #[error(
        "schedule {schedule:?}: stage {stage} layer {layer} does not come after stage {} layer {previous}; list layers in strictly increasing order, each once",
        .stage - 1
    )]
    LayersNotIncreasing {
        schedule: String,
        stage: usize,
        layer: usize,
        previous: usize,
    },

    #[error(
        "schedule {schedule:?}: stage {stage} keep_ratio {keep_ratio} is outside (0, 1]; use a value above 0 and at most 1 (1 keeps every token)"
    )]
    KeepRatio {
        schedule: String,
        stage: usize,
        keep_ratio: f64,
    },

    #[error(
        "schedule {schedule:?}: min_tail_ratio {value} is outside [0, 1]; use e.g. 0.1 to always keep the last 10% of the tokens"
    )]
    MinTailRatio { schedule: String, value: f64 },

    #[error(
        "schedule {schedule:?}: scorer \"learned\" needs a predictor; set predictor = \"path/to/predictor.safetensors\" or choose another scorer (attention, norm, random)"
    )]
    LearnedWithoutPredictor { schedule: String },

    #[error(
        "schedule {schedule:?}: [attention] pool {pool} is not an odd width of at least 1; use 1 (no pooling), 3, 5, 7, …"
    )]
    AttentionPool { schedule: String, pool: usize },

    #[error(
        "schedule {schedule:?}: [attention] relative_depth {depth} is outside [0, 1]; use the share of the model's layers whose stages rank tokens against their neighbourhood (1 = every stage)"
    )]
    AttentionRelativeDepth { schedule: String, depth: f64 },

    #[error(
        "schedule {schedule:?}: [attention] carry {carry} is outside [0, 1]; use 0 (off) up to 1 (a token keeps its best earlier score)"
    )]
    AttentionCarry { schedule: String, carry: f64 },
}

fn scorer_names() -> String {
    ScorerKind::ALL.map(ScorerKind::as_str).join(", ")
}

fn layer_range(num_layers: usize) -> String {
    match num_layers {
        0 => "the model has no layers".to_string(),
        n => format!("layers 0..={}", n - 1),
    }
}

impl PruneSchedule {
    /// The unpruned baseline: no stage, default protected tokens.
    pub fn none() -> Self {
        PruneSchedule {
            name: "none".to_string(),
            stages: Vec::new(),
            min_head_tokens: default_min_head_tokens(),
            min_tail_ratio: default_min_tail_ratio(),
            scorer: None,
            predictor: None,
            attention: AttentionScoring::default(),
        }
    }

    /// A preset from `configs/`, fitted to a model of `num_layers` layers and validated.
    ///
    /// Presets are written for [`REFERENCE_LAYERS`] (32) layers. They are used as written when
    /// every layer exists and the model has at least 28 layers. Otherwise each layer `l` becomes
    /// `round(l * num_layers / 32)` clamped into `[1, num_layers - 1]`, and a stage that lands on
    /// the layer of the stage before it is dropped (so fewer stages run, and the cumulative keep
    /// rises); [`PresetResolution::mapping`] then says what happened.
    pub fn preset(name: &str, num_layers: usize) -> Result<PresetResolution, ScheduleError> {
        let (origin, text) = match name {
            "none" => ("configs/none.toml", include_str!("../../configs/none.toml")),
            "keep09" => (
                "configs/keep09.toml",
                include_str!("../../configs/keep09.toml"),
            ),
            "keep08" => (
                "configs/keep08.toml",
                include_str!("../../configs/keep08.toml"),
            ),
            "keep07" => (
                "configs/keep07.toml",
                include_str!("../../configs/keep07.toml"),
            ),
            "paper" => (
                "configs/paper.toml",
                include_str!("../../configs/paper.toml"),
            ),
            _ => {
                return Err(ScheduleError::UnknownPreset {
                    name: name.to_string(),
                })
            }
        };
        let mut schedule = PruneSchedule::from_toml_str(text, origin)?;
        if schedule.stages.is_empty() {
            schedule.validate(num_layers)?;
            return Ok(PresetResolution {
                schedule,
                mapping: None,
            });
        }
        if num_layers < 2 {
            return Err(ScheduleError::TooFewLayers {
                preset: name.to_string(),
                num_layers,
            });
        }
        let fits = schedule.stages.iter().all(|s| s.layer < num_layers);
        if fits && num_layers >= 28 {
            schedule.validate(num_layers)?;
            return Ok(PresetResolution {
                schedule,
                mapping: None,
            });
        }

        let mut stages: Vec<Stage> = Vec::with_capacity(schedule.stages.len());
        let mut notes = Vec::with_capacity(schedule.stages.len());
        for stage in &schedule.stages {
            // Round half up in integers: round(layer * num_layers / 32).
            let scaled = (2 * stage.layer * num_layers + REFERENCE_LAYERS) / (2 * REFERENCE_LAYERS);
            let layer = scaled.clamp(1, num_layers - 1);
            if stages.last().is_some_and(|prev| prev.layer >= layer) {
                notes.push(format!("{}->{} (merged)", stage.layer, layer));
            } else {
                notes.push(format!("{}->{}", stage.layer, layer));
                stages.push(Stage {
                    layer,
                    keep_ratio: stage.keep_ratio,
                });
            }
        }
        schedule.stages = stages;
        schedule.validate(num_layers)?;
        Ok(PresetResolution {
            schedule,
            mapping: Some(format!(
                "{name} defined for {REFERENCE_LAYERS} layers; mapped to {num_layers} layers: {}",
                notes.join(", ")
            )),
        })
    }

    /// Parses a TOML schedule (format: `configs/keep09.toml`). Unknown keys are an error;
    /// `min_head_tokens` and `min_tail_ratio` default to 4 and 0.1; a missing `name` becomes the
    /// file stem of `origin`. `origin` only labels errors; `predictor` is left as written.
    /// Does not validate: see [`PruneSchedule::validate`].
    pub fn from_toml_str(s: &str, origin: &str) -> Result<Self, ScheduleError> {
        let mut schedule: PruneSchedule = toml::from_str(s).map_err(|e| {
            let location = match e.span() {
                Some(span) => {
                    let before = s.get(..span.start).unwrap_or(s);
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                    format!("line {line}, column {column}: ")
                }
                None => String::new(),
            };
            ScheduleError::Parse {
                origin: origin.to_string(),
                location,
                message: e.message().trim().replace('\n', " "),
            }
        })?;
        if schedule.name.is_empty() {
            schedule.name = Path::new(origin)
                .file_stem()
                .map_or_else(|| origin.to_string(), |s| s.to_string_lossy().into_owned());
        }
        Ok(schedule)
    }

    /// Reads a TOML schedule file; a relative `predictor` is resolved against the file's folder.
    /// Does not validate: see [`PruneSchedule::validate`].
    pub fn load(path: &Path) -> Result<Self, ScheduleError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScheduleError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut schedule = PruneSchedule::from_toml_str(&text, &path.display().to_string())?;
        if let Some(predictor) = &schedule.predictor {
            if predictor.is_relative() {
                let folder = path.parent().unwrap_or(Path::new(""));
                schedule.predictor = Some(folder.join(predictor));
            }
        }
        Ok(schedule)
    }

    /// A preset name (see [`PRESET_NAMES`]) or else the path of a TOML schedule file, validated
    /// for a model of `num_layers` layers. A file is taken literally (no layer mapping).
    pub fn resolve(
        name_or_path: &str,
        num_layers: usize,
    ) -> Result<PresetResolution, ScheduleError> {
        if PRESET_NAMES.contains(&name_or_path) {
            return PruneSchedule::preset(name_or_path, num_layers);
        }
        let path = Path::new(name_or_path);
        if !path.is_file() {
            return Err(ScheduleError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let schedule = PruneSchedule::load(path)?;
        schedule.validate(num_layers)?;
        Ok(PresetResolution {
            schedule,
            mapping: None,
        })
    }

    /// Checks the schedule against a model of `num_layers` layers: layers strictly increasing and
    /// below `num_layers`, every keep_ratio finite and in (0, 1], min_tail_ratio finite and in
    /// [0, 1], and a predictor when the scorer is `learned`. Reports the first problem found.
    pub fn validate(&self, num_layers: usize) -> Result<(), ScheduleError> {
        let schedule = || self.name.clone();
        for (stage, s) in self.stages.iter().enumerate() {
            if s.layer >= num_layers {
                return Err(ScheduleError::LayerOutOfRange {
                    schedule: schedule(),
                    stage,
                    layer: s.layer,
                    num_layers,
                });
            }
            if stage > 0 && s.layer <= self.stages[stage - 1].layer {
                return Err(ScheduleError::LayersNotIncreasing {
                    schedule: schedule(),
                    stage,
                    layer: s.layer,
                    previous: self.stages[stage - 1].layer,
                });
            }
            // Written so that NaN fails too.
            if !(s.keep_ratio > 0.0 && s.keep_ratio <= 1.0) {
                return Err(ScheduleError::KeepRatio {
                    schedule: schedule(),
                    stage,
                    keep_ratio: s.keep_ratio,
                });
            }
        }
        if !(0.0..=1.0).contains(&self.min_tail_ratio) {
            return Err(ScheduleError::MinTailRatio {
                schedule: schedule(),
                value: self.min_tail_ratio,
            });
        }
        if self.scorer == Some(ScorerKind::Learned) && self.predictor.is_none() {
            return Err(ScheduleError::LearnedWithoutPredictor {
                schedule: schedule(),
            });
        }
        let attention = &self.attention;
        if attention.pool == 0 || attention.pool.is_multiple_of(2) {
            return Err(ScheduleError::AttentionPool {
                schedule: schedule(),
                pool: attention.pool,
            });
        }
        if !(0.0..=1.0).contains(&attention.relative_depth) {
            return Err(ScheduleError::AttentionRelativeDepth {
                schedule: schedule(),
                depth: attention.relative_depth,
            });
        }
        if !(0.0..=1.0).contains(&attention.carry) {
            return Err(ScheduleError::AttentionCarry {
                schedule: schedule(),
                carry: attention.carry,
            });
        }
        Ok(())
    }

    /// Fraction of the prompt that survives every stage, ignoring the protected head and tail
    /// tokens and rounding: the product of the keep ratios (1.0 for no stage).
    pub fn cumulative_keep(&self) -> f64 {
        self.stages.iter().map(|s| s.keep_ratio).product()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(s: &PruneSchedule) -> Vec<usize> {
        s.stages.iter().map(|s| s.layer).collect()
    }

    fn valid() -> PruneSchedule {
        PruneSchedule {
            name: "x".to_string(),
            stages: vec![
                Stage {
                    layer: 2,
                    keep_ratio: 0.9,
                },
                Stage {
                    layer: 5,
                    keep_ratio: 0.8,
                },
                Stage {
                    layer: 9,
                    keep_ratio: 0.7,
                },
            ],
            ..PruneSchedule::none()
        }
    }

    const KEEP_LAYERS: [usize; 8] = [4, 7, 10, 13, 16, 19, 22, 25];
    const PAPER_LAYERS: [usize; 10] = [4, 7, 10, 13, 16, 19, 22, 25, 28, 31];

    #[test]
    fn preset_files_parse_and_match_their_names() {
        for name in PRESET_NAMES {
            let r = PruneSchedule::preset(name, 32).unwrap();
            assert_eq!(r.schedule.name, name);
            assert_eq!(r.mapping, None);
            assert_eq!(r.schedule.min_head_tokens, 4);
            assert_eq!(r.schedule.min_tail_ratio, 0.1);
            assert_eq!(r.schedule.scorer, None);
            assert_eq!(r.schedule.predictor, None);
        }
        for (name, ratio) in [("keep09", 0.9), ("keep08", 0.8), ("keep07", 0.7)] {
            let s = PruneSchedule::preset(name, 32).unwrap().schedule;
            assert_eq!(layers(&s), KEEP_LAYERS);
            assert!(s.stages.iter().all(|s| s.keep_ratio == ratio));
        }
        let paper = PruneSchedule::preset("paper", 32).unwrap().schedule;
        assert_eq!(layers(&paper), PAPER_LAYERS);
        assert!(paper.stages.iter().all(|s| s.keep_ratio == 0.9));
        assert!((paper.cumulative_keep() - 0.9f64.powi(10)).abs() < 1e-12);
        assert_eq!(
            PruneSchedule::preset("none", 32).unwrap().schedule,
            PruneSchedule::none()
        );
    }

    #[test]
    fn preset_for_30_layers_keeps_keep09_and_maps_paper() {
        let r = PruneSchedule::preset("keep09", 30).unwrap();
        assert_eq!(layers(&r.schedule), KEEP_LAYERS);
        assert_eq!(r.mapping, None);

        let r = PruneSchedule::preset("paper", 30).unwrap();
        // round(l * 30 / 32): 4->4 (3.75), 7->7 (6.56), 10->9 (9.38), 13->12 (12.19),
        // 16->15, 19->18 (17.81), 22->21 (20.63), 25->23 (23.44), 28->26 (26.25), 31->29 (29.06).
        assert_eq!(layers(&r.schedule), [4, 7, 9, 12, 15, 18, 21, 23, 26, 29]);
        assert_eq!(
            r.mapping.as_deref(),
            Some(
                "paper defined for 32 layers; mapped to 30 layers: 4->4, 7->7, 10->9, 13->12, \
                 16->15, 19->18, 22->21, 25->23, 28->26, 31->29"
            )
        );
    }

    #[test]
    fn preset_for_28_and_32_layers() {
        let r = PruneSchedule::preset("keep07", 28).unwrap();
        assert_eq!(layers(&r.schedule), KEEP_LAYERS);
        assert_eq!(r.mapping, None);
        let r = PruneSchedule::preset("paper", 28).unwrap();
        assert!(r.mapping.is_some());
        // round(l * 28 / 32): ..., 28->25 (24.5 rounds up), 31->27 (27.13).
        assert_eq!(layers(&r.schedule), [4, 6, 9, 11, 14, 17, 19, 22, 25, 27]);
        for name in PRESET_NAMES {
            assert_eq!(PruneSchedule::preset(name, 32).unwrap().mapping, None);
        }
    }

    #[test]
    fn preset_for_deep_models_is_unchanged() {
        let r = PruneSchedule::preset("paper", 80).unwrap();
        assert_eq!(layers(&r.schedule), PAPER_LAYERS);
        assert_eq!(r.mapping, None);
    }

    #[test]
    fn preset_for_4_layers_merges_stages() {
        let r = PruneSchedule::preset("keep09", 4).unwrap();
        assert_eq!(layers(&r.schedule), [1, 2, 3]);
        assert_eq!(
            r.mapping.as_deref(),
            Some(
                "keep09 defined for 32 layers; mapped to 4 layers: 4->1, 7->1 (merged), \
                 10->1 (merged), 13->2, 16->2 (merged), 19->2 (merged), 22->3, 25->3 (merged)"
            )
        );
        r.schedule.validate(4).unwrap();
    }

    #[test]
    fn preset_for_2_layers_has_one_stage_after_layer_1() {
        for name in ["keep09", "keep08", "keep07", "paper"] {
            let r = PruneSchedule::preset(name, 2).unwrap();
            assert_eq!(layers(&r.schedule), [1]);
            assert!(r.mapping.unwrap().contains("mapped to 2 layers"));
        }
    }

    #[test]
    fn preset_for_fewer_than_2_layers() {
        for n in [0, 1] {
            let e = PruneSchedule::preset("keep09", n).unwrap_err();
            assert!(matches!(e, ScheduleError::TooFewLayers { num_layers, .. } if num_layers == n));
            assert!(e.to_string().contains("use the preset \"none\""), "{e}");
            assert_eq!(
                PruneSchedule::preset("none", n).unwrap().schedule.name,
                "none"
            );
        }
    }

    #[test]
    fn unknown_preset() {
        let e = PruneSchedule::preset("keep05", 32).unwrap_err();
        assert!(matches!(e, ScheduleError::UnknownPreset { .. }));
        assert_eq!(
            e.to_string(),
            "unknown schedule preset \"keep05\"; presets are none, keep09, keep08, keep07, paper"
        );
    }

    #[test]
    fn every_preset_is_valid_at_every_depth() {
        for name in PRESET_NAMES {
            for n in 2..=160 {
                let r = PruneSchedule::preset(name, n).unwrap();
                r.schedule.validate(n).unwrap();
                if name != "none" {
                    assert!(!r.schedule.stages.is_empty());
                    assert!(r.schedule.stages.iter().all(|s| s.layer >= 1));
                }
            }
        }
    }

    #[test]
    fn layer_out_of_range() {
        let mut s = valid();
        s.stages[2].layer = 40;
        let e = s.validate(30).unwrap_err();
        assert!(matches!(
            e,
            ScheduleError::LayerOutOfRange {
                stage: 2,
                layer: 40,
                num_layers: 30,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "schedule \"x\": stage 2 layer 40 is outside the model (layers 0..=29); use a layer below 30"
        );
        s.stages[2].layer = 30;
        assert!(s.validate(30).is_err());
        s.stages[2].layer = 29;
        s.validate(30).unwrap();
        let e = valid().validate(0).unwrap_err();
        assert!(e.to_string().contains("(the model has no layers)"), "{e}");
    }

    #[test]
    fn layers_not_increasing() {
        let mut s = valid();
        s.stages[1].layer = 2;
        let e = s.validate(30).unwrap_err();
        assert!(matches!(
            e,
            ScheduleError::LayersNotIncreasing {
                stage: 1,
                layer: 2,
                previous: 2,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "schedule \"x\": stage 1 layer 2 does not come after stage 0 layer 2; \
             list layers in strictly increasing order, each once"
        );
        s.stages[1].layer = 1;
        assert!(matches!(
            s.validate(30),
            Err(ScheduleError::LayersNotIncreasing { stage: 1, .. })
        ));
    }

    #[test]
    fn bad_keep_ratios() {
        for bad in [
            0.0,
            -0.1,
            1.0000001,
            2.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let mut s = valid();
            s.stages[1].keep_ratio = bad;
            let e = s.validate(30).unwrap_err();
            assert!(
                matches!(e, ScheduleError::KeepRatio { stage: 1, keep_ratio, .. }
                    if keep_ratio.to_bits() == bad.to_bits()),
                "{bad}: {e:?}"
            );
            assert!(!e.to_string().contains('\n'));
        }
        let mut s = valid();
        s.stages[0].keep_ratio = 0.0;
        assert_eq!(
            s.validate(30).unwrap_err().to_string(),
            "schedule \"x\": stage 0 keep_ratio 0 is outside (0, 1]; \
             use a value above 0 and at most 1 (1 keeps every token)"
        );
        s.stages[0].keep_ratio = f64::NAN;
        assert!(s
            .validate(30)
            .unwrap_err()
            .to_string()
            .contains("keep_ratio NaN"));
        s.stages[0].keep_ratio = 1.0;
        s.validate(30).unwrap();
        s.stages[0].keep_ratio = f64::MIN_POSITIVE;
        s.validate(30).unwrap();
    }

    #[test]
    fn bad_min_tail_ratio() {
        for bad in [-0.01, 1.01, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut s = valid();
            s.min_tail_ratio = bad;
            let e = s.validate(30).unwrap_err();
            assert!(
                matches!(e, ScheduleError::MinTailRatio { .. }),
                "{bad}: {e:?}"
            );
        }
        let mut s = valid();
        s.min_tail_ratio = 1.5;
        assert_eq!(
            s.validate(30).unwrap_err().to_string(),
            "schedule \"x\": min_tail_ratio 1.5 is outside [0, 1]; \
             use e.g. 0.1 to always keep the last 10% of the tokens"
        );
        for ok in [0.0, 1.0] {
            s.min_tail_ratio = ok;
            s.validate(30).unwrap();
        }
    }

    #[test]
    fn learned_needs_a_predictor() {
        let mut s = valid();
        s.scorer = Some(ScorerKind::Learned);
        let e = s.validate(30).unwrap_err();
        assert!(matches!(e, ScheduleError::LearnedWithoutPredictor { .. }));
        assert!(e
            .to_string()
            .starts_with("schedule \"x\": scorer \"learned\" needs a predictor"));
        s.predictor = Some(PathBuf::from("p.safetensors"));
        s.validate(30).unwrap();
        s.predictor = None;
        for other in [ScorerKind::Attention, ScorerKind::Norm, ScorerKind::Random] {
            s.scorer = Some(other);
            s.validate(30).unwrap();
        }
    }

    #[test]
    fn empty_schedule_is_valid_for_any_depth() {
        for n in [0, 1, 30] {
            PruneSchedule::none().validate(n).unwrap();
        }
        assert_eq!(PruneSchedule::none().cumulative_keep(), 1.0);
        assert!((valid().cumulative_keep() - 0.9 * 0.8 * 0.7).abs() < 1e-12);
    }

    #[test]
    fn scorer_names_round_trip() {
        for kind in ScorerKind::ALL {
            assert_eq!(kind.to_string().parse::<ScorerKind>().unwrap(), kind);
        }
        assert_eq!("norm".parse::<ScorerKind>().unwrap(), ScorerKind::Norm);
        let e = "Attention".parse::<ScorerKind>().unwrap_err();
        assert!(matches!(e, ScheduleError::UnknownScorer { .. }));
        assert_eq!(
            e.to_string(),
            "unknown scorer \"Attention\"; valid scorers are learned, attention, norm, random"
        );
    }

    #[test]
    fn toml_defaults_and_name_from_origin() {
        let s = PruneSchedule::from_toml_str(
            "stages = [ { layer = 3, keep_ratio = 0.5 } ]",
            "dir/my_sched.toml",
        )
        .unwrap();
        assert_eq!(s.name, "my_sched");
        assert_eq!(s.min_head_tokens, 4);
        assert_eq!(s.min_tail_ratio, 0.1);
        assert_eq!(s.scorer, None);
        assert_eq!(
            s.stages,
            [Stage {
                layer: 3,
                keep_ratio: 0.5
            }]
        );
    }

    #[test]
    fn toml_scorer_and_predictor() {
        let s = PruneSchedule::from_toml_str(
            "name = \"l\"\nscorer = \"learned\"\npredictor = \"w.safetensors\"\nstages = []",
            "l.toml",
        )
        .unwrap();
        assert_eq!(s.scorer, Some(ScorerKind::Learned));
        assert_eq!(s.predictor, Some(PathBuf::from("w.safetensors")));
    }

    #[test]
    fn toml_attention_table_parses_defaults_and_validates() {
        let s = PruneSchedule::from_toml_str(
            "stages = [ { layer = 3, keep_ratio = 0.5 } ]\n[attention]\nwindow = 32\nheads = \"max\"\npool = 7\ncarry = 0.5",
            "a.toml",
        )
        .unwrap();
        assert_eq!(
            s.attention,
            AttentionScoring {
                window: 32,
                heads: HeadReduce::Max,
                pool: 7,
                carry: 0.5,
                sentences: true,
                relative: 127,
                relative_depth: 0.15,
                question_overlap: true,
                union: false,
            }
        );
        s.validate(8).unwrap();
        // Omitted keys take the defaults; the window never exceeds the tokens present.
        let partial =
            PruneSchedule::from_toml_str("stages = []\n[attention]\nwindow = 16", "b").unwrap();
        assert_eq!(partial.attention.pool, AttentionScoring::default().pool);
        assert_eq!(partial.attention.queries(10, 0.1), 10);
        assert_eq!(partial.attention.queries(100, 0.1), 16);
        // Window 0 scores with the protected tail, ceil(0.1 · 100).
        assert_eq!(
            AttentionScoring {
                window: 0,
                ..partial.attention
            }
            .queries(100, 0.1),
            10
        );

        let bad = |toml: &str| PruneSchedule::from_toml_str(toml, "x.toml").unwrap_err();
        assert!(bad("stages = []\n[attention]\nheads = \"median\"")
            .to_string()
            .contains("median"));
        assert!(bad("stages = []\n[attention]\nwidow = 3")
            .to_string()
            .contains("widow"));
        for (pool, carry, wanted) in [
            (0, 0.0, "pool 0"),
            (4, 0.0, "pool 4"),
            (3, 1.5, "carry 1.5"),
        ] {
            let mut s = valid();
            s.attention.pool = pool;
            s.attention.carry = carry;
            let msg = s.validate(16).unwrap_err().to_string();
            assert!(msg.contains(wanted) && !msg.contains('\n'), "{msg}");
        }
        let mut s = valid();
        s.attention.carry = f64::NAN;
        assert!(s.validate(16).is_err());
        for depth in [1.5, -0.1, f64::NAN] {
            let mut s = valid();
            s.attention.relative_depth = depth;
            let msg = s.validate(16).unwrap_err().to_string();
            assert!(
                msg.contains("relative_depth") && !msg.contains('\n'),
                "{msg}"
            );
        }
    }

    #[test]
    fn toml_unknown_scorer() {
        let e = PruneSchedule::from_toml_str("scorer = \"saliency\"\nstages = []", "s.toml")
            .unwrap_err();
        assert!(matches!(e, ScheduleError::Parse { .. }));
        let msg = e.to_string();
        assert!(
            msg.starts_with("schedule file s.toml: line 1, column "),
            "{msg}"
        );
        assert!(
            msg.contains("saliency") && msg.contains("attention"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn toml_unknown_keys() {
        let e =
            PruneSchedule::from_toml_str("name = \"x\"\nmin_head_tokns = 4\nstages = []", "x.toml")
                .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ScheduleError::Parse { .. }));
        assert!(
            msg.contains("line 2") && msg.contains("min_head_tokns"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");

        let e = PruneSchedule::from_toml_str("stages = [ { layer = 3, keep = 0.5 } ]", "x.toml")
            .unwrap_err();
        assert!(e.to_string().contains("keep"), "{e}");
    }

    #[test]
    fn toml_missing_stages_and_bad_types() {
        let e = PruneSchedule::from_toml_str("name = \"x\"", "x.toml").unwrap_err();
        assert!(e.to_string().contains("stages"), "{e}");
        let e = PruneSchedule::from_toml_str("stages = [ { layer = -1, keep_ratio = 0.5 } ]", "x")
            .unwrap_err();
        assert!(matches!(e, ScheduleError::Parse { .. }));
        let e = PruneSchedule::from_toml_str("stages = [", "x").unwrap_err();
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    #[test]
    fn toml_round_trip() {
        let mut s = valid();
        s.min_head_tokens = 17;
        s.min_tail_ratio = 0.123456789;
        s.stages[0].keep_ratio = 1.0 / 3.0;
        for (scorer, predictor) in [
            (None, None),
            (Some(ScorerKind::Norm), None),
            (
                Some(ScorerKind::Learned),
                Some(PathBuf::from("/abs/p.safetensors")),
            ),
        ] {
            s.scorer = scorer;
            s.predictor = predictor;
            s.attention = AttentionScoring {
                window: 24,
                heads: HeadReduce::Max,
                pool: 5,
                carry: 0.25,
                sentences: false,
                relative: 0,
                relative_depth: 1.0,
                question_overlap: false,
                union: false,
            };
            let text = toml::to_string(&s).unwrap();
            assert_eq!(
                PruneSchedule::from_toml_str(&text, "rt").unwrap(),
                s,
                "{text}"
            );
        }
        for name in PRESET_NAMES {
            let p = PruneSchedule::preset(name, 30).unwrap().schedule;
            let text = toml::to_string(&p).unwrap();
            assert_eq!(PruneSchedule::from_toml_str(&text, "rt").unwrap(), p);
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sdtp-schedule-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn load_resolves_predictor_against_the_file() {
        let dir = temp_dir("load");
        let path = dir.join("mine.toml");
        std::fs::write(
            &path,
            "scorer = \"learned\"\npredictor = \"w/p.safetensors\"\n\
             stages = [ { layer = 1, keep_ratio = 0.5 }, { layer = 3, keep_ratio = 0.5 } ]",
        )
        .unwrap();
        let r = PruneSchedule::resolve(path.to_str().unwrap(), 4).unwrap();
        assert_eq!(r.mapping, None);
        assert_eq!(r.schedule.name, "mine");
        assert_eq!(r.schedule.predictor, Some(dir.join("w/p.safetensors")));

        // Files are taken literally: no mapping onto a shallower model.
        let e = PruneSchedule::resolve(path.to_str().unwrap(), 3).unwrap_err();
        assert!(matches!(e, ScheduleError::LayerOutOfRange { stage: 1, .. }));

        std::fs::write(&path, "predictor = \"/abs/p.safetensors\"\nstages = []").unwrap();
        let s = PruneSchedule::load(&path).unwrap();
        assert_eq!(s.predictor, Some(PathBuf::from("/abs/p.safetensors")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resolve_presets_and_missing_files() {
        let r = PruneSchedule::resolve("paper", 30).unwrap();
        assert!(r.mapping.is_some());
        let e = PruneSchedule::resolve("no/such/schedule.toml", 30).unwrap_err();
        assert!(matches!(e, ScheduleError::NotFound { .. }));
        assert_eq!(
            e.to_string(),
            "schedule \"no/such/schedule.toml\" is neither a preset nor an existing file; \
             use a preset (none, keep09, keep08, keep07, paper) or the path of a TOML schedule \
             like configs/keep09.toml"
        );
        let e = PruneSchedule::resolve("keep9", 30).unwrap_err();
        assert!(e.to_string().contains("keep09"), "{e}");
    }

    #[test]
    fn resolve_validates_files() {
        let dir = temp_dir("resolve");
        let path = dir.join("bad.toml");
        std::fs::write(&path, "stages = [ { layer = 3, keep_ratio = 0 } ]").unwrap();
        let e = PruneSchedule::resolve(path.to_str().unwrap(), 30).unwrap_err();
        assert_eq!(
            e.to_string(),
            "schedule \"bad\": stage 0 keep_ratio 0 is outside (0, 1]; \
             use a value above 0 and at most 1 (1 keeps every token)"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        /// (num_layers, a valid schedule for it).
        fn valid_schedule() -> impl Strategy<Value = (usize, PruneSchedule)> {
            (2usize..=128)
                .prop_flat_map(|num_layers| {
                    let max_stages = 12.min(num_layers);
                    (
                        Just(num_layers),
                        proptest::sample::subsequence(
                            (0..num_layers).collect::<Vec<_>>(),
                            1..=max_stages,
                        ),
                        proptest::collection::vec(
                            prop_oneof![Just(1.0), (1u32..=1_000_000).prop_map(|k| k as f64 / 1e6)],
                            12,
                        ),
                        0usize..=64,
                        prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0],
                        proptest::option::of(proptest::sample::select(ScorerKind::ALL.to_vec())),
                    )
                })
                .prop_map(|(num_layers, layers, ratios, head, tail, scorer)| {
                    let stages = layers
                        .into_iter()
                        .zip(ratios)
                        .map(|(layer, keep_ratio)| Stage { layer, keep_ratio })
                        .collect();
                    let predictor = (scorer == Some(ScorerKind::Learned))
                        .then(|| PathBuf::from("p.safetensors"));
                    let schedule = PruneSchedule {
                        name: "prop".to_string(),
                        stages,
                        min_head_tokens: head,
                        min_tail_ratio: tail,
                        scorer,
                        predictor,
                        attention: AttentionScoring::default(),
                    };
                    (num_layers, schedule)
                })
        }

        #[derive(Debug, Clone)]
        enum Mutation {
            LayerTooHigh(usize),
            RepeatPreviousLayer,
            SwapWithPrevious,
            KeepRatio(f64),
            MinTail(f64),
            LearnedWithoutPredictor,
        }

        fn mutation() -> impl Strategy<Value = Mutation> {
            prop_oneof![
                (0usize..1000).prop_map(Mutation::LayerTooHigh),
                Just(Mutation::RepeatPreviousLayer),
                Just(Mutation::SwapWithPrevious),
                prop_oneof![
                    Just(0.0),
                    Just(-0.0),
                    Just(f64::NAN),
                    Just(f64::INFINITY),
                    Just(f64::NEG_INFINITY),
                    -10.0f64..=0.0,
                    (1.0f64..100.0).prop_filter("above 1", |r| *r > 1.0),
                ]
                .prop_map(Mutation::KeepRatio),
                prop_oneof![
                    Just(f64::NAN),
                    Just(f64::INFINITY),
                    Just(f64::NEG_INFINITY),
                    (-10.0f64..0.0).prop_filter("below 0", |r| *r < 0.0),
                    (1.0f64..100.0).prop_filter("above 1", |r| *r > 1.0),
                ]
                .prop_map(Mutation::MinTail),
                Just(Mutation::LearnedWithoutPredictor),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

            #[test]
            fn valid_schedules_are_accepted((num_layers, s) in valid_schedule()) {
                prop_assert!(s.validate(num_layers).is_ok(), "{:?}", s.validate(num_layers));
                let text = toml::to_string(&s).unwrap();
                prop_assert_eq!(PruneSchedule::from_toml_str(&text, "prop").unwrap(), s);
            }

            #[test]
            fn invalid_mutations_are_rejected(
                (num_layers, mut s) in valid_schedule(),
                m in mutation(),
                pick in any::<prop::sample::Index>(),
            ) {
                let i = pick.index(s.stages.len());
                let err = match m {
                    Mutation::LayerTooHigh(extra) => {
                        s.stages[i].layer = num_layers + extra;
                        let e = s.validate(num_layers).unwrap_err();
                        prop_assert!(matches!(e, ScheduleError::LayerOutOfRange { stage, .. } if stage == i), "{e:?}");
                        e
                    }
                    Mutation::RepeatPreviousLayer | Mutation::SwapWithPrevious => {
                        if s.stages.len() < 2 {
                            return Ok(());
                        }
                        let j = i.max(1);
                        if matches!(m, Mutation::RepeatPreviousLayer) {
                            s.stages[j].layer = s.stages[j - 1].layer;
                        } else {
                            s.stages.swap(j - 1, j);
                        }
                        let e = s.validate(num_layers).unwrap_err();
                        prop_assert!(matches!(e, ScheduleError::LayersNotIncreasing { stage, .. } if stage == j), "{e:?}");
                        e
                    }
                    Mutation::KeepRatio(r) => {
                        s.stages[i].keep_ratio = r;
                        let e = s.validate(num_layers).unwrap_err();
                        prop_assert!(matches!(e, ScheduleError::KeepRatio { stage, .. } if stage == i), "{e:?}");
                        e
                    }
                    Mutation::MinTail(r) => {
                        s.min_tail_ratio = r;
                        let e = s.validate(num_layers).unwrap_err();
                        prop_assert!(matches!(e, ScheduleError::MinTailRatio { .. }), "{e:?}");
                        e
                    }
                    Mutation::LearnedWithoutPredictor => {
                        s.scorer = Some(ScorerKind::Learned);
                        s.predictor = None;
                        let e = s.validate(num_layers).unwrap_err();
                        prop_assert!(matches!(e, ScheduleError::LearnedWithoutPredictor { .. }), "{e:?}");
                        e
                    }
                };
                let msg = err.to_string();
                prop_assert!(msg.starts_with("schedule \"prop\": "), "{}", msg);
                prop_assert!(!msg.contains('\n'), "{}", msg);
            }
        }
    }
}
