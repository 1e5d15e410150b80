//! A person's decision on results that wait, made from outside the run (`medley approve`,
//! `medley reject`): checked against what waits, recorded in the run's journal (who, when)
//! under the run's lock, and kept with the cached results; going on is then `resume`'s. While
//! the run is live, the decision is handed to it instead (`inbox.rs`): it records it and goes
//! on.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::event::{Body, Event};
use crate::git::{Repo, refs};
use crate::journal::{self, Journal, RunLock};

use super::inbox::{Answer, Reply, Request, Sent};
use super::{Approval, HistoryError, RunInfo};

/// How long a live run has to take a decision handed to it before it is withdrawn (it looks
/// for decisions a few times a second).
const TAKE_WITHIN: Duration = Duration::from_secs(30);

/// What a person decided.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// The live run took the decision: it goes on with it (no resume is needed).
    pub live: bool,
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
    #[error("run `{run}` is live but did not take the decision within {}s", .secs)]
    #[diagnostic(help(
        "nothing was recorded (the decision was withdrawn); is the run stuck? `medley show {run}` says how it stands, or answer its own prompt"
    ))]
    Untaken { run: String, secs: u64 },
    #[error("run `{0}` took the decision but ended before it answered")]
    #[diagnostic(help(
        "`medley show {0}` says whether the decision was recorded; `medley resume {0}` goes on"
    ))]
    Lost(String),
    #[error("run `{run}` could not take the decision: {message}")]
    #[diagnostic(help("nothing was recorded; try again, or answer the run's own prompt"))]
    Unreadable { run: String, message: String },
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

/// The newest run with a result that waits for a person (live or not).
pub fn newest_waiting(git_dir: &Path) -> Result<String, DecideError> {
    super::list(git_dir)
        .into_iter()
        .rev()
        .find(|run| !run.waiting().is_empty())
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
    let decided = check(info, steps, verdict)?;
    if decided.recorded.is_empty() {
        return Ok(decided);
    }
    if info.live {
        return hand_over(repo, info, decided, verdict, by);
    }
    let dir = journal::runs_dir(&repo.git_dir).join(&info.id);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DecideError::Io { path, source }
    };
    let lock_path = dir.join("lock");
    let Some(_lock) = RunLock::try_take(&lock_path).map_err(io(&lock_path))? else {
        // It was resumed meanwhile: the live run takes the decision.
        return hand_over(repo, info, decided, verdict, by);
    };
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

/// Which of `steps` take `verdict` now, and which were approved already; an error naming the
/// steps that do not wait.
fn check(info: &RunInfo, steps: &[String], verdict: &Verdict) -> Result<Decided, DecideError> {
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
    Ok(decided)
}

/// Hands the decision on `checked.recorded` to the live run `info` and waits for its answer,
/// then for its journal to hold the decision. A run that ends before it takes the decision
/// leaves it to be recorded here, as for any run that is not live.
fn hand_over(
    repo: &Repo,
    info: &RunInfo,
    checked: Decided,
    verdict: &Verdict,
    by: &str,
) -> Result<Decided, DecideError> {
    let dir = journal::runs_dir(&repo.git_dir).join(&info.id);
    let request = Request {
        steps: checked.recorded.clone(),
        verdict: verdict.clone(),
        by: by.to_owned(),
        pid: std::process::id(),
    };
    let journal_path = dir.join("events.jsonl");
    let before = decisions_in(&journal_path);
    let sent = Sent::send(&dir, &request).map_err(|source| DecideError::Io {
        path: dir.join(super::inbox::DIR),
        source,
    })?;
    let since = Instant::now();
    let reply = loop {
        let answer = match sent.answer() {
            Answer::Pending if !journal::is_live(&dir) => sent.withdraw(),
            Answer::Pending if since.elapsed() > TAKE_WITHIN => match sent.withdraw() {
                // Taken: it is being acted on; its answer comes while the run lives.
                Answer::Lost => Answer::Pending,
                Answer::Withdrawn => {
                    return Err(DecideError::Untaken {
                        run: info.id.clone(),
                        secs: TAKE_WITHIN.as_secs(),
                    });
                }
                answer => answer,
            },
            answer => answer,
        };
        match answer {
            Answer::Replied(reply) => break reply,
            Answer::Pending => std::thread::sleep(Duration::from_millis(50)),
            // The run ended without taking it: recorded here, as for a run that waits.
            Answer::Withdrawn => {
                let info = super::load(&repo.git_dir, &info.id)?;
                let mut decided = decide(repo, &info, &checked.recorded, verdict, by)?;
                decided.already.extend(checked.already);
                return Ok(decided);
            }
            Answer::Lost => return Err(DecideError::Lost(info.id.clone())),
        }
    };
    let Reply {
        recorded,
        already,
        not_waiting,
        waiting,
        error,
    } = reply;
    if let Some(message) = error {
        return Err(DecideError::Unreadable {
            run: info.id.clone(),
            message,
        });
    }
    if !not_waiting.is_empty() {
        return Err(DecideError::NotWaiting {
            run: info.id.clone(),
            steps: not_waiting,
            waiting,
        });
    }
    // The run's journal is written by a thread of its own, a moment behind it.
    while decisions_in(&journal_path) < before + recorded.len() && journal::is_live(&dir) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut all_already = checked.already;
    all_already.extend(already);
    Ok(Decided {
        recorded,
        already: all_already,
        live: true,
    })
}

/// How many decisions (`approval_given`, `approval_refused`) the journal at `path` holds.
fn decisions_in(path: &Path) -> usize {
    journal::read_without(path, &["agent_output"])
        .unwrap_or_default()
        .iter()
        .filter(|e| {
            matches!(
                e.body,
                Body::ApprovalGiven { .. } | Body::ApprovalRefused { .. }
            )
        })
        .count()
}
