//! Approval gates at run time: a passed step with `approve` (and, with the mission's `approve`,
//! its final result) waits for a person before anything builds on it. Here: what the run knows
//! of decisions ([`Book`]: from the journal on a resume, from the cache, from the live prompt),
//! the requests a person answers ([`ApprovalRequest`]), and what each decision does.

use std::sync::Arc;
use std::time::Instant;

use git2::Oid;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::blocking;
use super::decisions::Book;
use super::decisions::{ApprovalRequest, Decision};
use super::end::finish;
use super::state::Shared;
use crate::event::{Body, ErrorKind, Outcome, RunOutcome, StepError};
use crate::git::refs;
use crate::mission::OnReject;

impl Shared {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.gates.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where step `i`'s worktree starts: its base, or the result a person rejected (with
    /// `on_reject = "retry"`).
    pub(crate) fn start_of(&self, i: usize, base: Oid) -> Oid {
        self.book()
            .retry
            .get(&i)
            .map_or(base, |(commit, _)| *commit)
    }

    /// The result a person rejected and their reason, for a step that runs again on it.
    pub(crate) fn rejected_retry(&self, i: usize) -> Option<(Oid, String)> {
        self.book().retry.get(&i).cloned()
    }

    /// Step `i`'s cached result was approved when it was made: it does not ask again.
    pub(crate) fn approved_before(&self, i: usize) {
        self.book().approved.insert(i);
    }

    /// The reason a person rejected step `i` for, if they did (its dependents' skip reason).
    pub(crate) fn rejection(&self, i: usize) -> Option<String> {
        self.book()
            .refused
            .get(&i)
            .map(|(_, reason)| reason.clone())
    }

    /// The steps that wait for a person, in plan order.
    pub(crate) fn waiting(&self) -> Vec<String> {
        let book = self.book();
        let mut waiting: Vec<usize> = book.waiting.iter().copied().collect();
        waiting.sort_unstable();
        waiting
            .into_iter()
            .map(|i| self.plan.steps[i].id.clone())
            .collect()
    }
}

/// How a decision left a step, for the schedule.
pub(super) enum Applied {
    /// It ended (approved: its outcome; rejected: failed).
    Ended(Outcome),
    /// Rejected with `on_reject = "retry"`: it runs again.
    Rerun,
    /// Left waiting.
    Waits,
}

/// The schedule's side of the gates: the prompts open now.
pub(super) struct Gates {
    prompts: JoinSet<(usize, Decision)>,
}

impl Gates {
    pub(super) fn new() -> Gates {
        Gates {
            prompts: JoinSet::new(),
        }
    }

    /// Steps a person rejected before this resume fail now, as they would have then.
    pub(super) fn refused_before(&self, shared: &Shared) -> Vec<usize> {
        let refused: Vec<(usize, (String, String))> = shared
            .book()
            .refused
            .iter()
            .map(|(i, r)| (*i, r.clone()))
            .collect();
        for (i, (by, reason)) in &refused {
            fail_rejected(shared, *i, by, reason);
        }
        refused.into_iter().map(|(i, _)| i).collect()
    }

    /// Step `i` ended with `outcome`: the outcome the schedule sees, or `None` while its result
    /// waits for a person (asked now, when someone is there to ask).
    pub(super) async fn on_end(
        &mut self,
        shared: &Arc<Shared>,
        i: usize,
        outcome: Outcome,
    ) -> Option<Outcome> {
        let step = &shared.plan.steps[i];
        shared.book().retry.remove(&i);
        let Some(message) = step.approve.clone().filter(|_| outcome.ok()) else {
            return Some(outcome);
        };
        if shared.book().approved.contains(&i) {
            return Some(outcome);
        }
        let record = shared.records.lock().ok().and_then(|r| r[i].clone());
        let Some((base, commit)) = record.and_then(|r| Some((r.base, r.commit?))) else {
            return Some(outcome);
        };
        shared.book().waiting.insert(i);
        let gate = step.gate.as_ref().map(|g| g.source.clone());
        if let Some(reply) =
            request(shared, Some(step.id.clone()), message, base, commit, gate).await
        {
            self.prompts
                .spawn(async move { (i, reply.await.unwrap_or(Decision::Leave)) });
        }
        None
    }

    /// Whether a prompt is open.
    pub(super) fn open(&self) -> bool {
        !self.prompts.is_empty()
    }

    /// The next decision a person made at a prompt.
    pub(super) async fn decided(&mut self) -> Option<(usize, Decision)> {
        self.prompts.join_next().await?.ok()
    }

