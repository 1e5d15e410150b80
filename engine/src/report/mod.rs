//! Reports of a run, made from its own record (journal, prompt archive, recorded mission,
//! refs): one self-contained HTML page, a Markdown summary for CI, JUnit XML for test
//! reporters. The engine returns the text; the CLI writes it where it was asked to.

pub mod diff;
pub mod html;
pub mod junit;
pub mod layout;
pub mod markdown;
pub mod model;
pub mod svg;
pub mod text;
pub mod words;

pub use model::{Report, ReportError};

/// The formats a report comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Markdown,
    Junit,
}

impl Report {
    /// The report as text in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Html => html::render(self),
            Format::Markdown => markdown::render(self),
            Format::Junit => junit::render(self),
        }
    }
}
