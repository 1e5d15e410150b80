//! Merging results, with a merge agent for conflicts: the needs of a step into its base, or
//! the leaves into the run's result. Without `merge`, a conflict is handed back as it was
//! found. With it, each conflict is checked out with git's markers in a pooled worktree, and
//! the merge's chain of agents is driven by the attempt driver (attempts, retries with
//! feedback, the next agent on failure) until one leaves no marker in the conflicting files
//! and passes `merge.gate`. The resolution, a merge commit of both sides, is merged on, and
//! cached: the same conflict with the same prompt, gate and chain reuses it without an agent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use git2::Oid;
use tokio::sync::watch;

use super::agent::AgentWork;
use super::attempt::{self, End, Failure, FailureKind, Target, Verdict, Work};
use super::blocking;
use super::merge_cache;
use super::program::{program_of, which};
use super::state::{Scope, Shared};
use crate::event::{Body, ErrorKind, FailReason, MergeSide, StepError, Tokens};
use crate::git::{MergeOutcome, Sides, has_markers, refs};
use crate::plan::MergeSpec;
use crate::process::Exit;

/// The id the final merge's attempts and refs are named by.
const FINAL: &str = crate::event::FINAL_MERGE;

/// The final merge's attempts and timeout (it has no step to take them from).
const FINAL_ATTEMPTS: u32 = 2;
const FINAL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How merging ended.
pub(crate) enum Merged {
    /// The merge, with every conflict resolved.
    Done(Oid),
    /// A conflict, and no `merge` to resolve it.
    Conflict {
        files: Vec<String>,
        steps: Vec<String>,
    },
    /// The results could not be merged, or the merge agents did not resolve a conflict
    /// (after `attempts` attempts in all, using `usage` on it: not accounted yet).
    Failed {
        error: StepError,
        attempts: u32,
        usage: Usage,
    },
    Cancelled,
}

/// What the merge agents used on a conflict.
#[derive(Debug, Clone, Default)]
pub(crate) struct Usage {
    /// The last agent that ran.
    pub agent: Option<String>,
    /// `None` while no attempt reported tokens.
    pub tokens: Option<Tokens>,
    pub cost_usd: Option<f64>,
    pub unpriced: bool,
    /// An attempt reported no tokens.
    pub uncounted: bool,
}

impl Usage {
    fn add(&mut self, agent: &AgentWork<'_>) {
        self.agent = Some(agent.name.to_owned());
        Tokens::add(&mut self.tokens, agent.tokens);
        if let Some(c) = agent.cost {
            *self.cost_usd.get_or_insert(0.0) += c;
        }
        self.unpriced |= agent.unpriced;
        self.uncounted |= agent.uncounted;
    }

    /// The known cost, `None` when some of it is not known.
    pub(crate) fn cost(&self) -> Option<f64> {
        if self.unpriced { None } else { self.cost_usd }
    }
}

/// Merges `results` onto the run's base for `scope` (a step's needs, or the leaves), with
/// `spec`'s agents resolving each conflict.
pub(crate) async fn merge(
    shared: &Arc<Shared>,
    scope: Scope,
    spec: Option<&MergeSpec>,
    results: Vec<(String, Oid)>,
) -> Merged {
    let repo = shared.repo.clone();
    let base = shared.base;
    let mut merged = blocking(move || repo.merge(base, &results)).await;
    let mut attempts = 0;
    loop {
        let (files, steps, sides) = match merged {
            Ok(Ok(MergeOutcome::Merged(oid))) => return Merged::Done(oid),
            Ok(Ok(MergeOutcome::Conflict {
                files,
                steps,
                sides,
            })) => (files, steps, sides),
            Ok(Err(e)) => return failed(ErrorKind::Merge, e.to_string(), attempts),
            Err(e) => return failed(ErrorKind::Merge, e, attempts),
        };
        let Some(spec) = spec else {
            return Merged::Conflict { files, steps };
        };
        shared.emitter.emit(Body::MergeConflict {
            step: scope.step().map(|i| shared.plan.steps[i].id.clone()),
            files: files.clone(),
            steps: steps.clone(),
        });
        let resolved = match resolve(shared, scope, spec, &files, &sides).await {
            Resolution::Resolved {
                commit,
                attempts: n,
            } => {
                attempts += n;
                commit
            }
            Resolution::Cancelled => return Merged::Cancelled,
            Resolution::Failed {
                error,
                attempts: n,
                usage,
            } => {
                let mut error = error;
                error.files = Some(files);
                error.steps = Some(steps);
                return Merged::Failed {
                    error,
                    attempts: attempts + n,
                    usage,
                };
            }
        };
        let repo = shared.repo.clone();
        merged =
            blocking(move || repo.merge_onto(base, &sides.merged, resolved, &sides.rest)).await;
    }
}

