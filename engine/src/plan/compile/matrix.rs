//! Matrices: a step's `matrix` expanded into one child per combination of its axes' values.

use std::ops::Range;

use indexmap::IndexMap;
use toml::Spanned;

use super::Compiler;
use super::vars::is_scalar;
use crate::mission::diagnostics::{ErrorKind, MissionError};
use crate::mission::model::Step;
use crate::plan::ids::value_id;

/// One concrete step of a declared step: its id and its matrix values.
pub(super) struct Child {
    pub(super) id: String,
    pub(super) matrix: IndexMap<String, serde_json::Value>,
}

impl<'m> Compiler<'m> {
    pub(super) fn expand_matrix(
        &mut self,
        id: &str,
        matrix: &Spanned<IndexMap<String, Spanned<serde_json::Value>>>,
    ) -> Vec<Child> {
        if matrix.get_ref().is_empty() {
            self.push(
                MissionError::new(ErrorKind::Matrix, format!("the matrix of step `{id}` has no axes"))
                    .label(matrix.span(), "empty matrix")
                    .help("add an axis, e.g. `matrix = { part = [\"lexer\", \"ast\"] }`, or remove `matrix`"),
            );
            return Vec::new();
        }
        let mut combos: Vec<(String, IndexMap<String, serde_json::Value>)> =
            vec![(id.to_owned(), IndexMap::new())];
        for (axis, values) in matrix.get_ref() {
            let items = match values.get_ref() {
                serde_json::Value::Array(items) if items.is_empty() => {
                    self.push(
                        MissionError::new(
                            ErrorKind::Matrix,
                            format!("matrix axis `{axis}` of step `{id}` is empty"),
                        )
                        .label(values.span(), "no values")
                        .help(format!(
                            "list at least one value, e.g. `{axis} = [\"a\", \"b\"]`"
                        )),
                    );
                    return Vec::new();
                }
                serde_json::Value::Array(items) if items.iter().all(is_scalar) => items,
                serde_json::Value::Array(_) => {
                    self.push(
                        MissionError::new(
                            ErrorKind::Matrix,
                            format!("matrix axis `{axis}` of step `{id}` holds a list or table"),
                        )
                        .label(values.span(), "values must be strings, numbers or booleans")
                        .help("list plain values, e.g. `[\"lexer\", \"ast\"]`"),
                    );
                    return Vec::new();
                }
                _ => {
                    self.push(
                        MissionError::new(
                            ErrorKind::Matrix,
                            format!("matrix axis `{axis}` of step `{id}` is not a list"),
                        )
                        .label(values.span(), "expected a list of values")
                        .help(format!(
                            "write the axis as a list, e.g. `{axis} = [{}]`",
                            values.get_ref()
                        )),
                    );
                    return Vec::new();
                }
            };
            combos = combos
                .into_iter()
                .flat_map(|(cid, m)| {
                    items.iter().map(move |v| {
                        let mut m = m.clone();
                        m.insert(axis.clone(), v.clone());
                        (format!("{cid}.{}", value_id(v)), m)
                    })
                })
                .collect();
        }
        combos
            .into_iter()
            .map(|(id, matrix)| Child { id, matrix })
            .collect()
    }
}

/// How many children a matrix expands to (axes that are not lists count as one; they are
/// reported when expanded).
pub(super) fn matrix_size(matrix: &IndexMap<String, Spanned<serde_json::Value>>) -> u64 {
    matrix
        .values()
        .fold(1u64, |n, values| match values.get_ref() {
            serde_json::Value::Array(items) => n.saturating_mul(items.len() as u64),
            _ => n,
        })
}

/// The span of the matrix values that make up a child (its first axis value), for labels.
pub(super) fn child_span(
    step: &Spanned<Step>,
    values: &IndexMap<String, serde_json::Value>,
) -> Range<usize> {
    let Some(matrix) = &step.get_ref().matrix else {
        return step.span();
    };
    for (axis, spanned) in matrix.get_ref() {
        if values.contains_key(axis) {
            return spanned.span();
        }
    }
    matrix.span()
}
