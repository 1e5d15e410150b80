//! Runs as their journals tell them: listing, showing, applying and cleaning up.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::event::{Body, Outcome, RunOutcome, SkipReason, StepError, Tokens};
use crate::git::{GitError, Repo, refs};
use crate::journal;

mod apply;
mod approvals;
mod decide;
mod files;
mod ids;
pub(crate) mod inbox;
pub use apply::apply;
pub use approvals::Approval;
pub use decide::{DecideError, Decided, Verdict, decide, newest_waiting, who};
pub use files::{Written, WrittenKind, log_files, run_secrets, written_files};
pub use ids::{resolve, resolve_in, short_id, short_ids};

/// A run, summed up from its journal.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunInfo {
    pub id: String,
    pub mission: String,
    pub mission_path: String,
    /// When it started (RFC 3339).
    pub started: String,
    pub base: String,
    /// `None` while it runs, or when it was killed before it could say.
    pub outcome: Option<RunOutcome>,
    pub reason: Option<String>,
    pub result_branch: Option<String>,
    pub duration_ms: Option<u64>,
    /// The known part: see `uncounted_steps`.
    pub tokens: Tokens,
    pub cost_usd: Option<f64>,
    /// Steps whose cost is not known.
    pub unpriced_steps: usize,
    /// Agent steps whose tokens are not (all) known.
    pub uncounted_steps: usize,
    pub live: bool,
    pub steps: IndexMap<String, StepInfo>,
    /// The final result's approval (a mission with `approve`), once asked for.
    pub approval: Option<Approval>,
    /// The results decided (`@result`: the final result) since the run last stopped, which no
    /// run has acted on yet: the journal's last events (`medley approve --no-continue`).
    pub decided: Vec<String>,
}

/// A step of a run, summed up from its events.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StepInfo {
    pub outcome: Option<Outcome>,
    pub attempts: u32,
    pub duration_ms: Option<u64>,
    pub commit: Option<String>,
    pub skipped: Option<SkipReason>,
    pub error: Option<StepError>,
    pub worktree: Option<String>,
    /// The agent that finished the step (`None` for a command step).
    pub agent: Option<String>,
    /// `None`: no call reported any (see `step_finished`).
    pub tokens: Option<Tokens>,
    pub cost_usd: Option<f64>,
    /// The base it was ready on (its diff is against it).
    #[serde(skip)]
    pub base: Option<String>,
    /// What it handed on as `steps.<id>.output`.
    #[serde(skip)]
    pub output: String,
    /// For a cached step: what its result cost when it was made.
    #[serde(skip)]
    pub cached_cost_usd: Option<f64>,
    /// Kept from before a resume (not run again).
    pub kept: bool,
    /// The tail of the output of its last gate, when that gate failed.
    pub gate_output: Option<String>,
    /// The message of its last failed attempt (with the output's tail it carries).
    #[serde(skip)]
    pub last_failure: Option<String>,
    /// Where its result stands with a person (a step with `approve`).
    pub approval: Option<Approval>,
}

impl RunInfo {
    /// How the run stands: its outcome, or why it has none (still running, or killed), or
    /// `decided` when nothing waits any more but the decisions were not acted on yet.
    pub fn status(&self) -> &'static str {
        if self.decided_only() {
            return "decided";
        }
        match (self.outcome, self.live) {
            (Some(o), _) => o.name(),
            (None, true) => "running",
            // Killed while a result waited for a person: it still does.
            (None, false) if !self.waiting().is_empty() => "waiting",
            (None, false) => "killed",
        }
    }
}

