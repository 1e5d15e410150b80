//! The schedule: steps start as their needs end, at most `max_parallel` at once; steps whose
//! needs failed or whose `if` is false are skipped; a result that waits for a person holds
//! back its dependents (`approval.rs`) until a person decides, at the prompt or in another
//! terminal; watch mode steers it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::approval::{self, Applied, Gates, Look};
use super::state::{Scope, Shared, StepRecord};
use super::{Control, end, expand, step};
use crate::event::{Body, ErrorKind, Outcome, RunOutcome, SkipReason};
use crate::plan::Plan;
use crate::process;

/// Starts steps as their needs end, at most `max_parallel` at once, until every step has ended
/// or the run is cancelled.
pub(super) async fn schedule(
    shared: &Arc<Shared>,
    mut cancel: watch::Receiver<bool>,
    done: &[(usize, Outcome)],
    control: Option<watch::Receiver<Control>>,
) -> (RunOutcome, Option<String>) {
    let mut control = control;
    let mut draining = false;
    let (mut plan, mut version) = (&*shared.plan, shared.plan.version());
    let (mut n, mut index, mut needs) = graph(plan);
    let mut ended: Vec<Option<Outcome>> = vec![None; n];
    let mut gates = Gates::new();
    let mut look = Look::new(shared);
    let mut started: HashSet<usize> = HashSet::new();
    for i in gates.refused_before(shared) {
        ended[i] = Some(Outcome::Failed);
        started.insert(i);
    }
    for &(i, outcome) in done {
        // A kept result that still waits for a person is asked about again.
        ended[i] = gates.on_end(shared, i, outcome).await;
        started.insert(i);
    }
    let mut running = JoinSet::new();
    // Which step each task runs, to end the step whose task panicked or was aborted.
    let mut tasks: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut cancelled = false;
    let spawned_at_most = plan.max_parallel.saturating_mul(4).max(16);
    loop {
        if shared.emitter.failed() && !cancelled {
            cancelled = true;
        }
        // A dynamic matrix expanded: its children join the schedule, its dependents need them.
        if shared.plan.version() != version {
            (plan, version) = (&*shared.plan, shared.plan.version());
            (n, index, needs) = graph(plan);
            ended.resize(n, None);
        }
        // Skip what can no longer run; collect what is ready.
        let mut ready = Vec::new();
        let mut changed = true;
        while changed && !cancelled {
            changed = false;
            ready.clear();
            for i in 0..n {
                if ended[i].is_some() || started.contains(&i) {
                    continue;
                }
                let step = &plan.steps[i];
                let outcomes: Vec<Option<Outcome>> = needs[i].iter().map(|&j| ended[j]).collect();
                if outcomes.iter().any(Option::is_none) {
                    continue;
                }
                // A dynamic step's `if` is its children's.
                if step.if_.is_none() || step.dynamic.is_some() {
                    if let Some((j, o)) = needs[i]
                        .iter()
                        .zip(&outcomes)
                        .find(|(_, o)| !o.is_some_and(Outcome::ok))
                    {
                        let need_outcome = o.unwrap_or(Outcome::Skipped);
                        skip(
                            shared,
                            i,
                            SkipReason::Need {
                                need: plan.steps[*j].id.clone(),
                                need_outcome,
                                rejected: shared.rejection(*j),
                            },
                        );
                        ended[i] = Some(Outcome::Skipped);
                        changed = true;
                        continue;
                    }
                } else if let Some(expression) = &step.if_ {
                    match eval_if(shared, i, expression).await {
                        Ok(true) => {}
                        Ok(false) => {
                            skip(
                                shared,
                                i,
                                SkipReason::If {
                                    expression: expression.clone(),
                                },
                            );
                            ended[i] = Some(Outcome::Skipped);
                            changed = true;
                            continue;
                        }
                        Err(e) => {
                            end::fail_early(
                                shared,
                                i,
                                ErrorKind::Template,
                                format!("cannot evaluate `if = \"{expression}\"`: {e}"),
                            );
                            ended[i] = Some(Outcome::Failed);
                            changed = true;
                            continue;
                        }
                    }
                }
                ready.push(i);
            }
        }
        for i in ready {
            // Steps at work are bounded by the run's permits (`Shared::work`): more may be
            // under way, looking for a cached result, which takes none.
            if running.len() >= spawned_at_most || cancelled || draining {
                break;
            }
            started.insert(i);
            let passed = passed_needs(&needs[i], &ended);
            let shared = shared.clone();
            let task = if plan.steps[i].dynamic.is_some() {
                running.spawn(expand::expand_step(shared, i))
            } else {
                running.spawn(async move { step::run_step(shared, i, passed).await })
            };
            tasks.insert(task.id(), i);
        }
        // Nothing runs and no one is being asked: what waits for a person waits on (unless a
        // decision made elsewhere came meanwhile).
        if running.is_empty() && (!gates.open() || cancelled || draining) {
            let found = if cancelled || draining {
                Vec::new()
            } else {
                approval::pending(shared).await
            };
            if found.is_empty() {
                break;
            }
            for (i, left) in gates.take(shared, found).await {
                on_decided(
                    shared,
                    i,
                    left,
                    &needs,
                    &mut ended,
                    &mut running,
                    &mut tasks,
                );
            }
            continue;
        }
        tokio::select! {
            joined = running.join_next_with_id(), if !running.is_empty() => {
                if let Some((i, outcome)) = joined.and_then(|j| ended_step(shared, &tasks, j)) {
                    ended[i] = gates.on_end(shared, i, outcome).await;
                }
            }
            Some((i, decision)) = gates.decided(), if gates.open() => {
                let by = crate::history::who(&shared.repo);
                let left = Gates::apply(shared, i, decision, by).await;
                on_decided(shared, i, left, &needs, &mut ended, &mut running, &mut tasks);
            }
            found = look.elsewhere(shared), if !cancelled && !draining => {
                for (i, left) in gates.take(shared, found).await {
                    on_decided(shared, i, left, &needs, &mut ended, &mut running, &mut tasks);
                }
            }
            () = process::cancelled(&mut cancel), if !cancelled => {
                // Running steps see the same signal and stop their process groups.
                cancelled = true;
            }
            changed = async { control.as_mut()?.changed().await.ok() }, if control.is_some() => {
                match changed {
                    Some(()) => {
                        let wanted = control.as_ref().map(|c| c.borrow().clone()).unwrap_or_default();
                        for id in &wanted.stop {
                            if let Some(&i) = index.get(id.as_str()) {
                                shared.stops.stop_step(i);
                            }
                        }
                        if wanted.drain {
                            draining = true;
                            shared.stops.drain();
                        }
                    }
                    None => control = None,
                }
            }
        }
    }
    if cancelled || shared.stops.run_stopped() {
        return (RunOutcome::Cancelled, Some("cancelled".to_owned()));
    }
    if draining {
        return (
            RunOutcome::Cancelled,
            Some("superseded by a change".to_owned()),
        );
    }
    let waiting = shared.waiting();
    if !waiting.is_empty() {
        let steps: Vec<String> = waiting.iter().map(|s| format!("`{s}`")).collect();
        return (
            RunOutcome::Waiting,
            Some(format!("waiting for approval: {}", steps.join(", "))),
        );
    }
    if ended.contains(&Some(Outcome::Failed)) {
        return (RunOutcome::Failed, Some("step failed".to_owned()));
    }
    (RunOutcome::Passed, None)
}

