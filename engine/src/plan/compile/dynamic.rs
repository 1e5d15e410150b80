//! Dynamic matrices: an axis written `{ from = "plan", file = "tasks.json" }`, whose values an
//! upstream step's result holds. At compile time the step stays one step (`split.*` from
//! `plan`) with its [`DynamicAxis`]; its templates are tried with a placeholder item that
//! takes any field (recorded, so the run can check each item has them). The run expands it
//! (`plan::expand`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use minijinja::value::{Object, ObjectRepr, Value};
use toml::Spanned;

use super::Compiler;
use super::matrix::Child;
use crate::mission::diagnostics::{ErrorKind, MissionError};
use crate::mission::model::Step;
use crate::plan::DynamicAxis;

/// The most children a dynamic matrix makes unless its step sets `max_children`.
pub const DEFAULT_MAX_CHILDREN: usize = 50;

/// The most children a step's matrix read from a step may make, as written (checked later).
pub(super) fn max_children(step: &Step) -> u64 {
    step.max_children
        .as_ref()
        .and_then(|n| u64::try_from(*n.get_ref()).ok())
        .filter(|n| *n >= 1)
        .unwrap_or(DEFAULT_MAX_CHILDREN as u64)
}

/// Whether a matrix has an axis read from an upstream step (written as a table).
pub(super) fn is_dynamic(matrix: &IndexMap<String, Spanned<serde_json::Value>>) -> bool {
    matrix.values().any(|v| v.get_ref().is_object())
}

/// The placeholder `matrix.<axis>` of a dynamic matrix for `validate`: any field may be read
/// (an object item may have it); the fields read are kept.
#[derive(Debug, Default)]
pub(super) struct DynamicItem {
    axis: String,
    fields: Mutex<BTreeSet<String>>,
}

impl DynamicItem {
    pub(super) fn fields(&self) -> Vec<String> {
        self.fields
            .lock()
            .map(|f| f.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Object for DynamicItem {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        if let Ok(mut fields) = self.fields.lock() {
            fields.insert(key.to_owned());
        }
        Some(Value::from(format!("<{}.{key}>", self.axis)))
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result
    where
        Self: Sized + 'static,
    {
        write!(f, "<{}>", self.axis)
    }
}

impl<'m> Compiler<'m> {
    /// The dynamic axis of step `id`'s matrix, checked, with the one child that stands for
    /// its children until the run expands it; `None` (reported) when it is not well formed.
    pub(super) fn dynamic_axis(
        &mut self,
        id: &str,
        step: &Spanned<Step>,
        matrix: &Spanned<IndexMap<String, Spanned<serde_json::Value>>>,
    ) -> Option<(DynamicAxis, Child)> {
        let axes = matrix.get_ref();
        let (axis, value) = axes.iter().find(|(_, v)| v.get_ref().is_object())?;
        if axes.len() > 1 {
            self.push(
                MissionError::new(
                    ErrorKind::Matrix,
                    format!("the matrix of step `{id}` mixes an axis read from a step with others"),
                )
                .label(value.span(), "read from a step")
                .label(matrix.span(), "in this matrix")
                .help(format!("a matrix read from a step has that one axis: keep `{axis}`, and move the other values into its items (objects)")),
            );
            return None;
        }
        let table = value.get_ref().as_object()?;
        let mut ok = true;
        for key in table
            .keys()
            .filter(|k| !matches!(k.as_str(), "from" | "file"))
        {
            ok = false;
            self.push(
                MissionError::new(
                    ErrorKind::Matrix,
                    format!("unknown key `{key}` in matrix axis `{axis}` of step `{id}`"),
                )
                .label(value.span(), "a matrix read from a step has `from` and `file`")
                .help(format!(
                    "write `{axis} = {{ from = \"plan\", file = \"tasks.json\" }}`; `max_children` is a key of the step"
                )),
            );
        }
        let text = |key: &str| {
            table
                .get(key)
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let (Some(from), Some(file)) = (text("from"), text("file")) else {
            self.push(
                MissionError::new(
                    ErrorKind::Matrix,
                    format!("matrix axis `{axis}` of step `{id}` needs `from` and `file`"),
                )
                .label(value.span(), "expected `{ from = \"<step>\", file = \"<path>\" }`")
                .help(format!(
                    "name the step whose result holds the list, and the JSON file: `{axis} = {{ from = \"plan\", file = \"tasks.json\" }}`"
                )),
            );
            return None;
        };
        if file.starts_with('/') || file.split('/').any(|part| part == "..") {
            ok = false;
            self.push(
                MissionError::new(
                    ErrorKind::Matrix,
                    format!("the file `{file}` of matrix axis `{axis}` leaves the repository"),
                )
                .label(value.span(), "not a path inside the step's result")
                .help("write the file's path from the repository root, e.g. `tasks.json` or `plan/tasks.json`"),
            );
        }
        let needs = step.get_ref().needs.iter().flatten();
        if !needs.clone().any(|n| n.get_ref() == from) {
            ok = false;
            self.push(
                MissionError::new(
                    ErrorKind::Matrix,
                    format!("step `{id}` reads its matrix from `{from}`, which it does not need"),
                )
                .label(value.span(), format!("read from `{from}`"))
                .help(format!("add `\"{from}\"` to the step's `needs`")),
            );
        } else if let Some(source) = self.file.steps.get(from)
            && let Some(m) = &source.get_ref().matrix
        {
            ok = false;
            self.push(
                MissionError::new(
                    ErrorKind::Matrix,
                    format!("step `{id}` reads its matrix from `{from}`, a matrix step"),
                )
                .label(value.span(), format!("read from `{from}`"))
                .label(m.span(), "which has many results")
                .help("read the list from a step with one result (e.g. a planning step that writes it)"),
            );
        }
        let max_children = self
            .positive(step.get_ref().max_children.as_ref(), "max_children")
            .map_or(DEFAULT_MAX_CHILDREN, |n| n as usize);
        ok.then(|| {
            (
                DynamicAxis {
                    axis: axis.clone(),
                    from: from.to_owned(),
                    file: file.to_owned(),
                    max_children,
                    fields: Vec::new(),
                },
                Child {
                    id: id.to_owned(),
                    matrix: IndexMap::from([(axis.clone(), serde_json::Value::Null)]),
                },
            )
        })
    }

    /// `max_children` written on a step whose matrix is not read from a step.
    pub(super) fn check_max_children(&mut self, id: &str, step: &Step) {
        if let Some(max) = &step.max_children {
            self.push(
                MissionError::new(
                    ErrorKind::Matrix,
                    format!("step `{id}` has `max_children` but no matrix read from a step"),
                )
                .label(max.span(), "not used")
                .help("`max_children` caps a matrix written `{ from = \"<step>\", file = \"<path>\" }`: remove it, or add such a matrix"),
            );
        }
    }
}

/// The `matrix` a dynamic step's templates are tried with: its axis is `item`.
pub(super) fn placeholder_matrix(axis: &str) -> Arc<DynamicItem> {
    Arc::new(DynamicItem {
        axis: axis.to_owned(),
        fields: Mutex::default(),
    })
}
