pub mod schedule;
pub mod scorer;
pub mod select;
