//! The one attempt driver, for command steps and for each agent of an agent step's chain (or
//! race): setup, then attempts of start, work, commit, gate, and keep or retry. What differs
//! between a command and an agent (what runs, how its end is judged, what a retry says) is
//! the [`Work`] it drives. What the attempts are for (a step, or a merge agent's resolution
//! of a conflict) is their [`Target`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use git2::Oid;
use minijinja::value::Value;
use tokio::sync::watch;

use super::gate::{self, GateResult};
use super::setup::{self, Prepared};
use super::state::{Scope, Shared};
use super::worktree::Worktree;
use crate::event::{Body, ErrorKind, FailReason, StepError};
use crate::git::refs;
use crate::plan::{TemplateRef, template};
use crate::process::Exit;

/// What a [`Work`]'s attempts are for: step `i`'s own work, or the resolution of a conflict
/// (between a step's needs, or between the leaves for the final merge).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Whose templates and stop the attempts use: a step, or (the final merge) the mission.
    pub scope: Scope,
    /// The id the attempts' events name: the step's, or `_final` for the final merge.
    pub id: String,
    pub attempts: u32,
    pub timeout: Duration,
    /// The gate an attempt must pass: the step's, or the `merge`'s.
    pub gate: Option<TemplateRef>,
    /// The ref that keeps the passed attempt's commit.
    pub result_ref: String,
    /// The attempts are a merge agent's (`step_started` says so).
    pub merge: bool,
}

impl Target {
    /// Step `i`'s own work.
    pub(crate) fn step(shared: &Shared, i: usize) -> Target {
        let step = &shared.plan.steps[i];
        Target {
            scope: Scope::Step(i),
            id: step.id.clone(),
            attempts: step.attempts,
            timeout: step.timeout,
            gate: step.gate.clone(),
            result_ref: refs::step_result(&shared.run, &step.id),
            merge: false,
        }
    }
}

/// What failed in the last attempt, as the next attempt's prompt hears it (`failure.*`).
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub kind: FailureKind,
    /// The gate's command, or the agent's name.
    pub command: String,
    pub exit_code: Option<i32>,
    /// The tail of the gate's output, or what the agent said.
    pub output: String,
}

/// `failure.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    Gate,
    Timeout,
    Agent,
    /// A person rejected the step's result; the output is their reason.
    Rejected,
}

impl FailureKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            FailureKind::Gate => "gate",
            FailureKind::Timeout => "timeout",
            FailureKind::Agent => "agent",
            FailureKind::Rejected => "rejected",
        }
    }
}

impl Failure {
    /// `failure` in a retry prompt's context.
    pub(crate) fn value(&self) -> Value {
        template::map([
            ("kind", Value::from(self.kind.name())),
            ("command", Value::from(self.command.as_str())),
            (
                "exit_code",
                self.exit_code.map_or(Value::from(()), Value::from),
            ),
            ("output", Value::from(self.output.as_str())),
        ])
    }
}

/// How one attempt's work ended, before its judgement by the gate.
pub(crate) enum Verdict {
    /// It did its part; `output` is what `steps.<id>.output` hands on if the attempt passes.
    Done { output: String },
    /// It failed: why, what to tell the user, what the next attempt hears (`None`: nothing
    /// new), whether another attempt can help at all, and the output it left.
    Failed {
        reason: FailReason,
        message: String,
        retry: Option<Failure>,
        final_: bool,
        output: String,
    },
}

/// What runs in an attempt: a command, or an agent's CLI.
pub(crate) trait Work {
    /// Whether its attempts cost money: then none starts once the run's budget is reached.
    const SPENDS: bool;

    /// The agent's name and runtime, for the events (`None` for a command step).
    fn agent(&self) -> Option<(&str, &str)>;

    /// What a commit message says after the attempt number (e.g. ` (claude)`).
    fn label(&self) -> String;

