//! Steps added to a run as it goes: when the step a dynamic matrix reads from passes, the file
//! it names is read from that step's result and the plan grows by the children
//! (`plan::expand`), announced by `steps_expanded`; bad content fails the dynamic step.
//!
//! The plan and its upstream sets are [`Versions`]: each expansion adds a version, and every
//! reference handed out stays valid for the run (a step task may hold an older one; the steps
//! it knows are the same in every later version). The run's per-step state (records, stops)
//! is sized for every step the run may have, [`Plan::capacity`].

use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::end;
use super::state::{Shared, StepRecord};
use crate::event::{Body, ErrorKind, Outcome};
use crate::plan::Plan;
use crate::plan::compile::{Upstream, topological_order};

/// A value that a run replaces a bounded number of times: reads see the newest; what they
/// borrowed stays valid.
pub(crate) struct Versions<T> {
    slots: Vec<OnceLock<T>>,
    current: AtomicUsize,
    writer: Mutex<()>,
}

impl<T> Versions<T> {
    /// `first`, and room for `more` later versions.
    pub(crate) fn new(first: T, more: usize) -> Versions<T> {
        let slots: Vec<OnceLock<T>> = (0..=more).map(|_| OnceLock::new()).collect();
        let _ = slots[0].set(first);
        Versions {
            slots,
            current: AtomicUsize::new(0),
            writer: Mutex::new(()),
        }
    }

    /// Which version reads see (from 0).
    pub(crate) fn version(&self) -> usize {
        self.current.load(Ordering::Acquire)
    }

    /// Makes the next version from the newest, one writer at a time; `Ok(false)` when there
    /// is no room left.
    fn update<E>(&self, next: impl FnOnce(&T) -> Result<T, E>) -> Result<bool, E> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let at = self.version();
        let Some(slot) = self.slots.get(at + 1) else {
            return Ok(false);
        };
        let value = next(self)?;
        let _ = slot.set(value);
        self.current.store(at + 1, Ordering::Release);
        Ok(true)
    }
}

impl<T> Deref for Versions<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.slots[self.version()]
            .get()
            .expect("a version is set before it is current")
    }
}

/// How many times a plan may be expanded: once per dynamic step.
pub(crate) fn expansions(plan: &Plan) -> usize {
    plan.steps.iter().filter(|s| s.dynamic.is_some()).count()
}

/// The upstream sets of a plan whose steps may not be in order (children come last).
pub(crate) fn upstream_of(plan: &Plan) -> Upstream {
    Upstream::new(&plan.steps, Some(&topological_order(&plan.steps)))
}

/// Expands dynamic step `i` (its needs passed): reads its file from its `from` step's result,
/// adds the children to the run, and ends the step as passed; bad content fails it.
pub(crate) async fn expand_step(shared: Arc<Shared>, i: usize) -> Outcome {
    let task = shared.clone();
    match super::blocking(move || expand_now(&task, i)).await {
        Ok(Ok(())) => Outcome::Passed,
        Ok(Err(message)) => {
            end::fail_early(&shared, i, ErrorKind::Matrix, message);
            Outcome::Failed
        }
        Err(e) => {
            end::fail_early(&shared, i, ErrorKind::Internal, e);
            Outcome::Failed
        }
    }
}

fn expand_now(shared: &Shared, i: usize) -> Result<(), String> {
    let step = &shared.plan.steps[i];
    let axis = step
        .dynamic
        .clone()
        .ok_or_else(|| format!("step `{}` has no matrix read from a step", step.id))?;
    let id = step.id.clone();
    let text = read_list(shared, &axis.from, &axis.file)?;
    let mut children = Vec::new();
    let room = shared.plan.update(|plan| {
        let expanded = crate::plan::expand::expand(plan, i, &text)?;
        // Upstream sets first: a reader that sees the new plan sees them too.
        let upstream = upstream_of(&expanded.plan);
        shared.upstream.update(|_| Ok::<_, String>(upstream))?;
        children = expanded.children;
        Ok::<_, String>(expanded.plan)
    })?;
    if !room {
        return Err(format!(
            "step `{id}` was expanded already (a bug in medley)"
        ));
    }
    if let Ok(mut records) = shared.records.lock() {
        records[i] = Some(StepRecord {
            outcome: Outcome::Passed,
            base: shared.base,
            commit: None,
            output: String::new(),
            cost_usd: Some(0.0),
        });
    }
    shared.emitter.emit(Body::StepsExpanded {
        step: id,
        from: axis.from,
        file: axis.file,
        children,
    });
    Ok(())
}

/// The text of `file` in the result of step `from`, as this run has it.
fn read_list(shared: &Shared, from: &str, file: &str) -> Result<String, String> {
    let j = shared
        .plan
        .steps
        .iter()
        .position(|s| s.id == from)
        .ok_or_else(|| format!("no step `{from}` to read `{file}` from"))?;
    let commit = shared
        .records
        .lock()
        .ok()
        .and_then(|r| r[j].as_ref()?.commit)
        .ok_or_else(|| format!("step `{from}` has no result to read `{file}` from"))?;
    read_at(&shared.repo, commit, from, file)
}

fn read_at(
    repo: &crate::git::Repo,
    commit: git2::Oid,
    from: &str,
    file: &str,
) -> Result<String, String> {
    repo.read_file(commit, file).map_err(|why| {
        if why.starts_with("no file") {
            format!("`{file}` is not in the result of step `{from}`: the step must write it (a file git does not ignore)")
        } else {
            format!("cannot read `{file}` in the result of step `{from}`: {why}")
        }
    })
}

/// For a resumed run: each dynamic step whose `from` step keeps its result (`kept`, by plan
/// index) is expanded again from that result, before the run goes on, so it has the same
/// children; the dynamic step is then kept too. One whose file is bad is left to the run,
/// which fails it again.
pub(crate) fn expand_kept(
    repo: &crate::git::Repo,
    mut plan: Plan,
    kept: &std::collections::HashMap<String, git2::Oid>,
) -> (Plan, Vec<usize>) {
    let dynamic: Vec<usize> = (0..plan.steps.len())
        .filter(|&i| plan.steps[i].dynamic.is_some())
        .collect();
    let mut expanded = Vec::new();
    for i in dynamic {
        let Some(axis) = plan.steps[i].dynamic.clone() else {
            continue;
        };
        let Some(&commit) = kept.get(&axis.from) else {
            continue;
        };
        let Ok(text) = read_at(repo, commit, &axis.from, &axis.file) else {
            continue;
        };
        if let Ok(e) = crate::plan::expand::expand(&plan, i, &text) {
            plan = e.plan;
            expanded.push(i);
        }
    }
    (plan, expanded)
}
