//! One step from start to end: its base (the merge of its needs' results), a cached result
//! if its key has one, else its work (a command, or a chain of agents) driven in a worktree,
//! and its `step_finished` event.

use std::sync::Arc;
use std::time::Instant;

use git2::Oid;

use super::attempt::{self, End};
use super::blocking;
use super::command::CommandWork;
use super::end::{StepEnd, finish, finish_with};
use super::merge::{self, Merged};
use super::state::{Scope, Shared};
use super::{cached, chain};
use crate::event::{Body, ErrorKind, Outcome, StepError};
use crate::plan::Action;

/// Runs step `i`, whose passed needs are `needs`, to its end; returns its outcome.
pub(crate) async fn run_step(shared: Arc<Shared>, i: usize, needs: Vec<usize>) -> Outcome {
    let started = Instant::now();
    let step = &shared.plan.steps[i];
    let fail = |kind: ErrorKind,
                message: String,
                base: Oid,
                attempts: u32,
                extra: Option<(Vec<String>, Vec<String>)>| {
        let (files, steps) = match extra {
            Some((f, s)) => (Some(f), Some(s)),
            None => (None, None),
        };
        finish(
            &shared,
            i,
            Outcome::Failed,
            None,
            base,
            attempts,
            started,
            String::new(),
            Some(StepError {
                kind,
                message,
                files,
                steps,
            }),
        )
    };

    // The base: the merge of what the needs that passed produced.
    let results: Vec<(String, Oid)> = {
        let records = shared.records.lock().map(|r| r.clone()).unwrap_or_default();
        needs
            .iter()
            .filter_map(|&j| {
                Some((
                    shared.plan.steps[j].id.clone(),
                    records[j].as_ref()?.commit?,
                ))
            })
            .collect()
    };
    let run_base = shared.base;
    let spec = step.merge.as_ref();
    let base = match merge::merge(&shared, Scope::Step(i), spec, results).await {
        Merged::Done(base) => base,
        Merged::Conflict { files, steps } => {
            let message = format!(
                "the results of steps {} change the same lines of {}",
                steps
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(" and "),
                files
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return fail(
                ErrorKind::MergeConflict,
                message,
                run_base,
                0,
                Some((files, steps)),
            );
        }
        // What the merge agents used is the failed step's.
        Merged::Failed {
            error,
            attempts,
            usage,
        } => {
            let end = StepEnd {
                outcome: Outcome::Failed,
                commit: None,
                base: run_base,
                attempts,
                output: String::new(),
                error: Some(error),
                agent: usage.agent.clone(),
                tokens: usage.tokens,
                cost_usd: usage.cost(),
                unpriced: usage.unpriced,
                uncounted: usage.uncounted,
                cached_from: None,
                cached_cost_usd: None,
            };
            return finish_with(&shared, i, started, end);
        }
        Merged::Cancelled => {
            let error = StepError::new(ErrorKind::Cancelled, shared.stops.reason());
            return finish(
                &shared,
                i,
                Outcome::Cancelled,
                None,
                run_base,
                0,
                started,
                String::new(),
                Some(error),
            );
        }
    };
    shared.emitter.emit(Body::StepReady {
        step: step.id.clone(),
        base: base.to_string(),
    });

    // A result this step's key already has is reused; a passed result is kept for next time.
    let key = if shared.caching(i) {
        match cached::key(&shared, i, base).await {
            Ok(key) => Some(key),
            Err(e) => return fail(ErrorKind::Template, e, base, 0, None),
        }
    } else {
        None
    };
    if let Some(key) = &key
        && let Some(outcome) = cached::reuse(&shared, i, base, key, started).await
    {
        return outcome;
    }
    // At most `max_parallel` steps work at once. One the run's stop (or watch's drain) reached
    // while it waited never started: it ends with no event, as a step the schedule never
    // reached. One stopped alone ends as cancelled.
    let Some(_permit) = shared.work_permit(i).await else {
        if shared.stops.run_stopped() || shared.stops.drained() {
            return Outcome::Cancelled;
        }
        let error = StepError::new(ErrorKind::Cancelled, shared.stops.reason());
        return finish(
            &shared,
            i,
            Outcome::Cancelled,
            None,
            base,
            0,
            started,
            String::new(),
            Some(error),
        );
    };
    let outcome = match &step.action {
        Action::Agent { .. } => chain::run(&shared, i, base, started).await,
        Action::Command { run } => {
            let logs = shared.run_dir.join("logs").join(&step.id);
            let mut held = match super::worktree::acquire(
                &shared,
                &step.id,
                shared.start_of(i, base),
                step.fresh_worktree,
            )
            .await
            {
                Ok(held) => held,
                Err(e) => return fail(ErrorKind::Worktree, e.to_string(), base, 0, None),
            };
            let mut work = CommandWork {
                shared: &shared,
                i,
                run,
                base,
                logs: logs.clone(),
                last: None,
            };
            let mut cancel = shared.stops.step_stop(i);
            let ended = attempt::drive(
                &shared,
                &attempt::Target::step(&shared, i),
                &mut held,
                &logs,
                base,
                "setup.log",
                &mut cancel,
                &mut work,
            )
            .await;
            let (outcome, commit, output, error) = match ended.end {
                End::Passed { commit, output } => (Outcome::Passed, Some(commit), output, None),
                End::Failed { error, output, .. } => (Outcome::Failed, None, output, error),
                End::Cancelled => (
                    Outcome::Cancelled,
                    None,
                    String::new(),
                    Some(StepError::new(ErrorKind::Cancelled, shared.stops.reason())),
                ),
            };
            if outcome == Outcome::Failed {
                held.keep(&shared, &step.id).await;
            } else {
                let _ = held.release(&shared).await;
            }
            finish(
                &shared,
                i,
                outcome,
                commit,
                base,
                ended.attempts,
                started,
                output,
                error,
            )
        }
    };
    if outcome == Outcome::Passed
        && let Some(key) = key
    {
        let record = shared.records.lock().ok().and_then(|r| r[i].clone());
        if let Some(record) = record
            && let Some(commit) = record.commit
        {
            let entry = crate::cache::Entry {
                run: shared.run.clone(),
                step: step.id.clone(),
                base: base.to_string(),
                commit: commit.to_string(),
                output: record.output,
                cost_usd: record.cost_usd,
                approved_by: None,
            };
            let repo = shared.repo.clone();
            let stored = match blocking(move || crate::cache::store(&repo, &key, &entry)).await {
                Ok(stored) => stored.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            if let Err(e) = stored {
                shared.emitter.warn(
                    Some(&step.id),
                    format!("its result could not be kept in the cache, so the next run runs it again: {e}"),
                );
            }
        }
    }
    outcome
}
