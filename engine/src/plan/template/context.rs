//! What a template sees: the top-level names ([`CONTEXT_NAMES`]), the `steps` object that shows
//! only upstream steps ([`StepsContext`]), the placeholders `validate` renders with, `file()`,
//! and `steps.my-step` written where `steps["my-step"]` was meant ([`dashed_step_refs`]).

use std::ops::Range;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectExt as _, Value};
use minijinja::{Error, ErrorKind};

/// The names a template sees at the top level, for "did you mean".
pub const CONTEXT_NAMES: &[&str] = &[
    "vars", "mission", "run", "matrix", "attempt", "steps", "file",
];

/// The fields of `steps.<id>`.
pub const STEP_FIELDS: &[&str] = &[
    "outcome", "cached", "output", "diff", "files", "commit", "cost_usd",
];

/// The fields of `failure` in a retry prompt.
pub const FAILURE_FIELDS: &[&str] = &["kind", "command", "exit_code", "output"];

/// The ids templates may write after `steps.`, and the concrete steps (plan indices) each
/// stands for: a step or matrix child stands for itself, a matrix step for all its children.
#[derive(Debug, Default)]
pub struct StepKeys {
    pub keys: indexmap::IndexMap<String, Vec<usize>>,
}

/// The `steps` context of one template: only the steps upstream of its step are there.
#[derive(Debug)]
pub struct StepsContext {
    pub keys: Arc<StepKeys>,
    /// The concrete steps this template may see, by plan index.
    pub visible: Arc<fixedbitset::FixedBitSet>,
    /// Each key's value (a step's result, a matrix step's summary)...
    pub values: Arc<std::collections::HashMap<String, Value>>,
    /// ...or this one for keys not in `values` (placeholders before the run).
    pub default: Option<Value>,
}

impl StepsContext {
    fn sees(&self, key: &str) -> bool {
        self.keys
            .keys
            .get(key)
            .is_some_and(|steps| steps.iter().all(|&i| self.visible.contains(i)))
    }
}

impl Object for StepsContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        if !self.sees(key) {
            return None;
        }
        self.values
            .get(key)
            .cloned()
            .or_else(|| self.default.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_enumerator(|this| {
            Box::new(
                this.keys
                    .keys
                    .keys()
                    .filter(|k| this.sees(k))
                    .map(|k| Value::from(k.as_str()))
                    .collect::<Vec<_>>()
                    .into_iter(),
            )
        })
    }
}

/// What a step's result looks like to templates before the run (for `validate`).
pub fn placeholder_step() -> Value {
    map([
        ("outcome", Value::from("passed")),
        ("cached", Value::from(false)),
        ("output", Value::from("")),
        ("diff", Value::from("")),
        ("files", Value::from(Vec::<Value>::new())),
        (
            "commit",
            Value::from("0000000000000000000000000000000000000000"),
        ),
        ("cost_usd", Value::from(())),
    ])
}

/// A failure as `retry_prompt` sees it before the run (for `validate`).
pub fn placeholder_failure() -> Value {
    map([
        ("kind", Value::from("gate")),
        ("command", Value::from("true")),
        ("exit_code", Value::from(1)),
        ("output", Value::from("")),
    ])
}

/// The `file(path)` function of a context: reads `path` with `read` (from the step's base
/// commit at run time).
pub fn file_function(
    read: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
) -> Value {
    Value::from_function(move |path: &str| {
        read(path).map_err(|why| Error::new(ErrorKind::InvalidOperation, why))
    })
}

/// The context of one template: a map of the names in [`CONTEXT_NAMES`] (and `failure`).
pub fn context(pairs: Vec<(&'static str, Value)>) -> Value {
    map(pairs)
}

/// A template map from string keys.
pub fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::from(
        pairs
            .into_iter()
            .collect::<std::collections::BTreeMap<&str, Value>>(),
    )
}

/// `steps.my-step` written where `steps["my-step"]` was meant: spans and the ids meant.
/// (Jinja reads `steps.my-step` as `steps.my - step`.)
pub fn dashed_step_refs(source: &str, ids: &[String]) -> Vec<(Range<usize>, String)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = source[from..].find("steps.") {
        let start = from + at;
        let name_start = start + "steps.".len();
        let name_len = source[name_start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(source.len() - name_start);
        let name = &source[name_start..name_start + name_len];
        let before_ok = !source[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if before_ok && name.contains('-') {
            // The longest known id that the dashed name starts with.
            let meant = ids
                .iter()
                .filter(|id| id.contains('-') && name.starts_with(id.as_str()))
                .filter(|id| {
                    let rest = &name[id.len()..];
                    rest.is_empty() || rest.starts_with('-')
                })
                .max_by_key(|id| id.len());
            if let Some(id) = meant {
                found.push((start..name_start + id.len(), id.clone()));
            }
        }
        from = name_start;
    }
    found
}
