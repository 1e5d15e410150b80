//! Approval gates at run time: a passed step with `approve` (and, with the mission's `approve`,
//! its final result) waits for a person before anything builds on it. Here: what the run knows
//! of decisions ([`Book`]: from the journal on a resume, from the cache, from the live prompt),
//! the requests a person answers ([`ApprovalRequest`]), and what each decision does. A person
//! may also decide from another terminal while the run is live: their request (see
//! `history/inbox.rs`) is taken here, recorded, and acted on as an answer at the prompt.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use crate::history::Verdict;
use crate::history::inbox::{self, Reply, Request};
use crate::mission::OnReject;

/// How often a live run looks for decisions made in another terminal.
const LOOK_EVERY: Duration = Duration::from_millis(250);

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
    /// The open prompt of each step (a decision made elsewhere ends it).
    asking: HashMap<usize, tokio::task::AbortHandle>,
}

/// The look for decisions made in another terminal, a few times a second; none in a run whose
/// mission asks no one (`medley approve` sends a request only for a result that waits).
pub(super) struct Look(Option<tokio::time::Interval>);

impl Look {
    pub(super) fn new(shared: &Shared) -> Look {
        let plan = &*shared.plan;
        let asks = plan.approve.is_some() || plan.steps.iter().any(|s| s.approve.is_some());
        Look(asks.then(|| {
            let mut every = tokio::time::interval(LOOK_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every
        }))
    }

    /// The decisions made in another terminal, once there are some: where their requests
    /// lie. A cheap look, which takes nothing (dropped, nothing is lost).
    pub(super) async fn elsewhere(&mut self, shared: &Shared) -> Vec<PathBuf> {
        let Some(every) = &mut self.0 else {
            return std::future::pending().await;
        };
        loop {
            every.tick().await;
            let found = pending(shared).await;
            if !found.is_empty() {
                return found;
            }
        }
    }
}

impl Gates {
    pub(super) fn new() -> Gates {
        Gates {
            prompts: JoinSet::new(),
            asking: HashMap::new(),
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
            let prompt = self
                .prompts
                .spawn(async move { (i, reply.await.unwrap_or(Decision::Leave)) });
            self.asking.insert(i, prompt);
        }
        None
    }

    /// Whether a prompt is open.
    pub(super) fn open(&self) -> bool {
        !self.prompts.is_empty()
    }

    /// The next decision a person made at a prompt (prompts ended by a decision made elsewhere
    /// are passed over, and so are their answers).
    pub(super) async fn decided(&mut self) -> Option<(usize, Decision)> {
        while let Some(joined) = self.prompts.join_next_with_id().await {
            // An answer counts while its prompt is the step's open one: not once the step was
            // decided elsewhere (its answer may have come at the same moment).
            if let Ok((id, (i, decision))) = joined
                && self.asking.get(&i).is_some_and(|open| open.id() == id)
            {
                self.asking.remove(&i);
                return Some((i, decision));
            }
        }
        None
    }

    /// Takes the requests at `found` (decisions on steps), records and answers them: how each
    /// step they decided was left. A step's open prompt ends.
    pub(super) async fn take(
        &mut self,
        shared: &Arc<Shared>,
        found: Vec<PathBuf>,
    ) -> Vec<(usize, Applied)> {
        let mut applied = Vec::new();
        for path in found {
            let Some((taken, request)) = blocking(move || inbox::take(&path)).await.ok().flatten()
            else {
                continue;
            };
            let reply = match request {
                Ok(request) => self.decide_steps(shared, request, &mut applied).await,
                Err(message) => Reply {
                    error: Some(message),
                    ..Reply::default()
                },
            };
            let _ = blocking(move || inbox::answer(&taken, &reply)).await;
        }
        applied
    }

