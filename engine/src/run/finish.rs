//! The end of a passed run: the leaves' results merged (a conflict resolved by the mission's
//! `merge`), the mission's gate on the merge, and the result branch.

use std::collections::HashSet;
use std::sync::Arc;

use git2::Oid;

use super::gate;
use super::merge::{self, Merged};
use super::state::{Scope, Shared};
use crate::event::{ErrorKind, RunOutcome};
use crate::git::refs;

/// Merges the results no other passed step built on, runs the mission's gate on the merge, and
/// points the result branch at it.
pub(super) async fn finish(shared: &Arc<Shared>) -> (RunOutcome, Option<String>, Option<String>) {
    let plan = &shared.plan;
    let records = shared.records.lock().map(|r| r.clone()).unwrap_or_default();
    let ok: Vec<usize> = (0..plan.steps.len())
        .filter(|&i| records[i].as_ref().is_some_and(|r| r.outcome.ok()))
        .collect();
    let built_on: HashSet<&str> = ok
        .iter()
        .flat_map(|&i| plan.steps[i].needs.iter().map(String::as_str))
        .collect();
    let leaves: Vec<(String, Oid)> = ok
        .iter()
        .filter(|&&i| !built_on.contains(plan.steps[i].id.as_str()))
        .filter_map(|&i| Some((plan.steps[i].id.clone(), records[i].as_ref()?.commit?)))
        .collect();
    let merged = match merge::merge(shared, Scope::Mission, plan.merge.as_ref(), leaves).await {
        Merged::Done(oid) => oid,
        Merged::Conflict { files, steps } => {
            return (
                RunOutcome::Failed,
                Some(format!(
                    "the results of steps {} conflict in {}",
                    steps.join(", "),
                    files.join(", ")
                )),
                None,
            );
        }
        Merged::Failed { error, usage, .. } => {
            shared.account(usage.tokens, usage.unpriced, usage.uncounted);
            let reason = if error.kind == ErrorKind::Merge {
                format!("cannot merge the results: {}", error.message)
            } else {
                error.message
            };
            return (RunOutcome::Failed, Some(reason), None);
        }
        Merged::Cancelled => return (RunOutcome::Cancelled, Some("cancelled".to_owned()), None),
    };
    if let Some(gate) = plan.gate.as_ref().filter(|_| !plan.partial) {
        match gate::mission(shared, gate, merged).await {
            Ok(true) => {}
            Ok(false) => {
                return (
                    RunOutcome::Failed,
                    Some("mission gate failed".to_owned()),
                    None,
                );
            }
            Err(message) => return (RunOutcome::Failed, Some(message), None),
        }
        if shared.stops.run_stopped() {
            return (RunOutcome::Cancelled, Some("cancelled".to_owned()), None);
        }
    }
    // With the mission's `approve`, the result waits for a person before its branch is made.
    if let Some((outcome, reason)) = super::approval::final_result(shared, merged).await {
        return (outcome, reason, None);
    }
    let branch = refs::result_branch(&plan.mission, &shared.run);
    match shared
        .repo
        .set_ref(&refs::branch(&branch), merged, "medley: run result")
    {
        Ok(()) => (RunOutcome::Passed, None, Some(branch)),
        Err(e) => (
            RunOutcome::Failed,
            Some(format!("cannot make branch `{branch}`: {e}")),
            None,
        ),
    }
}
