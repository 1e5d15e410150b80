//! Diagnostics for templates: where in the file a problem inside a template string is (template
//! offsets mapped to file spans), and why a template failed on its run-time context (which name
//! is undefined, what it probably meant, or that a step is not upstream).

use std::ops::Range;

use indexmap::IndexMap;
use minijinja::value::Value;
use toml::Spanned;

use super::{Compiler, code_list};
use crate::mission::diagnostics::{ErrorKind, MissionError};
use crate::mission::suggest::{closest, did_you_mean};
use crate::plan::template::{CONTEXT_NAMES, FAILURE_FIELDS, STEP_FIELDS};

impl<'m> Compiler<'m> {
    /// A span inside a TOML string value, or the whole value when escapes shift offsets.
    pub(super) fn span_in(
        &self,
        value: &Spanned<String>,
        range: Option<Range<usize>>,
    ) -> Range<usize> {
        let span = value.span();
        let Some(r) = range.filter(|r| r.end <= value.get_ref().len()) else {
            return span;
        };
        if let Some(offset) = content_offset(&self.mission.source, value) {
            return span.start + offset + r.start..span.start + offset + r.end.max(r.start + 1);
        }
        // Escapes shift offsets: find the same text in the file, if it is there only once.
        let text = value.get_ref().get(r).unwrap_or("");
        let raw = self.mission.source.get(span.clone()).unwrap_or("");
        match (raw.find(text), raw.rfind(text)) {
            (Some(a), Some(b)) if a == b && !text.is_empty() => {
                span.start + a..span.start + a + text.len()
            }
            _ => span,
        }
    }

    /// Explains a template that failed on the context it will have: which name is undefined,
    /// what it probably meant, or that a step is not upstream. `step` is the step whose
    /// template it is, `None` for the mission's own (`gate`, `setup`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn render_error(
        &mut self,
        error: &minijinja::Error,
        value: &Spanned<String>,
        field: &str,
        step: Option<&str>,
        ctx: &Value,
        vars: &IndexMap<String, serde_json::Value>,
        matrix: &IndexMap<String, serde_json::Value>,
        all_ids: &[String],
    ) {
        let source = value.get_ref();
        // minijinja's detail names the whole undefined path (`steps.plan`); its range may
        // cover only the last part of it, so widen the range to the path where it is written.
        let named = error
            .detail()
            .and_then(|d| d.strip_prefix('`'))
            .and_then(|d| d.split_once('`'))
            .map(|(name, _)| name.to_owned());
        let range = match (error.range(), &named) {
            (Some(r), Some(name)) => {
                let window = r.start.saturating_sub(name.len() + 8)..r.end.min(source.len());
                source
                    .get(window.clone())
                    .and_then(|w| w.find(name.as_str()))
                    .map(|at| window.start + at..window.start + at + name.len())
                    .or(Some(r))
            }
            (r, _) => r,
        };
        let span = self.span_in(value, range.clone());
        let text = named.unwrap_or_else(|| {
            range
                .and_then(|r| source.get(r))
                .unwrap_or("")
                .trim()
                .to_owned()
        });
        let place = match step {
            None => format!("the mission's `{field}`"),
            Some(step) => format!("`{field}` of step `{step}`"),
        };
        if error.kind() != minijinja::ErrorKind::UndefinedError {
            let detail = error
                .detail()
                .map_or_else(|| error.to_string(), str::to_owned);
            let (detail, help) = match detail.split_once(": use ") {
                Some((what, fix)) => (what.to_owned(), format!("use {fix}")),
                None => (
                    detail,
                    "fix the template so it renders with the values it will have".to_owned(),
                ),
            };
            self.push(
                MissionError::new(
                    ErrorKind::Template,
                    format!("template error in {place}: {detail}"),
                )
                .label(span, "fails here")
                .help(help),
            );
            return;
        }
        let path = name_path(&text);
        let after = error
            .range()
            .map_or("", |r| &source[r.end.min(source.len())..]);
        let (message, label, help, kind) = match path.as_slice() {
            [root, id, rest @ ..] if root == "steps" => {
                let visible = ctx
                    .get_attr("steps")
                    .ok()
                    .and_then(|s| s.get_attr(id).ok())
                    .is_some_and(|v| !v.is_undefined());
                let dashed = after.strip_prefix('-').map(|tail| {
                    let tail: String = tail
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                        .collect();
                    format!("{id}-{tail}")
                });
                if let Some(full) = dashed.filter(|f| all_ids.iter().any(|i| i == f)) {
                    (
                        format!("`steps.{full}` reads as `steps.{id} - ...`"),
                        "a step id with `-` needs brackets".to_owned(),
                        format!("write `steps[\"{full}\"]`"),
                        ErrorKind::UndefinedName,
                    )
                } else if visible {
                    let field = rest.first().cloned().unwrap_or_default();
                    (
                        format!("`steps.{id}` has no field `{field}`"),
                        "undefined".to_owned(),
                        did_you_mean(&field, STEP_FIELDS.iter().copied(), "a step's fields are"),
                        ErrorKind::UndefinedName,
                    )
                } else if all_ids.iter().any(|i| i == id) {
                    let fix = match step {
                        None => "the mission's templates see every step".to_owned(),
                        Some(step) => format!(
                            "add \"{id}\" to `needs` of step `{step}`, so its result is there when `{step}` runs"
                        ),
                    };
                    (
                        format!(
                            "step `{id}` is not upstream of {}",
                            match step {
                                None => "this template".to_owned(),
                                Some(step) => format!("step `{step}`"),
                            }
                        ),
                        format!("`{}` does not need `{id}`", step.unwrap_or_default()),
                        fix,
                        ErrorKind::NotUpstream,
                    )
                } else {
                    (
                        format!("no step `{id}`"),
                        "undefined".to_owned(),
                        did_you_mean(id, all_ids.iter().map(String::as_str), "the steps are"),
                        ErrorKind::UndefinedName,
                    )
                }
            }
            [root, name, ..] if root == "vars" => (
                format!("undefined var `vars.{name}` in {place}"),
                "undefined".to_owned(),
                match closest(name, vars.keys().map(String::as_str)) {
                    Some(c) => format!("did you mean `vars.{c}`?"),
                    None => format!("declare it under `[vars]`, e.g. `{name} = \"...\"`"),
                },
                ErrorKind::UndefinedName,
            ),
            [root, name, ..] if root == "matrix" => (
                format!("undefined matrix axis `matrix.{name}` in {place}"),
                "undefined".to_owned(),
                if matrix.is_empty() {
                    "this step has no `matrix`: add one, or remove the reference".to_owned()
                } else if let Some((axis, _)) = matrix.iter().find(|(_, v)| v.is_null()) {
                    // A matrix read from a step (its values are not known yet).
                    format!(
                        "its one axis is `{axis}`, read from a step: an object item's fields are `matrix.{axis}.{name}`"
                    )
                } else {
                    did_you_mean(name, matrix.keys().map(String::as_str), "the axes are")
                },
                ErrorKind::UndefinedName,
            ),
            [root, name, ..] if root == "failure" => (
                format!("`failure` has no field `{name}`"),
                "undefined".to_owned(),
                did_you_mean(name, FAILURE_FIELDS.iter().copied(), "its fields are"),
                ErrorKind::UndefinedName,
            ),
            [root, ..] if root == "failure" => (
                format!("`failure` is not defined in {place}"),
                "undefined here".to_owned(),
                "`failure` describes the last failed attempt: use it in `retry_prompt`".to_owned(),
                ErrorKind::UndefinedName,
            ),
            [root, ..] => {
                let mut names: Vec<&str> = CONTEXT_NAMES.to_vec();
                if field == "retry_prompt" {
                    names.push("failure");
                }
                (
                    format!("undefined name `{text}` in {place}"),
                    "undefined".to_owned(),
                    did_you_mean(root, names.iter().copied(), "a template sees"),
                    ErrorKind::UndefinedName,
                )
            }
            [] => (
                format!("undefined value in {place}"),
                "undefined".to_owned(),
                format!(
                    "a template sees {}",
                    code_list(CONTEXT_NAMES.iter().copied())
                ),
                ErrorKind::UndefinedName,
            ),
        };
        self.push(
            MissionError::new(kind, message)
                .label(span, label)
                .help(help),
        );
    }
}

