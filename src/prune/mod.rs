//! SDTP pruning, as data and decisions: no model run happens here.
//!
//! - [`schedule`]: `PruneSchedule` (after which layers to prune and how much, the protected
//!   head and tail, the scorer and its `[attention]` settings), the presets in `configs/`,
//!   TOML and validation before the weights load;
//! - [`scorer`]: the `Scorer` trait and the `attention` (default), `learned`, `norm` and
//!   `random` scorers; [`score_ops`]: pooling, whole sentences and ranks as pure functions;
//! - [`select`]: which tokens survive a stage, from scores alone, with the invariants the
//!   prefill relies on (sorted, unique, the head, the tail and the last token kept, an exact
//!   count).

pub mod schedule;
pub mod score_ops;
pub mod scorer;
pub mod select;
