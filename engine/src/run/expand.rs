//! Steps added to a run as it goes: when the step a dynamic matrix reads from passes, the file
//! it names is read from that step's result and the plan grows by the children
//! (`plan::expand`), announced by `steps_expanded`; bad content fails the dynamic step.
//!
//! The plan and its upstream sets are `Versions` (`run::versions`): each expansion adds one.
//! The run's per-step state (records, stops) is sized for every step the run may have,
//! [`Plan::capacity`].

use std::sync::Arc;

use super::end;
use super::state::{Shared, StepRecord};
use crate::event::{Body, ErrorKind, Outcome};
use crate::plan::Plan;
use crate::plan::compile::{Upstream, topological_order};

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
