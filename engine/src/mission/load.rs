//! Loading: TOML text -> [`MissionFile`] with spans, reporting every problem of the file at once.
//!
//! Three passes, each reporting all it finds: TOML syntax (recovering parser), unknown keys
//! (with "did you mean" from the keys valid at that place), and types (serde, retried key by
//! key on failure so each wrong value is named). Meaning is checked later, by `plan::compile`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostics::{ErrorKind, MissionError, MissionErrors, Problems};
use super::model::{MissionFile, keys};
use super::suggest::did_you_mean;

/// A mission file read from disk: its text, where it came from, and its typed content.
#[derive(Debug, Clone)]
pub struct Mission {
    /// The path as the user gave it (used in diagnostics).
    pub path: PathBuf,
    pub source: String,
    pub file: MissionFile,
    /// Spans of the `[steps.<id>]` keys, by id.
    pub step_keys: IndexMap<String, Range<usize>>,
    /// Spans of the `[agents.<name>]` keys, by name.
    pub agent_keys: IndexMap<String, Range<usize>>,
    /// Unknown keys found while loading. They do not stop the other checks: `compile` reports
    /// them with everything else it finds, so one run shows every problem of the file.
    pub key_errors: Vec<MissionError>,
}

/// Why a mission could not be loaded.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    #[error("cannot read mission file")]
    #[diagnostic(help("check that the file exists and is readable"))]
    Read(#[source] std::io::Error),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(Box<MissionErrors>),
}

impl Mission {
    /// Reads and parses a mission file.
    pub fn load(path: &Path) -> Result<Mission, LoadError> {
        let source = fs_err::read_to_string(path).map_err(LoadError::Read)?;
        Mission::parse(path, source).map_err(|e| LoadError::Invalid(Box::new(e)))
    }

    /// Parses mission text; `path` names it in diagnostics.
    pub fn parse(path: &Path, source: String) -> Result<Mission, MissionErrors> {
        let display = path.display().to_string();
        match parse_file(&source) {
            Ok((file, step_keys, agent_keys, key_errors)) => Ok(Mission {
                path: path.to_owned(),
                source,
                file,
                step_keys,
                agent_keys,
                key_errors,
            }),
            Err(problems) => Err(MissionErrors::new(&display, &source, problems.0)),
        }
    }

    /// The path as shown in diagnostics.
    pub fn display_path(&self) -> String {
        self.path.display().to_string()
    }

