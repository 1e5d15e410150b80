//! Ids: the rule every step, mission and profile id follows, the suggestion offered for an
//! invalid one, and how a matrix value becomes part of a child's id (`<step>.<value>...`).

use std::ops::Range;

use crate::mission::diagnostics::{ErrorKind, MissionError};

/// The longest step id, in bytes: ids name directories, log files and refs, whose components
/// may not pass 255 bytes (with room for suffixes such as `.lock`).
pub const MAX_ID_BYTES: usize = 200;

/// Whether `id` is a valid step, mission or profile id: `[a-z0-9][a-z0-9_-]*`.
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

pub(super) const ID_RULE: &str =
    "ids use lower-case letters, digits, `_` and `-`, and start with a letter or digit";

pub(super) fn id_help(id: &str) -> String {
    format!("{ID_RULE}: e.g. `{}`", to_id(id))
}

/// `invalid <what> `<id>``, labelled at `span`, with the rule and a suggestion.
pub(super) fn invalid_id(what: &str, id: &str, span: Range<usize>) -> MissionError {
    MissionError::new(ErrorKind::InvalidId, format!("invalid {what} `{id}`"))
        .label(span, "not a valid id")
        .help(id_help(id))
}

/// `My Step!` -> `my-step-`: an id suggestion for an invalid one.
pub(super) fn to_id(text: &str) -> String {
    let mut id = id_chars(text);
    if id.is_empty() || id.starts_with(['-', '_']) {
        id.insert(0, 'x');
    }
    id
}

/// A matrix child's id: `<step>.<value>`, the value as id characters.
pub fn child_id(step: &str, value: &serde_json::Value) -> String {
    format!("{step}.{}", value_id(value))
}

/// What is wrong with a matrix's child ids (a static matrix's or a dynamic one's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildIdProblem {
    /// The child at this index has an id over [`MAX_ID_BYTES`] (only the first is named).
    TooLong(usize),
    /// The child at the second index has the same id as the one at the first.
    Same(usize, usize),
}

/// The help for a child id that is too long.
pub const TOO_LONG_HELP: &str = "matrix values become part of step ids, which name worktrees, log files and branches: use shorter values (e.g. a short name, with the long text in `vars`)";
/// The help for two children with the same id.
pub const SAME_HELP: &str = "matrix values become id characters (others turn into `-`): make the values differ in letters or digits";

/// The problems of a matrix's child ids, in order: the first id that is too long, then each
/// id that repeats an earlier one.
pub fn child_id_problems<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<ChildIdProblem> {
    let mut problems = Vec::new();
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut long = false;
    for (i, id) in ids.into_iter().enumerate() {
        if id.len() > MAX_ID_BYTES && !long {
            long = true;
            problems.push(ChildIdProblem::TooLong(i));
        }
        match seen.get(id) {
            Some(&first) => problems.push(ChildIdProblem::Same(first, i)),
            None => {
                seen.insert(id, i);
            }
        }
    }
    problems
}

/// A matrix value as id characters: lower-cased, anything else becomes `-`.
pub(super) fn value_id(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.is_empty() {
        return "-".to_owned();
    }
    id_chars(&text)
}

/// `text` lower-cased, with every character an id cannot hold turned into `-`.
fn id_chars(text: &str) -> String {
    text.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .collect()
}

/// The start of a long id, for messages.
pub(super) fn shorten(id: &str) -> String {
    match id.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &id[..at]),
        None => id.to_owned(),
    }
}
