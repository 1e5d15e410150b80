//! Resuming a failed, cancelled, killed or waiting run: the same id, base and mission text; the
//! steps that passed keep their results, and the decisions people made on them hold.

use std::time::{Duration, Instant};

use git2::Oid;
use tokio::sync::{mpsc, watch};

use super::decisions::Book;
use super::state::StepRecord;
use super::{ResumeError, RunError, RunOptions, RunRecord, RunSummary, start};
use crate::event::{Event, Outcome, RunOutcome};
use crate::git::{Repo, refs};
use crate::history::Approval;
use crate::journal;
use crate::mission::OnReject;
use crate::process::Grace;

/// Continues a failed, cancelled or killed run under the same id: the steps that passed keep
/// their results, the others run again, from the same base and the same mission text.
pub async fn resume(
    run_arg: &str,
    options: RunOptions,
    events: mpsc::UnboundedSender<Event>,
    cancel: watch::Receiver<bool>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let repo = Repo::discover(&options.cwd)?;
    let resume_error = |e: ResumeError| RunError::Resume(Box::new(e));
    let run =
        crate::history::resolve(&repo.git_dir, run_arg).map_err(|e| resume_error(e.into()))?;
    let info = crate::history::load(&repo.git_dir, &run).map_err(|e| resume_error(e.into()))?;
    if info.live {
        return Err(resume_error(ResumeError::Live(run)));
    }
    if info.outcome == Some(RunOutcome::Passed) {
        return Err(resume_error(ResumeError::Passed(run)));
    }
    let record_path = journal::runs_dir(&repo.git_dir).join(&run).join("run.json");
    let record: RunRecord = match fs_err::read_to_string(&record_path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            resume_error(ResumeError::BadRunRecord {
                path: record_path.clone(),
                message: e.to_string(),
            })
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(resume_error(ResumeError::NoRecord(run.clone())));
        }
        Err(e) => {
            return Err(resume_error(ResumeError::BadRunRecord {
                path: record_path.clone(),
                message: e.to_string(),
            }));
        }
    };
    let mission_error = |errors| {
        resume_error(ResumeError::Mission {
            run: run.clone(),
            errors,
        })
    };
    let mission = crate::mission::Mission::parse(
        std::path::Path::new(&record.mission_path),
        record.mission_source.clone(),
    )
    .map_err(|e| mission_error(crate::plan::compile::CompileError::Mission(Box::new(e))))?;
    let shape = crate::plan::PlanOptions {
        sets: record.sets.clone(),
        only: record.only.clone(),
        max_parallel: record.max_parallel,
    };
    let plan = crate::plan::compile(&mission, &shape).map_err(|e| match e {
        crate::plan::compile::CompileError::Only(error) => resume_error(ResumeError::Only {
            run: run.clone(),
            error,
        }),
        errors => mission_error(errors),
    })?;
    // The run goes on as it was started: with its cache setting, its grace periods and its
    // worktrees' place.
    let mut options = options;
    options.no_cache |= record.no_cache;
    options.fresh_worktrees |= record.fresh_worktrees;
    if let Some([interrupt, terminate]) = record.grace_ms {
        options.grace = Grace {
            interrupt: Duration::from_millis(interrupt),
            terminate: Duration::from_millis(terminate),
        };
    }
    if options.worktrees.is_none() {
        options.worktrees = record.worktrees.clone();
    }
    let plan = start::checked(plan).await?.into_plan();
    let base = repo
        .find_ref(&refs::run_base(&run))?
        .ok_or_else(|| resume_error(ResumeError::NoRecord(run.clone())))?;
    // Steps that passed keep their results, as long as their refs still hold them, and hand on
    // what they handed on the first time (output, cost, the base their diff is against).
    // Decisions people made go on too: an approved result is not asked about again, a rejected
    // one fails (or, with `on_reject = "retry"`, runs again on top of itself).
    let mut done = Vec::new();
    let mut book = Book::default();
    match &info.approval {
        Some(Approval::Given { .. }) => book.decide_final(None),
        Some(Approval::Refused { reason, .. }) => book.decide_final(Some(reason.clone())),
        _ => {}
    }
    // A dynamic matrix whose upstream keeps its result has the same children again.
    let kept = kept_results(&repo, &run, &plan, &info)?;
    let (plan, expanded) = super::expand::expand_kept(&repo, plan, &kept);
    for i in expanded {
        done.push((
            i,
            StepRecord {
                outcome: Outcome::Passed,
                base,
                commit: None,
                output: String::new(),
                cost_usd: Some(0.0),
            },
        ));
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let Some(seen) = info.steps.get(&step.id) else {
            continue;
        };
        let Some(outcome) = seen.outcome.filter(|o| o.ok()) else {
            continue;
        };
        let Some(commit) = repo.find_ref(&refs::step_result(&run, &step.id))? else {
            continue;
        };
        let refused = match &seen.approval {
            Some(Approval::Given { .. }) => {
                book.approve(i);
                None
            }
            Some(Approval::Refused { by, reason, .. }) => Some((by.clone(), reason.clone())),
            _ => None,
        };
        let step_base = match &seen.base {
            Some(b) => Oid::from_str(b).map_err(|_| {
                resume_error(ResumeError::BadRecord {
                    run: run.clone(),
                    step: step.id.clone(),
                    commit: b.clone(),
                })
            })?,
            // A journal of an older medley: the result's parent.
            None => repo
                .open()?
                .find_commit(commit)
                .ok()
                .and_then(|c| c.parent_id(0).ok())
                .unwrap_or(base),
        };
        let cost_usd = if outcome == Outcome::Cached {
            seen.cached_cost_usd
        } else {
            seen.cost_usd
        };
        // A rejected result is not kept: the step fails, or runs again on top of it.
        match (refused, step.on_reject) {
            (Some((_, reason)), OnReject::Retry) => book.retry(i, commit, reason),
            (Some((by, reason)), OnReject::Fail) => book.refuse(i, by, reason, step_base),
            (None, _) => done.push((
                i,
                StepRecord {
                    outcome,
                    base: step_base,
                    commit: Some(commit),
                    output: seen.output.clone(),
                    cost_usd,
                },
            )),
        }
    }
    start::execute(
        plan,
        options,
        repo,
        run,
        base,
        done,
        book,
        Vec::new(),
        events,
        cancel,
        started,
    )
    .await
}

/// The result commits of the steps that passed before and still have them, by id.
fn kept_results(
    repo: &Repo,
    run: &str,
    plan: &crate::plan::Plan,
    info: &crate::history::RunInfo,
) -> Result<std::collections::HashMap<String, Oid>, RunError> {
    let mut kept = std::collections::HashMap::new();
    for step in &plan.steps {
        if info
            .steps
            .get(&step.id)
            .and_then(|s| s.outcome)
            .is_some_and(Outcome::ok)
            && let Some(commit) = repo.find_ref(&refs::step_result(run, &step.id))?
        {
            kept.insert(step.id.clone(), commit);
        }
    }
    Ok(kept)
}