fn failed(kind: ErrorKind, message: String, attempts: u32) -> Merged {
    Merged::Failed {
        error: StepError::new(kind, message),
        attempts,
        usage: Usage::default(),
    }
}

/// How one conflict ended. A resolved or cancelled one's usage is accounted; a failed one's is
/// handed on (to the failed step's end).
enum Resolution {
    Resolved {
        commit: Oid,
        attempts: u32,
    },
    Failed {
        error: StepError,
        attempts: u32,
        usage: Usage,
    },
    Cancelled,
}

/// One conflict, resolved by the merge's agents one after another.
async fn resolve(
    shared: &Arc<Shared>,
    scope: Scope,
    spec: &MergeSpec,
    files: &[String],
    sides: &Sides,
) -> Resolution {
    let step = scope.step().map(|i| &shared.plan.steps[i]);
    let id = step.map_or(FINAL, |s| s.id.as_str()).to_owned();
    let fail = |kind: ErrorKind, message: String, attempts: u32, usage: Usage| Resolution::Failed {
        error: StepError::new(kind, message),
        attempts,
        usage,
    };
    let repo = shared.repo.clone();
    let (s, message) = (
        sides.clone(),
        format!("medley: conflict of {} (markers)\n\nrun {}", id, shared.run),
    );
    let conflicted = match blocking(move || repo.conflicted(&s, &message)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail(ErrorKind::Merge, e.to_string(), 0, Usage::default()),
        Err(e) => return fail(ErrorKind::Merge, e, 0, Usage::default()),
    };
    let prompt = match super::merge_prompt::build(shared, scope, spec, files, sides).await {
        Ok(p) => p,
        Err(e) => return fail(ErrorKind::Template, e, 0, Usage::default()),
    };
    // A resolution cached for this very conflict, prompt, gate and chain is used again.
    let key = match merge_cache::caching(shared, scope) {
        true => merge_cache::key(shared, scope, spec, &prompt, sides, conflicted)
            .await
            .ok(),
        false => None,
    };
    if let Some(key) = &key
        && let Some((commit, entry)) = merge_cache::reuse(shared, key, sides).await
    {
        let usage = Usage {
            agent: Some(entry.agent),
            ..Usage::default()
        };
        return announce(shared, &id, 0, usage, commit, sides, Some(entry.run)).await;
    }
    let target = Target {
        scope,
        id: id.clone(),
        attempts: step.map_or(FINAL_ATTEMPTS, |s| s.attempts),
        timeout: step.map_or(FINAL_TIMEOUT, |s| s.timeout),
        gate: spec.gate.clone(),
        result_ref: refs::merge_result(&shared.run, &id),
        merge: true,
    };
    let fresh = step.map_or(shared.plan.fresh_worktrees, |s| s.fresh_worktree);
    let logs = shared.run_dir.join("logs").join(&id).join("merge");
    // The merge takes a share of `max_parallel`, as a step's work does.
    let (_permit, mut cancel) = match scope {
        Scope::Step(i) => match shared.work_permit(i).await {
            Some(p) => (p, shared.stops.step_stop(i)),
            None => return Resolution::Cancelled,
        },
        Scope::Mission => match shared.work.acquire().await {
            Ok(p) => (p, shared.stops.run_stop()),
            Err(_) => return Resolution::Cancelled,
        },
    };
    let mut attempts = 0;
    let mut usage = Usage::default();
    let mut last: Option<StepError> = None;
    for (n, name) in spec.agents.iter().enumerate() {
        if n > 0 {
            shared.emitter.emit(Body::AgentSwitched {
                step: id.clone(),
                from: spec.agents[n - 1].clone(),
                to: name.clone(),
                reason: last_reason(last.as_ref()),
            });
        }
        let Some(profile) = shared.plan.agents.get(name).cloned() else {
            last = Some(StepError::new(
                ErrorKind::Agent,
                format!("no agent profile `{name}`"),
            ));
            continue;
        };
        if which(&program_of(&profile)).is_none() {
            last = Some(StepError::new(
                ErrorKind::AgentMissing,
                format!("`{}` is not installed", program_of(&profile)),
            ));
            continue;
        }
        let mut held = match super::worktree::acquire(
            shared,
            &format!("{id}/merge/{name}"),
            conflicted,
            fresh,
        )
        .await
        {
            Ok(held) => held,
            Err(e) => return fail(ErrorKind::Worktree, e.to_string(), attempts, usage),
        };
        let mut agent = AgentWork::new(shared, &target, name, profile, conflicted, logs.clone());
        agent.prompt = Some(prompt.clone());
        let mut work = MergeWork {
            agent,
            files,
            worktree: PathBuf::new(),
        };
        let setup_log = format!("setup.{name}.log");
        let ended = attempt::drive(
            shared,
            &target,
            &mut held,
            &logs,
            conflicted,
            &setup_log,
            &mut cancel,
            &mut work,
        )
        .await;
        attempts += ended.attempts;
        usage.add(&work.agent);
        match ended.end {
            End::Passed { commit, .. } => {
                let _ = held.release(shared).await;
                let key = key.as_deref();
                return resolved(shared, &id, attempts, usage, commit, sides, key).await;
            }
            End::Cancelled => {
                let _ = held.release(shared).await;
                shared.account(usage.tokens, usage.unpriced, usage.uncounted);
                return Resolution::Cancelled;
            }
            End::Failed { error, reason, .. } => {
                held.keep(shared, &id).await;
                last = Some(error.unwrap_or_else(|| StepError::new(reason.into(), "failed")));
            }
        }
    }
    let why = last.map_or_else(|| "no agent ran".to_owned(), |e| e.message);
    fail(
        ErrorKind::MergeConflict,
        format!(
            "the merge agent did not resolve the conflict in {}: {why}",
            files
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        attempts,
        usage,
    )
}

fn last_reason(error: Option<&StepError>) -> FailReason {
    match error.map(|e| e.kind) {
        Some(ErrorKind::MergeConflict) => FailReason::Unresolved,
        Some(ErrorKind::Gate) => FailReason::Gate,
        Some(ErrorKind::Timeout) => FailReason::Timeout,
        _ => FailReason::AgentError,
    }
}

/// The accepted resolution `commit` made a merge commit of both sides, cached under `key`
/// (when caching), kept and announced.
async fn resolved(
    shared: &Arc<Shared>,
    id: &str,
    attempts: u32,
    usage: Usage,
    commit: Oid,
    sides: &Sides,
    key: Option<&str>,
) -> Resolution {
    let agent = usage.agent.clone().unwrap_or_default();
    let repo = shared.repo.clone();
    let s = sides.clone();
    let message = format!(
        "medley: merge of {} and {} (resolved by {agent})\n\nrun {}",
        sides.ours_label(),
        sides.theirs_step,
        shared.run
    );
    let merge = match blocking(move || repo.resolution(commit, &s, &message)).await {
        Ok(Ok(merge)) => merge,
        Ok(Err(e)) => return unkept(e.to_string(), attempts, usage),
        Err(e) => return unkept(e, attempts, usage),
    };
    if let Some(key) = key {
        merge_cache::store(shared, id, key, merge, &agent, usage.cost()).await;
    }
    announce(shared, id, attempts, usage, merge, sides, None).await
}

fn unkept(message: String, attempts: u32, usage: Usage) -> Resolution {
    Resolution::Failed {
        error: StepError::new(ErrorKind::State, message),
        attempts,
        usage,
    }
}

/// The resolution's merge commit `merge` kept as the merge's ref, its usage accounted, and
/// `merge_resolved` emitted (`cached_from`: the run whose resolution it reuses).
async fn announce(
    shared: &Arc<Shared>,
    id: &str,
    attempts: u32,
    usage: Usage,
    merge: Oid,
    sides: &Sides,
    cached_from: Option<String>,
) -> Resolution {
    let agent = usage.agent.clone().unwrap_or_default();
    let repo = shared.repo.clone();
    let (s, name) = (sides.clone(), refs::merge_result(&shared.run, id));
    let made = blocking(move || {
        repo.set_ref(&name, merge, "medley: merge resolved")?;
        Ok::<_, crate::git::GitError>((repo.tree_of(s.ours)?, repo.tree_of(s.theirs)?))
    })
    .await;
    let (ours_tree, theirs_tree) = match made {
        Ok(Ok(made)) => made,
        Ok(Err(e)) => return unkept(e.to_string(), attempts, usage),
        Err(e) => return unkept(e, attempts, usage),
    };
    shared.account(usage.tokens, usage.unpriced, usage.uncounted);
    shared.emitter.emit(Body::MergeResolved {
        step: id.to_owned(),
        commit: merge.to_string(),
        agent,
        attempts,
        tokens: usage.tokens,
        cost_usd: usage.cost(),
        ours: MergeSide {
            commit: sides.ours.to_string(),
            tree: ours_tree.to_string(),
            steps: sides.first_side(),
        },
        theirs: MergeSide {
            commit: sides.theirs.to_string(),
            tree: theirs_tree.to_string(),
            steps: vec![sides.theirs_step.clone()],
        },
        cached_from,
    });
    Resolution::Resolved {
        commit: merge,
        attempts,
    }
}

/// A merge agent's work: an agent's, judged also by the conflict markers it left.
struct MergeWork<'a> {
    agent: AgentWork<'a>,
    files: &'a [String],
    worktree: PathBuf,
}