    /// The mission's id: its `name`, or else the file stem.
    pub fn name(&self) -> String {
        match &self.file.name {
            Some(name) => name.get_ref().clone(),
            None => self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

type Keys = IndexMap<String, Range<usize>>;

fn parse_file(source: &str) -> Result<(MissionFile, Keys, Keys, Vec<MissionError>), Problems> {
    let mut problems = Problems::default();
    let (mut root, syntax) = DeTable::parse_recoverable(source);
    for error in syntax {
        problems.push(toml_error(&error, ErrorKind::Syntax, source));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    check_keys(root.get_mut(), &mut problems);
    let step_keys = key_spans(root.get_ref(), "steps");
    let agent_keys = key_spans(root.get_ref(), "agents");
    match deserialize_collecting(root, source) {
        // An empty mission would pass and make a branch for nothing.
        Ok(file) if file.steps.is_empty() => {
            let first = source.find('\n').unwrap_or(source.len());
            problems.push(
                MissionError::new(ErrorKind::StepBody, "the mission has no steps")
                    .label(
                        0..first,
                        "a mission runs its `[steps.<id>]` tables, and has none",
                    )
                    .help(
                        "add a step: `[steps.build]` with `run = \"make\"` (a command) or \
                         `prompt = \"...\"` and an `agent` (an agent step)",
                    ),
            );
            Err(problems)
        }
        Ok(file) => Ok((file, step_keys, agent_keys, problems.0)),
        Err(type_errors) => {
            problems.0.extend(type_errors);
            Err(problems)
        }
    }
}

/// The spans of the keys of the table `root[name]`.
fn key_spans(root: &Table<'_>, name: &str) -> Keys {
    match root.get(name).map(|v| v.get_ref()) {
        Some(DeValue::Table(t)) => t
            .iter()
            .map(|(k, _)| (k.get_ref().to_string(), k.span()))
            .collect(),
        _ => Keys::new(),
    }
}

/// A TOML or serde error as a diagnostic at its span.
fn toml_error(error: &toml::de::Error, kind: ErrorKind, source: &str) -> MissionError {
    let message = error.message().trim().to_owned();
    let (first, rest) = match message.split_once('\n') {
        Some((first, rest)) => (first.to_owned(), Some(rest.trim().to_owned())),
        None => (message.clone(), None),
    };
    let span = error.span().unwrap_or(0..0);
    let span = if span.start >= source.len() && !source.is_empty() {
        source.len() - 1..source.len()
    } else {
        span
    };
    let (message, label, help) = match kind {
        ErrorKind::Syntax => (
            "invalid TOML".to_owned(),
            first.clone(),
            rest.unwrap_or_else(|| syntax_help(&first, line_at(source, span.start))),
        ),
        _ => type_message(&first),
    };
    MissionError::new(kind, message)
        .label(span, label)
        .help(help)
}

fn syntax_help(message: &str, line: &str) -> String {
    let (key, value) = line
        .split_once('=')
        .map_or(("", ""), |(k, v)| (k.trim(), v.trim()));
    if message.contains("duplicate key") {
        "each key may appear once in a table: remove or rename one of them".to_owned()
    } else if message.contains("must be quoted") && !value.is_empty() {
        // `gate = python3 -m unittest`: a value TOML cannot read as a number, date or boolean.
        if value.contains('"') {
            format!("quote the value: `{key} = '{value}'`")
        } else {
            format!("quote the value: `{key} = \"{value}\"`")
        }
    } else if value.starts_with('"') && value.matches('"').count() > 2 {
        // `run = "echo "hi""`: the second `"` ended the string.
        let inner = value.trim_start_matches('"').trim_end_matches('"');
        if inner.contains('\'') {
            format!(
                "the value has double quotes inside double quotes: escape the inner ones as `\\\"`, or write `{key} = \"\"\"{inner}\"\"\"`"
            )
        } else {
            format!(
                "the value has double quotes inside double quotes: use single quotes outside, `{key} = '{inner}'`"
            )
        }
    } else if message.contains("string") {
        "close the string with the quote it opened with; use `\"\"\"` for text over several lines"
            .to_owned()
    } else {
        "fix the TOML syntax here (see https://toml.io)".to_owned()
    }
}

/// The line of `source` that holds byte `at`.
fn line_at(source: &str, at: usize) -> &str {
    let at = at.min(source.len());
    let start = source
        .get(..at)
        .and_then(|s| s.rfind('\n'))
        .map_or(0, |i| i + 1);
    let end = source
        .get(at..)
        .and_then(|s| s.find('\n'))
        .map_or(source.len(), |i| at + i);
    source.get(start..end).unwrap_or("")
}

/// Serde's names for what a field takes, in the words of a TOML user.
fn expected_words(expected: &str) -> String {
    match expected {
        "i64" | "u32" | "u64" | "i32" | "usize" => "a whole number".to_owned(),
        "f64" | "f32" => "a number".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a map" => "a table".to_owned(),
        "struct Price" => "a table `{ input_per_mtok = ..., output_per_mtok = ... }`".to_owned(),
        other if other.starts_with("struct ") => "a table".to_owned(),
        other => other.to_owned(),
    }
}

/// Rewords serde's messages ("invalid type: integer `3`, expected a string") for users.
fn type_message(first: &str) -> (String, String, String) {
    if let Some(rest) = first.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        let expected = expected_words(expected);
        return (
            format!("wrong type: expected {expected}, found {found}"),
            format!("this is {found}"),
            format!("write {expected} here"),
        );
    }
    if let Some(rest) = first.strip_prefix("unknown variant ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return (
            format!("unknown value {found}"),
            "not a valid value here".to_owned(),
            format!("write one of {expected}"),
        );
    }
    if let Some(field) = first.strip_prefix("missing field ") {
        return (
            format!("missing key {field}"),
            format!("this table needs {field}"),
            format!("add {field} here"),
        );
    }
    (
        first.to_owned(),
        "here".to_owned(),
        "fix the value here".to_owned(),
    )
}

type Table<'a> = DeTable<'a>;

/// Reports and removes unknown keys at every level the format defines.
fn check_keys(root: &mut Table<'_>, problems: &mut Problems) {
    unknown_keys(
        root,
        keys::MISSION,
        "the mission",
        problems,
        |key| match key {
            "step" => Some("did you mean `steps`? each step is a `[steps.<id>]` table".to_owned()),
            "agent" | "timeout" | "attempts" | "inputs" | "cache" | "strategy" | "retry_prompt" => {
                Some(format!(
                    "`{key}` belongs to a step: set it in `[defaults]` for every step, or on one step"
                ))
            }
            _ => None,
        },
    );
    if let Some(merge) = table_mut(root, "merge") {
        unknown_keys(merge, keys::MERGE, "`merge`", problems, |_| None);
    }
    if let Some(defaults) = table_mut(root, "defaults") {
        unknown_keys(defaults, keys::DEFAULTS, "`[defaults]`", problems, |key| {
            keys::STEP.contains(&key).then(|| {
                format!("`{key}` cannot have a default: set it on each step that needs it")
            })
        });
    }
    if let Some(agents) = table_mut(root, "agents") {
        for (name, profile) in agents.iter_mut() {
            let place = format!("agent profile `{}`", name.get_ref());
            if let DeValue::Table(profile) = profile.get_mut() {
                unknown_keys(profile, keys::AGENT, &place, problems, |_| None);
                if let Some(price) = table_mut(profile, "price") {
                    unknown_keys(price, keys::PRICE, "`price`", problems, |_| None);
                }
            }
        }
    }
    if let Some(steps) = table_mut(root, "steps") {
        for (id, step) in steps.iter_mut() {
            let place = format!("step `{}`", id.get_ref());
            if let DeValue::Table(step) = step.get_mut() {
                unknown_keys(step, keys::STEP, &place, problems, |key| match key {
                    "setup" | "budget_usd" | "max_parallel" => Some(format!(
                        "`{key}` is set for the whole mission: move it to the top of the file"
                    )),
                    "command" | "cmd" | "script" => {
                        Some("a command step's shell command is `run`".to_owned())
                    }
                    "depends_on" | "after" | "requires" => {
                        Some("a step's dependencies are `needs`".to_owned())
                    }
                    _ => None,
                });
                if let Some(merge) = table_mut(step, "merge") {
                    unknown_keys(merge, keys::MERGE, "`merge`", problems, |_| None);
                }
            }
        }
    }
}

fn table_mut<'t, 'a>(table: &'t mut Table<'a>, key: &str) -> Option<&'t mut Table<'a>> {
    match table.get_mut(key).map(|v| v.get_mut()) {
        Some(DeValue::Table(t)) => Some(t),
        _ => None,
    }
}

fn unknown_keys(
    table: &mut Table<'_>,
    valid: &[&str],
    place: &str,
    problems: &mut Problems,
    special: impl Fn(&str) -> Option<String>,
) {
    let mut found = Vec::new();
    for (key, _) in table.iter() {
        let name = key.get_ref().as_ref();
        if !valid.contains(&name) {
            let help = special(name)
                .unwrap_or_else(|| did_you_mean(name, valid.iter().copied(), "valid keys here"));
            found.push(name.to_owned());
            problems.push(
                MissionError::new(
                    ErrorKind::UnknownKey,
                    format!("unknown key `{name}` in {place}"),
                )
                .label(key.span(), "not a key of this table")
                .help(help),
            );
        }
    }
    for key in &found {
        table.remove(key.as_str());
    }
}

/// Deserializes the whole file; on failure, retries piece by piece to name every wrong value.
fn deserialize_collecting(
    root: Spanned<Table<'_>>,
    source: &str,
) -> Result<MissionFile, Vec<MissionError>> {
    let span = root.span();
    let first = match MissionFile::deserialize(toml::de::Deserializer::from(root.clone())) {
        Ok(file) => return Ok(file),
        Err(error) => error,
    };
    let mut errors = Vec::new();
    let table = root.into_inner();
    for (key, value) in table.iter() {
        let nested = matches!(key.get_ref().as_ref(), "steps" | "agents")
            && matches!(value.get_ref(), DeValue::Table(_));
        if nested {
            let DeValue::Table(entries) = value.get_ref() else {
                continue;
            };
            for (name, entry) in entries.iter() {
                let one = |v| {
                    let mut inner = Table::new();
                    inner.insert(name.clone(), v);
                    wrap(
                        key,
                        Spanned::new(value.span(), DeValue::Table(inner)),
                        &span,
                    )
                };
                if let Err(error) = try_file(one(entry.clone())) {
                    collect_fields(entry, one, error, source, &mut errors);
                }
            }
        } else if key.get_ref() == "defaults" {
            if let Err(error) = try_file(wrap(key, value.clone(), &span)) {
                collect_fields(value, |v| wrap(key, v, &span), error, source, &mut errors);
            }
        } else if let Err(error) = try_file(wrap(key, value.clone(), &span)) {
            errors.push(toml_error(&error, ErrorKind::Type, source));
        }
    }
    if errors.is_empty() {
        errors.push(toml_error(&first, ErrorKind::Type, source));
    }
    // Every problem at once: a wrong type elsewhere must not hide a bad duration, which is
    // otherwise checked once the file has loaded.
    errors.extend(raw_durations(&table));
    Err(errors)
}

/// The problems of the `timeout`s written in `[defaults]` and each `[steps.<id>]`, read from
/// the TOML as it is (a string; other types are type errors already).
fn raw_durations(table: &Table<'_>) -> Vec<MissionError> {
    let timeout = |t: &Table<'_>| match t.get("timeout").map(|v| (v.span(), v.get_ref())) {
        Some((span, DeValue::String(text))) => super::duration::check(text, span),
        _ => None,
    };
    let mut errors: Vec<MissionError> = Vec::new();
    if let Some(DeValue::Table(defaults)) = table.get("defaults").map(|v| v.get_ref()) {
        errors.extend(timeout(defaults));
    }
    if let Some(DeValue::Table(steps)) = table.get("steps").map(|v| v.get_ref()) {
        for (_, step) in steps.iter() {
            if let DeValue::Table(step) = step.get_ref() {
                errors.extend(timeout(step));
            }
        }
    }
    errors
}

/// Retries each field of a table alone, so each wrong field is reported.
fn collect_fields<'a>(
    value: &Spanned<DeValue<'a>>,
    rebuild: impl Fn(Spanned<DeValue<'a>>) -> Spanned<Table<'a>>,
    whole: toml::de::Error,
    source: &str,
    errors: &mut Vec<MissionError>,
) {
    let before = errors.len();
    if let DeValue::Table(fields) = value.get_ref() {
        for (field, field_value) in fields.iter() {
            let mut one = Table::new();
            one.insert(field.clone(), field_value.clone());
            if let Err(error) = try_file(rebuild(Spanned::new(value.span(), DeValue::Table(one)))) {
                errors.push(toml_error(&error, ErrorKind::Type, source));
            }
        }
    }
    if errors.len() == before {
        errors.push(toml_error(&whole, ErrorKind::Type, source));
    }
}

fn wrap<'a>(
    key: &Spanned<std::borrow::Cow<'a, str>>,
    value: Spanned<DeValue<'a>>,
    span: &std::ops::Range<usize>,
) -> Spanned<Table<'a>> {
    let mut table = Table::new();
    table.insert(key.clone(), value);
    Spanned::new(span.clone(), table)
}

fn try_file(table: Spanned<Table<'_>>) -> Result<MissionFile, toml::de::Error> {
    MissionFile::deserialize(toml::de::Deserializer::from(table))
}