/// `steps["a-b"].diff` -> [steps, a-b, diff]; `vars.x` -> [vars, x].
fn name_path(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    let ident = |s: &str| {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    let n = ident(rest);
    if n == 0 {
        return parts;
    }
    parts.push(rest[..n].to_owned());
    rest = &rest[n..];
    loop {
        if let Some(r) = rest.strip_prefix('.') {
            let n = ident(r);
            if n == 0 {
                break;
            }
            parts.push(r[..n].to_owned());
            rest = &r[n..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let r = r.trim_start();
            let Some(q) = r.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                break;
            };
            let Some(end) = r[1..].find(q) else { break };
            parts.push(r[1..1 + end].to_owned());
            let Some(close) = r[1 + end..].find(']') else {
                break;
            };
            rest = &r[1 + end + close + 1..];
        } else {
            break;
        }
    }
    parts
}

/// The byte offset of a TOML string's content from the start of its span, when the content is
/// written exactly as it decodes (no escapes), so template offsets map onto the file.
fn content_offset(source: &str, value: &Spanned<String>) -> Option<usize> {
    let raw = source.get(value.span())?;
    let decoded = value.get_ref();
    for delim in ["\"\"\"", "'''", "\"", "'"] {
        if raw.starts_with(delim) && raw.ends_with(delim) && raw.len() >= 2 * delim.len() {
            let mut offset = delim.len();
            let mut content = &raw[delim.len()..raw.len() - delim.len()];
            if delim.len() == 3 {
                if let Some(c) = content.strip_prefix("\r\n") {
                    content = c;
                    offset += 2;
                } else if let Some(c) = content.strip_prefix('\n') {
                    content = c;
                    offset += 1;
                }
            }
            return (content == decoded).then_some(offset);
        }
    }
    None
}