/// Acts on how a decision `left` step `i`: ended, waiting on, or to run again.
fn on_decided(
    shared: &Arc<Shared>,
    i: usize,
    left: Applied,
    needs: &[Vec<usize>],
    ended: &mut [Option<Outcome>],
    running: &mut JoinSet<Outcome>,
    tasks: &mut HashMap<tokio::task::Id, usize>,
) {
    match left {
        Applied::Ended(outcome) => ended[i] = Some(outcome),
        Applied::Waits => {}
        Applied::Rerun => {
            let passed = passed_needs(&needs[i], ended);
            let shared = shared.clone();
            let task = running.spawn(async move { step::run_step(shared, i, passed).await });
            tasks.insert(task.id(), i);
        }
    }
}

/// The needs of a step that passed (their results make its base).
fn passed_needs(needs: &[usize], ended: &[Option<Outcome>]) -> Vec<usize> {
    needs
        .iter()
        .copied()
        .filter(|&j| ended[j].is_some_and(Outcome::ok))
        .collect()
}

/// The plan's step count, each step's index by id, and each step's needs by index.
#[allow(clippy::type_complexity)]
fn graph(plan: &Plan) -> (usize, HashMap<&str, usize>, Vec<Vec<usize>>) {
    let index: HashMap<&str, usize> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let needs = plan
        .steps
        .iter()
        .map(|s| {
            s.needs
                .iter()
                .filter_map(|n| index.get(n.as_str()).copied())
                .collect()
        })
        .collect();
    (plan.steps.len(), index, needs)
}

