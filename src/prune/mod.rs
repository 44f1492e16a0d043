pub mod schedule;
pub mod score_ops;
pub mod scorer;
pub mod select;
