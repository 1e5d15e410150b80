//! `MissionErrors`: every problem found in one mission file, as one miette report.

use std::ops::Range;

use miette::{Diagnostic, LabeledSpan, NamedSource};
use thiserror::Error;

/// What kind of problem a [`MissionError`] is; tests and tools match on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    Syntax,
    UnknownKey,
    Type,
    StepBody,
    InvalidId,
    UnknownNeed,
    /// The steps of a cycle, in order: each needs the next, and the last needs the first.
    Cycle(Vec<String>),
    UnknownAgent,
    UnknownRuntime,
    Agent,
    Duration,
    Matrix,
    Template,
    UndefinedName,
    NotUpstream,
    UnsafeShell,
    Value,
}

/// One problem in a mission file, with its labelled spans and how to fix it.
#[derive(Debug, Clone, Error, Diagnostic)]
#[error("{message}")]
pub struct MissionError {
    pub message: String,
    #[label(collection)]
    pub labels: Vec<LabeledSpan>,
    #[help]
    pub help: Option<String>,
    pub kind: ErrorKind,
}

impl MissionError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        MissionError {
            message: message.into(),
            labels: Vec::new(),
            help: None,
            kind,
        }
    }

    /// Adds a labelled span; the first one added is the primary.
    pub fn label(mut self, span: Range<usize>, text: impl Into<String>) -> Self {
        let text = Some(text.into());
        let span = (span.start, span.len());
        self.labels.push(if self.labels.is_empty() {
            LabeledSpan::new_primary_with_span(text, span)
        } else {
            LabeledSpan::new_with_span(text, span)
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Where the primary label starts, for ordering.
    fn offset(&self) -> usize {
        self.labels.first().map_or(0, |l| l.offset())
    }
}

/// Every problem found in one mission file. The file is the source of each child's labels.
#[derive(Debug, Error, Diagnostic)]
#[error("{}", summary(.path, .errors.len()))]
pub struct MissionErrors {
    pub path: String,
    #[source_code]
    pub source_code: NamedSource<String>,
    #[related]
    pub errors: Vec<MissionError>,
}

fn summary(path: &str, count: usize) -> String {
    match count {
        1 => format!("`{path}` is not a valid mission: 1 error"),
        n => format!("`{path}` is not a valid mission: {n} errors"),
    }
}

impl MissionErrors {
    pub fn new(path: &str, source: &str, mut errors: Vec<MissionError>) -> Self {
        errors.sort_by_key(MissionError::offset);
        errors.dedup_by(|a, b| a.message == b.message && a.offset() == b.offset());
        MissionErrors {
            path: path.to_owned(),
            source_code: NamedSource::new(path, source.to_owned()).with_language("toml"),
            errors,
        }
    }

    pub fn kinds(&self) -> impl Iterator<Item = &ErrorKind> {
        self.errors.iter().map(|e| &e.kind)
    }
}

/// Collects problems while a mission is checked.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<MissionError>);

impl Problems {
    pub fn push(&mut self, error: MissionError) {
        self.0.push(error);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