/// The step a joined task ran, and how it ended. A task that panicked or was aborted never
/// recorded its end: its step fails, so its dependents are skipped and the run fails.
fn ended_step(
    shared: &Shared,
    tasks: &HashMap<tokio::task::Id, usize>,
    joined: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>,
) -> Option<(usize, Outcome)> {
    match joined_step(tasks, joined)? {
        (i, Ok(outcome)) => Some((i, outcome)),
        (i, Err(message)) => {
            end::fail_early(shared, i, ErrorKind::Internal, message);
            Some((i, Outcome::Failed))
        }
    }
}

/// Which step a joined task ran, and its outcome or why it has none.
fn joined_step(
    tasks: &HashMap<tokio::task::Id, usize>,
    joined: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>,
) -> Option<(usize, Result<Outcome, String>)> {
    match joined {
        Ok((id, outcome)) => Some((*tasks.get(&id)?, Ok(outcome))),
        Err(e) => {
            let why = if e.is_panic() {
                "medley's task for it panicked (a bug: please report it)"
            } else {
                "medley's task for it was aborted"
            };
            Some((
                *tasks.get(&e.id())?,
                Err(format!("the step did not end: {why}")),
            ))
        }
    }
}

/// Evaluates step `i`'s `if` as blocking work (its context reads git).
async fn eval_if(shared: &Arc<Shared>, i: usize, expression: &str) -> Result<bool, String> {
    let shared = shared.clone();
    let expression = expression.to_owned();
    super::blocking(move || {
        let context = shared.context(Scope::Step(i), 1, shared.base, true)?;
        shared
            .plan
            .templates
            .eval(&expression, &context)
            .map_err(|e| e.to_string())
    })
    .await?
}

fn skip(shared: &Shared, i: usize, reason: SkipReason) {
    if let Ok(mut records) = shared.records.lock() {
        records[i] = Some(StepRecord {
            outcome: Outcome::Skipped,
            base: shared.base,
            commit: None,
            output: String::new(),
            cost_usd: None,
        });
    }
    shared.emitter.emit(Body::StepSkipped {
        step: shared.plan.steps[i].id.clone(),
        reason,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_step_task_that_panics_ends_its_step_as_failed() {
        let mut running = JoinSet::new();
        let mut tasks = HashMap::new();
        let fine = running.spawn(async { Outcome::Passed });
        tasks.insert(fine.id(), 0);
        let broken = running.spawn(async { panic!("a bug in a step task") });
        tasks.insert(broken.id(), 1);
        let mut ended = Vec::new();
        while let Some(joined) = running.join_next_with_id().await {
            ended.push(joined_step(&tasks, joined).expect("a known task"));
        }
        ended.sort_by_key(|(i, _)| *i);
        assert_eq!(ended[0], (0, Ok(Outcome::Passed)));
        let (i, why) = &ended[1];
        assert_eq!(*i, 1);
        assert!(
            why.as_ref().is_err_and(|w| w.contains("panicked")),
            "{why:?}"
        );
    }
}