impl Work for MergeWork<'_> {
    const SPENDS: bool = true;

    fn agent(&self) -> Option<(&str, &str)> {
        self.agent.agent()
    }

    fn label(&self) -> String {
        format!(" (merge, {})", self.agent.name)
    }

    async fn begin(&mut self, attempt: u32, failure: Option<&Failure>) -> Result<(), StepError> {
        self.agent.begin(attempt, failure).await
    }

    async fn run(
        &mut self,
        attempt: u32,
        worktree: &Path,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Exit, StepError> {
        self.worktree = worktree.to_owned();
        self.agent.run(attempt, worktree, cancel).await
    }

    fn judge(&mut self, exit: Exit, files: usize) -> Verdict {
        let output = match self.agent.judge(exit, files) {
            Verdict::Done { output } => output,
            failed => return failed,
        };
        let left = unresolved(&self.worktree, self.files);
        if left.is_empty() {
            return Verdict::Done { output };
        }
        let message = format!(
            "conflict markers are left in {}",
            left.iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Verdict::Failed {
            reason: FailReason::Unresolved,
            retry: Some(Failure {
                kind: FailureKind::Agent,
                command: self.agent.name.to_owned(),
                exit_code: exit.code(),
                output: format!(
                    "{message}: edit each of them so that no `<<<<<<<`, `=======` or `>>>>>>>` line is left, keeping what both sides meant"
                ),
            }),
            message,
            final_: false,
            output,
        }
    }
}

/// The conflicting files that still hold a full marker block in `worktree` (a file the agent
/// removed is resolved).
fn unresolved(worktree: &Path, files: &[String]) -> Vec<String> {
    files
        .iter()
        .filter(|f| fs_err::read(worktree.join(f)).is_ok_and(|text| has_markers(&text)))
        .cloned()
        .collect()
}