    async fn decide_steps(
        &mut self,
        shared: &Arc<Shared>,
        request: Request,
        applied: &mut Vec<(usize, Applied)>,
    ) -> Reply {
        let mut reply = Reply::default();
        let mut decide = Vec::new();
        {
            let book = shared.book();
            for step in &request.steps {
                let i = shared.plan.steps.iter().position(|s| &s.id == step);
                match i {
                    Some(i) if book.waiting.contains(&i) => {
                        if !decide.contains(&i) {
                            decide.push(i);
                            reply.recorded.push(step.clone());
                        }
                    }
                    Some(i)
                        if book.approved.contains(&i) && request.verdict == Verdict::Approve =>
                    {
                        reply.already.push(step.clone())
                    }
                    _ => reply.not_waiting.push(step.clone()),
                }
            }
        }
        if !reply.not_waiting.is_empty() {
            reply.recorded.clear();
            reply.waiting = shared.waiting();
            return reply;
        }
        for i in decide {
            if let Some(prompt) = self.asking.remove(&i) {
                prompt.abort();
            }
            let decision = decision_of(&request.verdict);
            let left = Gates::apply(shared, i, decision, request.by.clone()).await;
            applied.push((i, left));
        }
        reply
    }

    /// What `decision` (by `by`) does to step `i`, which waits.
    pub(super) async fn apply(
        shared: &Arc<Shared>,
        i: usize,
        decision: Decision,
        by: String,
    ) -> Applied {
        let step = &shared.plan.steps[i];
        let record = shared.records.lock().ok().and_then(|r| r[i].clone());
        let Some(record) = record else {
            return Applied::Ended(Outcome::Failed);
        };
        let (repo, run, id) = (shared.repo.clone(), shared.run.clone(), step.id.clone());
        match decision {
            Decision::Leave => Applied::Waits,
            Decision::Approve => {
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

/// The requests for decisions made elsewhere that wait in the run's directory.
pub(super) async fn pending(shared: &Shared) -> Vec<PathBuf> {
    let dir = shared.run_dir.clone();
    blocking(move || inbox::pending(&dir))
        .await
        .unwrap_or_default()
}

fn decision_of(verdict: &Verdict) -> Decision {
    match verdict {
        Verdict::Approve => Decision::Approve,
        Verdict::Reject(reason) => Decision::Reject(reason.clone()),
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
    let (decision, by) = final_decision(shared, reply).await;
    match decision {
        // Stopped at the prompt (Ctrl-C): the result still waits, for the next go.
        Decision::Leave if *shared.cancelled.borrow() => {
            Some((RunOutcome::Cancelled, Some("cancelled".to_owned())))
        }
        Decision::Leave => waiting,
        Decision::Approve => {
            shared.emitter.emit(Body::ApprovalGiven { step: None, by });
            None
        }
        Decision::Reject(reason) => {
            shared.emitter.emit(Body::ApprovalRefused {
                step: None,
                by,
                reason: reason.clone(),
            });
            rejected(&reason)
        }
    }
}

/// The decision on the final result, and who made it: at the prompt (`reply`), or in another
/// terminal (which ends the prompt); left waiting when the run is stopped meanwhile.
async fn final_decision(
    shared: &Arc<Shared>,
    reply: oneshot::Receiver<Decision>,
) -> (Decision, String) {
    let mut reply = reply;
    let mut look = Look::new(shared);
    let mut stop = shared.cancelled.clone();
    loop {
        tokio::select! {
            () = crate::process::cancelled(&mut stop) => return (Decision::Leave, String::new()),
            decided = &mut reply => {
                return (decided.unwrap_or(Decision::Leave), crate::history::who(&shared.repo));
            }
            found = look.elsewhere(shared) => {
                let mut decided = None;
                for path in found {
                    let Some((taken, request)) =
                        blocking(move || inbox::take(&path)).await.ok().flatten()
                    else {
                        continue;
                    };
                    let reply = match request {
                        Ok(request) if decided.is_none()
                            && request.steps.iter().all(|s| s == refs::FINAL_RESULT) =>
                        {
                            decided = Some((decision_of(&request.verdict), request.by));
                            Reply {
                                recorded: vec![refs::FINAL_RESULT.to_owned()],
                                ..Reply::default()
                            }
                        }
                        Ok(request) => Reply {
                            not_waiting: request
                                .steps
                                .into_iter()
                                .filter(|s| s != refs::FINAL_RESULT || decided.is_some())
                                .collect(),
                            waiting: vec![refs::FINAL_RESULT.to_owned()],
                            ..Reply::default()
                        },
                        Err(message) => Reply {
                            error: Some(message),
                            ..Reply::default()
                        },
                    };
                    let _ = blocking(move || inbox::answer(&taken, &reply)).await;
                }
                if let Some(decided) = decided {
                    return decided;
                }
            }
        }
    }
}
