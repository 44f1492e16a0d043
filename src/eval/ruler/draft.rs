//! What every task generator provides: a sample's answers and its prompt for any haystack
//! size, so that the size can be searched for (`fit`) apart from the task.

/// A prompt before the chat template: fed as `wrap(body) + answer_prefix`.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// The task template filled in, with any in-context example before it.
    pub body: String,
    /// Opens the answer (RULER's `answer_prefix`).
    pub answer_prefix: String,
    /// Text whose first token's position is reported (the needle holding the first answer,
    /// the chain's first statement), when the task has one.
    pub anchor: Option<String>,
}

/// One sample of one task, its random content fixed, its haystack size free.
pub trait Generator {
    /// The strings the answer must contain.
    fn references(&self) -> Vec<String>;
    /// The smallest haystack the task is defined with.
    fn min_units(&self) -> usize;
    /// The largest haystack it can make, if bounded.
    fn max_units(&self) -> Option<usize> {
        None
    }
    /// A prompt length in tokens below which the task is not defined whatever the haystack
    /// (on top of the prompt at `min_units`).
    fn min_length(&self) -> usize {
        0
    }
    /// The prompt with a haystack of `units` (noise sentences, prose words, needle lines,
    /// listed words, coded words: the task's unit).
    fn render(&self, units: usize) -> Draft;
    /// The asked depth of the first answer's needle, for needle tasks.
    fn depth(&self) -> Option<f64> {
        None
    }
}
