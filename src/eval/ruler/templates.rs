//! RULER's prompt templates (`scripts/data/synthetic/constants.py`), verbatim, and the
//! rewording its NIAH generator applies when a single value is asked for. Each template is a
//! body with `{context}` (and `{query}`) and an answer prefix that opens the answer; the
//! prompt is the body, then the answer prefix (after the chat template's assistant header
//! when one is used, as RULER's model templates do).

/// The NIAH body; `{type_needle_v}` is "numbers" or "uuids".
pub const NIAH: &str = "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic {type_needle_v} for {query} mentioned in the provided text?";
pub const NIAH_ANSWER: &str =
    " The special magic {type_needle_v} for {query} mentioned in the provided text are";

/// One needle; `{type_needle_v}` stays plural here, as in RULER.
pub const NEEDLE: &str = "One of the special magic {type_needle_v} for {key} is: {value}.";

pub const VT: &str = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\nQuestion: Find all variables that are assigned the value {query} in the text above.";
/// Ends in a space, as RULER's does.
pub const VT_ANSWER: &str = " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are assigned the value {query}, they are: ";

pub const CWE: &str = "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?";
pub const CWE_ANSWER: &str = " Answer: The top 10 words that appear most often in the list are:";

pub const FWE: &str = "Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text?";
pub const FWE_ANSWER: &str =
    " Answer: According to the coded text above, the three most frequently appeared words are:";

/// The NIAH body and answer prefix for `values` of kind `type_needle_v` ("numbers" or
/// "uuids") asked about `query`. With one value asked for, RULER rewrites the template to the
/// singular: "Some" → "A", "are all" → "is", "are" → "is" and "numbers" → "number"; the same
/// replacements are applied here, to the template before it is filled.
pub fn niah_template(type_needle_v: &str, asked_values: usize) -> (String, String) {
    let single = asked_values == 1;
    let reword = |template: &str| -> String {
        let mut t = template.to_string();
        if single {
            t = t
                .replace("Some", "A")
                .replace("are all", "is")
                .replace("are", "is")
                .replace("answers", "answer");
        }
        let kind = if single {
            type_needle_v.strip_suffix('s').unwrap_or(type_needle_v)
        } else {
            type_needle_v
        };
        t.replace("{type_needle_v}", kind)
    };
    (reword(NIAH), reword(NIAH_ANSWER))
}

/// RULER's way of naming several queried keys: "a, b, c, and d" (just "a" for one).
pub fn join_queries(keys: &[String]) -> String {
    match keys {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

/// `template` with each `{name}` replaced by its value, in order: pass the context last, so
/// braces in it are never taken for a placeholder.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_string(), |t, (name, value)| {
            t.replace(&format!("{{{name}}}"), value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_value_wording_matches_ruler() {
        let (body, answer) = niah_template("numbers", 1);
        assert_eq!(
            fill(&body, &[("context", "CTX"), ("query", "Q")]),
            "A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about the number afterwards.\nCTX\nWhat is the special magic number for Q mentioned in the provided text?"
        );
        assert_eq!(
            fill(&answer, &[("query", "Q")]),
            " The special magic number for Q mentioned in the provided text is"
        );
        let (body, answer) = niah_template("uuids", 4);
        assert!(body.starts_with("Some special magic uuids are hidden"));
        assert!(body.contains("What are all the special magic uuids for {query}"));
        assert!(answer.ends_with("provided text are"));
    }

    #[test]
    fn queries_and_fill() {
        let keys: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        assert_eq!(join_queries(&keys), "a, b, c, and d");
        assert_eq!(join_queries(&keys[..1]), "a");
        assert_eq!(join_queries(&keys[..2]), "a, and b");
        assert_eq!(
            fill(
                NEEDLE,
                &[("type_needle_v", "numbers"), ("key", "k"), ("value", "1")]
            ),
            "One of the special magic numbers for k is: 1."
        );
    }
}
