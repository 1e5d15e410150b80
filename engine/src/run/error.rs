//! Why a run could not start, could not go on, or cannot be resumed.

use std::path::PathBuf;

use crate::git::GitError;

use super::preflight;

/// Why a run could not start, or could not go on.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RunError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Git(#[from] GitError),
    #[error("cannot write run state at `{path}`")]
    #[diagnostic(help(
        "check free space and permissions there; the journal written so far stays readable"
    ))]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Preflight(#[from] preflight::PreflightError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Resume(Box<ResumeError>),
    #[error("the run did not end: {0}")]
    #[diagnostic(help("this is a bug in medley: please report it"))]
    Internal(String),
    #[error("no cache directory for worktrees")]
    #[diagnostic(help(
        "set HOME (or XDG_CACHE_HOME) so medley can keep worktrees outside your repository"
    ))]
    NoCacheDir,
}

impl RunError {
    /// Errors in what the user asked for (exit 2), rather than failures while running (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RunError::Preflight(_)
                | RunError::Resume(_)
                | RunError::NoCacheDir
                | RunError::Git(
                    GitError::NotARepo(_)
                        | GitError::Bare(_)
                        | GitError::NoCommits
                        | GitError::BadRef(_)
                        | GitError::BranchBlocked
                )
        )
    }
}

/// Why a run cannot be resumed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ResumeError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    History(#[from] crate::history::HistoryError),
    #[error("run `{0}` is still running")]
    #[diagnostic(help("wait for it, or stop it (Ctrl-C in its terminal), then resume"))]
    Live(String),
    #[error("run `{0}` passed: there is nothing to resume")]
    #[diagnostic(help("start a new run with `medley run`"))]
    Passed(String),
    #[error("run `{0}` did not record what it was asked (it was made by an older medley)")]
    #[diagnostic(help("start a new run with `medley run`"))]
    NoRecord(String),
    #[error("cannot read what the run was asked, in `{path}`: {message}")]
    #[diagnostic(help("start a new run with `medley run`"))]
    BadRunRecord { path: PathBuf, message: String },
    #[error("the mission of run `{run}` no longer compiles")]
    #[diagnostic(help(
        "the run kept its mission as it was, but this medley reads it otherwise; start a new run with `medley run`"
    ))]
    Mission {
        run: String,
        #[source]
        #[diagnostic_source]
        errors: crate::plan::compile::CompileError,
    },
    #[error("the mission of run `{run}` no longer has the step it was run with")]
    #[diagnostic(help("start a new run with `medley run`"))]
    Only {
        run: String,
        #[source]
        #[diagnostic_source]
        error: crate::plan::UnknownStep,
    },
    #[error("run `{run}` recorded a result for step `{step}` that is not a commit: `{commit}`")]
    #[diagnostic(help("start a new run with `medley run`"))]
    BadRecord {
        run: String,
        step: String,
        commit: String,
    },
}
