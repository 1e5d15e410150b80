//! The mission's `[vars]`: each must be a plain value (or a list of them), and `--set name=value`
//! overrides one, converted to the declared var's type ([`SetError`] when it does not fit).

use indexmap::IndexMap;

use super::{Compiler, code_list};
use crate::mission::diagnostics::{ErrorKind, MissionError};
use crate::mission::suggest::closest;

/// A `--set` that does not fit the mission.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub enum SetError {
    #[error("`--set {name}=...`: the mission declares no var `{name}`")]
    #[diagnostic(help("{}", declared_help(.name, .declared)))]
    Unknown { name: String, declared: Vec<String> },
    #[error("`--set {name}={value}`: `{name}` is {expected} in the mission")]
    #[diagnostic(help("give `{name}` {expected}, e.g. `--set {name}={example}`"))]
    BadValue {
        name: String,
        value: String,
        expected: &'static str,
        example: String,
    },
}

fn declared_help(name: &str, declared: &[String]) -> String {
    if declared.is_empty() {
        return "the mission has no `[vars]`: declare the var there to make it settable".to_owned();
    }
    let list = code_list(declared.iter().map(String::as_str));
    match closest(name, declared.iter().map(String::as_str)) {
        Some(c) => format!("did you mean `{c}`? the declared vars are {list}"),
        None => format!("the declared vars are {list}"),
    }
}

impl<'m> Compiler<'m> {
    pub(super) fn vars(&mut self) -> IndexMap<String, serde_json::Value> {
        let mut vars = IndexMap::new();
        for (name, value) in &self.file.vars {
            let ok = match value.get_ref() {
                serde_json::Value::Array(items) => items.iter().all(is_scalar),
                v => is_scalar(v),
            };
            if !ok {
                self.push(
                    MissionError::new(
                        ErrorKind::Value,
                        format!("var `{name}` must be a string, number, boolean or list of them"),
                    )
                    .label(value.span(), "not a plain value")
                    .help(
                        "write the var as a string, a number, `true`/`false`, or a list of those",
                    ),
                );
            }
            vars.insert(name.clone(), value.get_ref().clone());
        }
        vars
    }
}

pub(super) fn is_scalar(v: &serde_json::Value) -> bool {
    matches!(
        v,
        serde_json::Value::String(_) | serde_json::Value::Number(_) | serde_json::Value::Bool(_)
    )
}

/// Applies `--set name=value`, converting to the declared var's type.
pub(super) fn apply_sets(
    vars: &mut IndexMap<String, serde_json::Value>,
    sets: &[(String, String)],
) -> Result<(), SetError> {
    for (name, text) in sets {
        let Some(current) = vars.get(name) else {
            return Err(SetError::Unknown {
                name: name.clone(),
                declared: vars.keys().cloned().collect(),
            });
        };
        let bad = |expected: &'static str, example: &str| SetError::BadValue {
            name: name.clone(),
            value: text.clone(),
            expected,
            example: example.to_owned(),
        };
        let value = match current {
            serde_json::Value::Bool(_) => match text.as_str() {
                "true" => serde_json::Value::Bool(true),
                "false" => serde_json::Value::Bool(false),
                _ => return Err(bad("a boolean", "true")),
            },
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => text
                .parse::<i64>()
                .map(serde_json::Value::from)
                .map_err(|_| bad("a whole number", "3"))?,
            serde_json::Value::Number(_) => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number)
                .ok_or_else(|| bad("a number", "1.5"))?,
            serde_json::Value::Array(_) => serde_json::Value::Array(
                text.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| serde_json::Value::String(s.trim().to_owned()))
                    .collect(),
            ),
            _ => serde_json::Value::String(text.clone()),
        };
        vars.insert(name.clone(), value);
    }
    Ok(())
}