    /// Gets attempt `attempt` ready before it is announced (renders and archives what it
    /// sends); `failure` is what the last attempt failed with. An error ends the attempts.
    async fn begin(&mut self, attempt: u32, failure: Option<&Failure>) -> Result<(), StepError>;

    /// Runs attempt `attempt` in `worktree`. An error (it could not start) ends the attempts.
    async fn run(
        &mut self,
        attempt: u32,
        worktree: &Path,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Exit, StepError>;

    /// Judges the attempt that ended with `exit` once its tree is committed (`files`: how
    /// many files it changed).
    fn judge(&mut self, exit: Exit, files: usize) -> Verdict;
}

/// How the attempts of a [`Work`] ended.
pub(crate) struct Attempts {
    /// How many attempts started.
    pub attempts: u32,
    pub end: End,
}

pub(crate) enum End {
    /// Its result, kept under the run's refs, and what it hands on.
    Passed {
        commit: Oid,
        output: String,
    },
    /// Why it failed (`None`: no attempt ran), the reason of the last failed attempt, and the
    /// last attempt's output.
    Failed {
        error: Option<StepError>,
        reason: FailReason,
        output: String,
    },
    Cancelled,
}

impl Attempts {
    fn failed(attempts: u32, error: StepError) -> Attempts {
        Attempts {
            attempts,
            end: End::Failed {
                error: Some(error),
                reason: FailReason::AgentError,
                output: String::new(),
            },
        }
    }