/// Why a run could not be found or used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum HistoryError {
    #[error("no run `{0}` in this repository")]
    #[diagnostic(help(
        "`medley runs` lists the runs with the shortest prefix of each id that names it; `last` is the newest run, `last~1` the one before"
    ))]
    NoRun(String),
    #[error("this repository has no runs yet")]
    #[diagnostic(help("start one with `medley run`"))]
    NoRuns,
    #[error("`{arg}` goes back further than the {count} run{} there are", if *.count == 1 { "" } else { "s" })]
    #[diagnostic(help(
        "`last` is the newest run, `last~1` the one before it; `medley runs` lists them"
    ))]
    TooFarBack { arg: String, count: usize },
    #[error("`{0}` could be any of several runs")]
    #[diagnostic(help("give more of the id: {1}"))]
    Ambiguous(String, String),
    #[error("run `{run}` has no step `{step}`")]
    #[diagnostic(help("its steps that passed: {passed}"))]
    NoStep {
        run: String,
        step: String,
        passed: String,
    },
    #[error("run `{0}` has no result to apply: {1}")]
    #[diagnostic(help(
        "apply one step's result instead: `medley apply {0} --step ID` (`medley show {0}` lists them)"
    ))]
    NoResult(String, String),
    #[error("`medley apply` would overwrite local changes in {}", .0.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "))]
    #[diagnostic(help(
        "these files differ from the run's base: commit or stash your changes to them, then apply again"
    ))]
    LocalChanges(Vec<String>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Git(#[from] GitError),
    #[error("cannot read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads one run's journal.
pub fn load(git_dir: &Path, id: &str) -> Result<RunInfo, HistoryError> {
    let dir = journal::runs_dir(git_dir).join(id);
    let path = dir.join("events.jsonl");
    // An agent's raw output is never shown here: its lines are skipped unread.
    let events = journal::read_without(&path, &["agent_output"])
        .map_err(|source| HistoryError::Io { path, source })?;
    let mut info = RunInfo {
        id: id.to_owned(),
        mission: String::new(),
        mission_path: String::new(),
        started: String::new(),
        base: String::new(),
        outcome: None,
        reason: None,
        result_branch: None,
        duration_ms: None,
        tokens: Tokens::default(),
        cost_usd: None,
        unpriced_steps: 0,
        uncounted_steps: 0,
        live: journal::is_live(&dir),
        steps: IndexMap::new(),
        approval: None,
        decided: Vec::new(),
    };
    // A resumed run has a segment per start: its duration is the sum of theirs (a segment
    // killed before its end lasted until its last event).
    let mut segments_ms: u64 = 0;
    let mut segment: Option<(std::time::SystemTime, std::time::SystemTime)> = None;
    let ts = |t: &str| humantime::parse_rfc3339(t).ok();
    let close = |segment: &mut Option<(std::time::SystemTime, std::time::SystemTime)>,
                 total: &mut u64| {
        if let Some((start, last)) = segment.take() {
            *total += last
                .duration_since(start)
                .map_or(0, |d| d.as_millis() as u64);
        }
    };
    for event in events {
        // The final merge's agent attempts are not a step's: `merge_resolved` sums them up.
        if event.step() == Some(crate::event::FINAL_MERGE)
            && !matches!(event.body, Body::MergeResolved { .. })
        {
            continue;
        }
        if !matches!(event.body, Body::RunStarted { .. })
            && let (Some(at), Some((_, last))) = (ts(&event.ts), segment.as_mut())
        {
            *last = at;
        }
        approvals::track_decided(&mut info, &event.body);
        match event.body {
            Body::RunStarted {
                mission,
                mission_path,
                base,
                ..
            } => {
                close(&mut segment, &mut segments_ms);
                segment = ts(&event.ts).map(|t| (t, t));
                // How the run ended is what its newest segment says.
                info.outcome = None;
                info.reason = None;
                info.result_branch = None;
                info.duration_ms = None;
                if info.started.is_empty() {
                    info.mission = mission;
                    info.mission_path = mission_path;
                    info.base = base;
                    info.started = event.ts;
                }
            }
            Body::StepStarted {
                step,
                attempt,
                worktree,
                ..
            } => {
                let s = info.steps.entry(step).or_default();
                s.attempts = s.attempts.max(attempt);
                s.worktree = Some(worktree);
            }
            Body::StepReady { step, base } => {
                let s = info.steps.entry(step).or_default();
                s.base = Some(base);
                // A new go at the step: its result is asked about again.
                s.approval = None;
            }
            Body::StepKept { step, .. } => {
                info.steps.entry(step).or_default().kept = true;
            }
            Body::GateFinished {
                step: Some(step),
                passed,
                output_tail,
                ..
            } => {
                let s = info.steps.entry(step).or_default();
                s.gate_output = (!passed).then_some(output_tail);
            }
            Body::AttemptFailed { step, message, .. } => {
                info.steps.entry(step).or_default().last_failure = Some(message);
            }
            Body::StepFinished {
                step,
                outcome,
                commit,
                attempts,
                duration_ms,
                error,
                tokens,
                cost_usd,
                agent,
                output,
                cached_cost_usd,
                ..
            } => {
                let s = info.steps.entry(step).or_default();
                s.output = output;
                s.cached_cost_usd = cached_cost_usd;
                s.kept = false;
                s.outcome = Some(outcome);
                s.commit = commit;
                s.attempts = attempts;
                s.duration_ms = Some(duration_ms);
                // A step that ended with its last attempt's failure says only its first line;
                // the whole message (with its output's tail) is that attempt's.
                s.error = error.map(|mut e| {
                    if let Some(full) = &s.last_failure
                        && !e.message.contains('\n')
                        && full.lines().next().map(|l| l.trim_end_matches(':'))
                            == Some(e.message.as_str())
                    {
                        e.message = full.clone();
                    }
                    e
                });
                s.agent = agent;
                s.tokens = tokens;
                s.cost_usd = cost_usd;
                let known = tokens.unwrap_or_default();
                info.tokens.input += known.input;
                info.tokens.output += known.output;
                if let Some(c) = cost_usd {
                    *info.cost_usd.get_or_insert(0.0) += c;
                }
            }
            // A resolved conflict's cost is in no step's `step_finished`.
            Body::MergeResolved {
                tokens, cost_usd, ..
            } => {
                let known = tokens.unwrap_or_default();
                info.tokens.input += known.input;
                info.tokens.output += known.output;
                if let Some(c) = cost_usd {
                    *info.cost_usd.get_or_insert(0.0) += c;
                }
            }
            Body::StepSkipped { step, reason } => {
                let s = info.steps.entry(step).or_default();
                s.outcome = Some(Outcome::Skipped);
                s.skipped = Some(reason);
            }
            Body::RunFinished {
                outcome,
                reason,
                result_branch,
                duration_ms,
                unpriced_steps,
                uncounted_steps,
                ..
            } => {
                info.unpriced_steps = unpriced_steps;
                info.uncounted_steps = uncounted_steps;
                info.outcome = Some(outcome);
                info.reason = reason;
                info.result_branch = result_branch;
                segments_ms += duration_ms;
                info.duration_ms = Some(segments_ms);
                segment = None;
            }
            body => approvals::observe(&mut info, body, &event.ts),
        }
    }
    if info.outcome.is_none() && segments_ms > 0 {
        // A resume killed (or still running): the segments before it, and this one so far.
        close(&mut segment, &mut segments_ms);
        info.duration_ms = Some(segments_ms);
    }
    Ok(info)
}

/// Every run of the repository, oldest first.
pub fn list(git_dir: &Path) -> Vec<RunInfo> {
    journal::run_ids(&journal::runs_dir(git_dir))
        .iter()
        .filter_map(|id| load(git_dir, id).ok())
        .collect()
}

/// What `clean` removed.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// Runs whose leftover worktrees were removed.
    pub worktrees: Vec<String>,
    /// Runs whose records and refs were removed.
    pub runs: Vec<String>,
    /// Result branches removed.
    pub branches: Vec<String>,
    /// Runs kept whole (record, refs, branch) because their result branch was never applied:
    /// (run, branch).
    pub kept_branches: Vec<(String, String)>,
    /// Result branches whose run's record is gone (an older medley's `clean --runs` kept
    /// them), kept without `force`.
    pub stray_branches: Vec<String>,
    /// Pool slots a failed step of an ended run kept for a look, now free: (run, step).
    pub released_slots: Vec<(String, String)>,
    /// Pool slots removed (`--pool`).
    pub removed_slots: usize,
    /// What the pool holds on disk afterwards, in bytes.
    pub pool_bytes: u64,
}

/// How far `clean` goes with runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CleanRuns {
    /// Remove ended runs' records, refs and result branches (not their mission's newest).
    pub runs: bool,
    /// Also the newest run of each mission.
    pub all: bool,
    /// Also runs whose result was never applied, and result branches with no run record.
    pub force: bool,
}

