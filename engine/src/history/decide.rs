//! A person's decision on results that wait, made from outside the run (`medley approve`,
//! `medley reject`): checked against what waits, recorded in the run's journal (who, when)
//! under the run's lock, and kept with the cached results. Going on is `resume`'s.

use std::path::Path;

use crate::event::{Body, Event};
use crate::git::{Repo, refs};
use crate::journal::{self, Journal, RunLock};

use super::{Approval, HistoryError, RunInfo};

/// What a person decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    /// Rejected, with the reason.
    Reject(String),
}

/// What a decision did.
#[derive(Debug, Default, Clone)]
pub struct Decided {
    /// The steps whose decision was recorded now.
    pub recorded: Vec<String>,
    /// The steps already approved (approving them again does nothing).
    pub already: Vec<String>,
}

/// Why a decision could not be recorded.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DecideError {
    #[error("no run is waiting for approval")]
    #[diagnostic(help("`medley runs --waiting` lists the runs whose results wait for a person"))]
    NoneWaiting,
    #[error("{} in run `{run}`", not_waiting(.steps))]
    #[diagnostic(help("{}", waiting_help(.waiting)))]
    NotWaiting {
        run: String,
        steps: Vec<String>,
        waiting: Vec<String>,
    },
    #[error("run `{0}` is still running")]
    #[diagnostic(help(
        "answer its prompt, or approve once it has ended as `waiting` (its other steps done)"
    ))]
    Live(String),
    #[error(transparent)]
    #[diagnostic(transparent)]
    History(#[from] HistoryError),
    #[error("cannot record the decision in `{path}`")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn not_waiting(steps: &[String]) -> String {
    let named: Vec<String> = steps.iter().map(|s| format!("`{s}`")).collect();
    match named.as_slice() {
        [one] => format!("{one} is not waiting for approval"),
        _ => format!("{} are not waiting for approval", named.join(", ")),
    }
}

fn waiting_help(waiting: &[String]) -> String {
    if waiting.is_empty() {
        return "nothing in this run waits for a person (`medley show` says how it stands)"
            .to_owned();
    }
    let named: Vec<String> = waiting.iter().map(|s| format!("`{s}`")).collect();
    format!("what waits: {}", named.join(", "))
}

/// The git identity of the person deciding: `Name <email>` from the repository's config
/// (else `$USER`).
pub fn who(repo: &Repo) -> String {
    let named = repo.open().ok().and_then(|handle| {
        let sig = handle.signature().ok()?;
        Some(format!(
            "{} <{}>",
            sig.name().unwrap_or("?"),
            sig.email().unwrap_or("?")
        ))
    });
    named
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The newest run with a result that waits for a person.
pub fn newest_waiting(git_dir: &Path) -> Result<String, DecideError> {
    super::list(git_dir)
        .into_iter()
        .rev()
        .find(|run| !run.live && !run.waiting().is_empty())
        .map(|run| run.id)
        .ok_or(DecideError::NoneWaiting)
}

/// Records `verdict` on `steps` of run `info` (`@result`: its final result), by `by`.
/// Approving a step already approved does nothing; a step that does not wait is an error that
/// names what does.
pub fn decide(
    repo: &Repo,
    info: &RunInfo,
    steps: &[String],
    verdict: &Verdict,
    by: &str,
) -> Result<Decided, DecideError> {
    if info.live {
        return Err(DecideError::Live(info.id.clone()));
    }
    let approval = |step: &str| {
        if step == refs::FINAL_RESULT {
            info.approval.as_ref()
        } else {
            info.steps.get(step).and_then(|s| s.approval.as_ref())
        }
    };
    let mut decided = Decided::default();
    let mut wrong = Vec::new();
    for step in steps {
        match approval(step) {
            Some(a) if a.is_waiting() => {
                if !decided.recorded.contains(step) {
                    decided.recorded.push(step.clone());
                }
            }
            Some(Approval::Given { .. }) if *verdict == Verdict::Approve => {
                decided.already.push(step.clone())
            }
            _ => wrong.push(step.clone()),
        }
    }
    if !wrong.is_empty() {
        return Err(DecideError::NotWaiting {
            run: info.id.clone(),
            steps: wrong,
            waiting: info.waiting(),
        });
    }
    if decided.recorded.is_empty() {
        return Ok(decided);
    }
    let dir = journal::runs_dir(&repo.git_dir).join(&info.id);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DecideError::Io { path, source }
    };
    let lock_path = dir.join("lock");
    let _lock = RunLock::try_take(&lock_path)
        .map_err(io(&lock_path))?
        .ok_or_else(|| DecideError::Live(info.id.clone()))?;
    let events: Vec<Event> = decided
        .recorded
        .iter()
        .map(|step| {
            let step = (step != refs::FINAL_RESULT).then(|| step.clone());
            let by = by.to_owned();
            Event::new(
                &info.id,
                match verdict {
                    Verdict::Approve => Body::ApprovalGiven { step, by },
                    Verdict::Reject(reason) => Body::ApprovalRefused {
                        step,
                        by,
                        reason: reason.clone(),
                    },
                },
            )
        })
        .collect();
    let path = dir.join("events.jsonl");
    Journal::create(&path)
        .and_then(|mut journal| journal.append_all(&events))
        .map_err(io(&path))?;
    for step in decided.recorded.iter().filter(|s| *s != refs::FINAL_RESULT) {
        match verdict {
            Verdict::Approve => {
                let _ = crate::cache::approve(repo, &info.id, step, by);
            }
            Verdict::Reject(_) => crate::cache::forget(repo, &info.id, step),
        }
    }
    Ok(decided)
}