    fn cancelled(attempts: u32) -> Attempts {
        Attempts {
            attempts,
            end: End::Cancelled,
        }
    }
}

/// Drives the attempts of `work` for `target` in the worktree `held`, from `base`: readies
/// the worktree for a step (`setup_log` is setup's log), then runs attempts until one passes its gate,
/// one fails for good, the step is stopped (`cancel`) or the attempts run out. Every attempt's
/// tree is committed on top of the last one's, whatever it did.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn drive<W: Work>(
    shared: &Arc<Shared>,
    target: &Target,
    held: &mut Worktree,
    logs: &Path,
    base: Oid,
    setup_log: &str,
    cancel: &mut watch::Receiver<bool>,
    work: &mut W,
) -> Attempts {
    let step = target;
    let worktree: PathBuf = held.path().to_owned();
    // The final merge's worktree is readied as the final gate's is: not at all.
    if let Scope::Step(i) = target.scope {
        match setup::prepare(shared, i, held, logs, base, setup_log).await {
            Prepared::Ready => {}
            Prepared::Cancelled => return Attempts::cancelled(0),
            Prepared::Failed(e) => return Attempts::failed(0, e),
        }
    } else if let Err(e) = fs_err::create_dir_all(logs) {
        return Attempts::failed(0, StepError::new(ErrorKind::State, e.to_string()));
    }
    // After a person's rejection (`on_reject = "retry"`) the first attempt works on top of the
    // rejected result and hears why.
    let rejected = match target.scope {
        Scope::Step(i) if !target.merge => shared.rejected_retry(i),
        _ => None,
    };
    let mut parent = rejected.as_ref().map_or(base, |(commit, _)| *commit);
    let mut failure: Option<Failure> = rejected.map(|(_, reason)| Failure {
        kind: FailureKind::Rejected,
        command: "medley reject".to_owned(),
        exit_code: None,
        output: reason,
    });
    let mut last_error: Option<StepError> = None;
    let mut last_reason = FailReason::AgentError;
    let mut output = String::new();
    let mut attempts = 0;
    for attempt in 1..=step.attempts {
        if *cancel.borrow() {
            return Attempts::cancelled(attempts);
        }
        if W::SPENDS && shared.budget_reached() {
            last_error = Some(StepError::new(ErrorKind::Budget, "budget reached"));
            break;
        }
        attempts = attempt;
        if let Err(e) = work.begin(attempt, failure.as_ref()).await {
            return Attempts::failed(attempt, e);
        }
        let agent = work.agent().map(|(a, r)| (a.to_owned(), r.to_owned()));
        shared.emitter.emit(Body::StepStarted {
            step: step.id.clone(),
            attempt,
            agent: agent.as_ref().map(|(a, _)| a.clone()),
            runtime: agent.as_ref().map(|(_, r)| r.clone()),
            worktree: worktree.display().to_string(),
            merge: target.merge,
        });
        let exit = match work.run(attempt, &worktree, cancel).await {
            Ok(exit) => exit,
            Err(e) => return Attempts::failed(attempt, e),
        };

        // Whatever the attempt did, its tree is committed on top of the last attempt's.
        let repo = shared.repo.clone();
        let path = worktree.clone();
        let message = format!(
            "medley: {} step {} attempt {attempt}{}\n\nrun {}",
            shared.plan.mission,
            step.id,
            work.label(),
            shared.run
        );
        let committed =
            super::blocking(move || repo.commit_worktree(&path, parent, &message)).await;
        let crate::git::Committed {
            commit,
            files,
            clean_at,
        } = match committed {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Attempts::failed(attempt, StepError::new(ErrorKind::Commit, e.to_string()));
            }
            Err(e) => {
                return Attempts::failed(attempt, StepError::new(ErrorKind::Commit, e.to_string()));
            }
        };
        parent = commit;
        shared.emitter.emit(Body::StepCommitted {
            step: step.id.clone(),
            attempt,
            commit: commit.to_string(),
            files,
        });
        if exit == Exit::Cancelled {
            return Attempts::cancelled(attempt);
        }
        let attempt_failed = |reason: FailReason, message: &str| {
            shared.emitter.emit(Body::AttemptFailed {
                step: step.id.clone(),
                attempt,
                agent: agent.as_ref().map(|(a, _)| a.clone()),
                reason,
                message: message.to_owned(),
            });
        };
        match work.judge(exit, files) {
            Verdict::Done { output: done } => output = done,
            Verdict::Failed {
                reason,
                message,
                retry,
                final_,
                output: left,
            } => {
                output = left;
                attempt_failed(reason, &message);
                last_reason = reason;
                last_error = Some(StepError::new(reason.into(), message));
                if final_ {
                    break;
                }
                failure = retry;
                continue;
            }
        }
        if let Some(gate) = &step.gate {
            let id = Some(target.id.clone());
            match gate::run_as(
                shared,
                target.scope,
                id,
                gate,
                &worktree,
                logs,
                attempt,
                base,
            )
            .await
            {
                GateResult::Passed => {}
                GateResult::Cancelled => return Attempts::cancelled(attempt),
                GateResult::Failed {
                    message,
                    command,
                    exit_code,
                    output: gate_output,
                } => {
                    attempt_failed(FailReason::Gate, &message);
                    last_reason = FailReason::Gate;
                    last_error = Some(StepError::new(ErrorKind::Gate, message));
                    failure = Some(Failure {
                        kind: FailureKind::Gate,
                        command,
                        exit_code,
                        output: gate_output,
                    });
                    continue;
                }
            }
        }
        // Nothing has run in the worktree since it was found clean (no gate): its next lease
        // need not look again.
        if step.gate.is_none()
            && let Some(head) = clean_at
        {
            held.mark_clean(head);
        }
        // Passed: the result is kept under the run's refs.
        let repo = shared.repo.clone();
        let name = target.result_ref.clone();
        let kept =
            super::blocking(move || repo.set_ref(&name, commit, "medley: step result")).await;
        if let Ok(Err(e)) = kept {
            return Attempts::failed(attempt, StepError::new(ErrorKind::State, e.to_string()));
        }
        return Attempts {
            attempts: attempt,
            end: End::Passed { commit, output },
        };
    }
    Attempts {
        attempts,
        end: End::Failed {
            error: last_error,
            reason: last_reason,
            output,
        },
    }
}