/// Removes the worktrees of runs that are not live. With `runs.runs`, also the record, refs and
/// result branch of every ended run that is not its mission's newest (every ended run with
/// `all`), except that a run whose result branch was never applied is kept whole unless
/// `force`; with `force`, result branches whose run has no record go too. Live runs are never
/// touched.
pub fn clean(
    repo: &Repo,
    worktrees: &Path,
    runs: CleanRuns,
    pool: bool,
    grace: crate::process::Grace,
) -> Result<Cleaned, HistoryError> {
    let mut cleaned = Cleaned {
        worktrees: crate::leftovers::prune_dead_runs(repo, worktrees, None, grace),
        ..Cleaned::default()
    };
    // The pool: slots kept after a failure are free again (or, with `pool`, every free slot
    // goes). Slots a live run leases are never touched.
    let slots = crate::git::pool::Pool::new(repo, worktrees);
    if pool {
        cleaned.removed_slots = slots.clear()?.len();
    } else {
        cleaned.released_slots = slots
            .release_kept()?
            .into_iter()
            .map(|k| (k.run, k.step))
            .collect();
    }
    cleaned.pool_bytes = slots.disk_usage();
    if !runs.runs {
        return Ok(cleaned);
    }
    let all = list(&repo.git_dir);
    let mut newest: IndexMap<&str, &str> = IndexMap::new();
    for run in &all {
        newest.insert(run.mission.as_str(), run.id.as_str());
    }
    let runs_dir = journal::runs_dir(&repo.git_dir);
    let mut kept: Vec<&str> = Vec::new();
    for run in &all {
        let is_newest = newest.get(run.mission.as_str()) == Some(&run.id.as_str());
        if run.live || (is_newest && !runs.all) {
            kept.push(&run.id);
            continue;
        }
        let dir = runs_dir.join(&run.id);
        let applied = dir.join("applied").exists();
        if let Some(branch) = &run.result_branch {
            let name = refs::branch(branch);
            if repo.find_ref(&name)?.is_some() {
                if !(applied || runs.force) {
                    // Kept whole, so `medley apply` still works and the next clean sees it.
                    cleaned.kept_branches.push((run.id.clone(), branch.clone()));
                    kept.push(&run.id);
                    continue;
                }
                repo.delete_refs(&name)?;
                cleaned.branches.push(branch.clone());
            }
        }
        repo.delete_refs(&refs::run_prefix(&run.id))?;
        fs_err::remove_dir_all(&dir).map_err(|source| HistoryError::Io {
            path: dir.clone(),
            source,
        })?;
        cleaned.runs.push(run.id.clone());
    }
    // Result branches whose run has no record any more.
    for name in repo.list_refs(refs::RESULT_BRANCHES)? {
        let Some(run) = refs::result_branch_run(&name) else {
            continue;
        };
        if kept.contains(&run) || all.iter().any(|r| r.id == run) {
            continue;
        }
        let branch = name.strip_prefix("refs/heads/").unwrap_or(&name).to_owned();
        if runs.force {
            repo.delete_refs(&name)?;
            cleaned.branches.push(branch);
        } else {
            cleaned.stray_branches.push(branch);
        }
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests;