    /// What `decision` does to step `i`, which waits.
    pub(super) async fn apply(shared: &Arc<Shared>, i: usize, decision: Decision) -> Applied {
        let step = &shared.plan.steps[i];
        let record = shared.records.lock().ok().and_then(|r| r[i].clone());
        let Some(record) = record else {
            return Applied::Ended(Outcome::Failed);
        };
        let (repo, run, id) = (shared.repo.clone(), shared.run.clone(), step.id.clone());
        match decision {
            Decision::Leave => Applied::Waits,
            Decision::Approve => {
                let by = crate::history::who(&shared.repo);
                shared.book().waiting.remove(&i);
                shared.book().approved.insert(i);
                shared.emitter.emit(Body::ApprovalGiven {
                    step: Some(id.clone()),
                    by: by.clone(),
                });
                let _ = blocking(move || crate::cache::approve(&repo, &run, &id, &by)).await;
                Applied::Ended(record.outcome)
            }
            Decision::Reject(reason) => {
                let by = crate::history::who(&shared.repo);
                shared.book().waiting.remove(&i);
                shared.emitter.emit(Body::ApprovalRefused {
                    step: Some(id.clone()),
                    by: by.clone(),
                    reason: reason.clone(),
                });
                let _ = blocking(move || crate::cache::forget(&repo, &run, &id)).await;
                match (step.on_reject, record.commit) {
                    (OnReject::Retry, Some(commit)) => {
                        shared.book().retry.insert(i, (commit, reason));
                        Applied::Rerun
                    }
                    _ => {
                        shared
                            .book()
                            .refused
                            .insert(i, (by.clone(), reason.clone()));
                        fail_rejected(shared, i, &by, &reason);
                        Applied::Ended(Outcome::Failed)
                    }
                }
            }
        }
    }
}

/// Ends step `i` as failed: `by` rejected its result for `reason`.
fn fail_rejected(shared: &Shared, i: usize, by: &str, reason: &str) {
    let record = shared.records.lock().ok().and_then(|r| r[i].clone());
    let before = shared.book().refused_bases.get(&i).copied();
    let base = record
        .as_ref()
        .map(|r| r.base)
        .or(before)
        .unwrap_or(shared.base);
    finish(
        shared,
        i,
        Outcome::Failed,
        None,
        base,
        0,
        Instant::now(),
        String::new(),
        Some(StepError::new(
            ErrorKind::Rejected,
            format!("rejected by {by}: {reason}"),
        )),
    );
}

/// Announces that a result waits (`approval_requested`) and, when someone is there to ask,
/// asks them: the receiver of their decision.
async fn request(
    shared: &Arc<Shared>,
    step: Option<String>,
    message: String,
    base: Oid,
    commit: Oid,
    gate: Option<String>,
) -> Option<oneshot::Receiver<Decision>> {
    let repo = shared.repo.clone();
    let asked = shared.asker.is_some();
    let (files, diff) = blocking(move || {
        let files = repo.changed_files(base, commit).unwrap_or_default();
        let diff = if asked {
            repo.diff_text(base, commit).unwrap_or_default()
        } else {
            String::new()
        };
        (files, diff)
    })
    .await
    .unwrap_or_default();
    shared.emitter.emit(Body::ApprovalRequested {
        step: step.clone(),
        message: message.clone(),
        commit: Some(commit.to_string()),
        files: files.len(),
    });
    let asker = shared.asker.as_ref()?;
    let (reply, decided) = oneshot::channel();
    asker
        .send(ApprovalRequest {
            step,
            message,
            commit: commit.to_string(),
            files,
            gate,
            diff: crate::secrets::mask(&diff, &shared.secrets),
            reply,
        })
        .ok()?;
    Some(decided)
}

/// The mission's final result (`merged`, after its gate) with the mission's `approve`: `None`
/// when it may become the result branch (approved, now or before), else how the run ends.
pub(super) async fn final_result(
    shared: &Arc<Shared>,
    merged: Oid,
) -> Option<(RunOutcome, Option<String>)> {
    let message = shared.plan.approve.clone()?;
    let rejected = |reason: &str| {
        Some((
            RunOutcome::Failed,
            Some(format!("the result was rejected: {reason}")),
        ))
    };
    let decided = shared.book().final_.clone();
    match decided {
        Some(None) => return None,
        Some(Some(reason)) => return rejected(&reason),
        None => {}
    }
    let repo = shared.repo.clone();
    let name = refs::final_result(&shared.run);
    let _ =
        blocking(move || repo.set_ref(&name, merged, "medley: result waiting for approval")).await;
    let gate = shared.plan.gate.as_ref().map(|g| g.source.clone());
    let waiting = Some((
        RunOutcome::Waiting,
        Some(format!("waiting for approval: `{}`", refs::FINAL_RESULT)),
    ));
    let Some(reply) = request(shared, None, message, shared.base, merged, gate).await else {
        return waiting;
    };
    match reply.await.unwrap_or(Decision::Leave) {
        Decision::Leave => waiting,
        Decision::Approve => {
            shared.emitter.emit(Body::ApprovalGiven {
                step: None,
                by: crate::history::who(&shared.repo),
            });
            None
        }
        Decision::Reject(reason) => {
            shared.emitter.emit(Body::ApprovalRefused {
                step: None,
                by: crate::history::who(&shared.repo),
                reason: reason.clone(),
            });
            rejected(&reason)
        }
    }
}
