//! Runs as their journals tell them: listing, showing, applying and cleaning up.

use std::path::{Path, PathBuf};

use git2::{ApplyLocation, DiffOptions, Oid};
use indexmap::IndexMap;

use crate::event::{Body, Outcome, RunOutcome, SkipReason, StepError, Tokens};
use crate::git::{Context as _, GitError, Repo};
use crate::journal;

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
    pub tokens: Tokens,
    pub cost_usd: Option<f64>,
    /// Steps whose cost is not known.
    pub unpriced_steps: usize,
    pub live: bool,
    pub steps: IndexMap<String, StepInfo>,
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
    pub tokens: Tokens,
    pub cost_usd: Option<f64>,
    /// The tail of the output of its last gate, when that gate failed.
    pub gate_output: Option<String>,
}

impl RunInfo {
    /// Why the run has no outcome: still running, or killed.
    pub fn status(&self) -> &'static str {
        match (self.outcome, self.live) {
            (Some(o), _) => o.name(),
            (None, true) => "running",
            (None, false) => "killed",
        }
    }
}

/// Why a run could not be found or used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum HistoryError {
    #[error("no run `{0}` in this repository")]
    #[diagnostic(help(
        "`medley runs` lists the runs; an id's first characters are enough when no other run starts with them"
    ))]
    NoRun(String),
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
        live: journal::is_live(&dir),
        steps: IndexMap::new(),
    };
    for event in events {
        match event.body {
            Body::RunStarted {
                mission,
                mission_path,
                base,
                ..
            } => {
                info.mission = mission;
                info.mission_path = mission_path;
                info.base = base;
                info.started = event.ts;
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
            Body::StepReady { step, .. } => {
                info.steps.entry(step).or_default();
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
                ..
            } => {
                let s = info.steps.entry(step).or_default();
                s.outcome = Some(outcome);
                s.commit = commit;
                s.attempts = attempts;
                s.duration_ms = Some(duration_ms);
                s.error = error;
                s.agent = agent;
                s.tokens = tokens;
                s.cost_usd = cost_usd;
                info.tokens.input += tokens.input;
                info.tokens.output += tokens.output;
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
                ..
            } => {
                info.unpriced_steps = unpriced_steps;
                info.outcome = Some(outcome);
                info.reason = reason;
                info.result_branch = result_branch;
                info.duration_ms = Some(duration_ms);
            }
            _ => {}
        }
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

/// The run an argument names: a whole id, the start of one, or `last`.
pub fn resolve(git_dir: &Path, arg: &str) -> Result<String, HistoryError> {
    let ids = journal::run_ids(&journal::runs_dir(git_dir));
    if arg == "last" {
        return ids
            .last()
            .cloned()
            .ok_or_else(|| HistoryError::NoRun(arg.to_owned()));
    }
    let matching: Vec<&String> = ids.iter().filter(|id| id.starts_with(arg)).collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(HistoryError::NoRun(arg.to_owned())),
        many => Err(HistoryError::Ambiguous(
            arg.to_owned(),
            many.iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// A step's log files, in the order they were written.
pub fn log_files(git_dir: &Path, run: &str, step: &str) -> Vec<PathBuf> {
    let dir = journal::runs_dir(git_dir).join(run).join("logs").join(step);
    let mut files: Vec<PathBuf> = fs_err::read_dir(&dir)
        .map(|e| e.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort_by_key(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let attempt: u32 = name
            .split('.')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let kind = match name.split('.').next() {
            Some("setup") => 0,
            Some("run") => 1,
            Some("gate") => 2,
            _ => 3,
        };
        (attempt, kind, name)
    });
    files
}

/// Applies a run's change (its result, or one step's) against the run's base to the working
/// tree, as uncommitted changes. Refuses, naming them, when a file it would touch differs from
/// the run's base. Returns the paths it changed.
pub fn apply(repo: &Repo, info: &RunInfo, step: Option<&str>) -> Result<Vec<String>, HistoryError> {
    let base = repo
        .find_ref(&format!("refs/medley/{}/base", info.id))?
        .ok_or_else(|| {
            HistoryError::NoResult(info.id.clone(), "its base ref is gone".to_owned())
        })?;
    let result = match step {
        Some(step) => {
            let passed = || {
                info.steps
                    .iter()
                    .filter(|(_, s)| s.outcome.is_some_and(Outcome::ok))
                    .map(|(id, _)| format!("`{id}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            repo.find_ref(&crate::run::step_ref(&info.id, step))?
                .ok_or_else(|| HistoryError::NoStep {
                    run: info.id.clone(),
                    step: step.to_owned(),
                    passed: passed(),
                })?
        }
        None => {
            let branch = info.result_branch.clone().ok_or_else(|| {
                HistoryError::NoResult(info.id.clone(), format!("it {}", info.status()))
            })?;
            repo.find_ref(&format!("refs/heads/{branch}"))?
                .ok_or_else(|| {
                    HistoryError::NoResult(info.id.clone(), format!("branch `{branch}` is gone"))
                })?
        }
    };
    let git = repo.open()?;
    let tree = |oid: Oid| {
        git.find_commit(oid)
            .and_then(|c| c.tree())
            .context(|| format!("read commit {oid}"))
    };
    let mut options = DiffOptions::new();
    options.show_binary(true);
    let diff = git
        .diff_tree_to_tree(Some(&tree(base)?), Some(&tree(result)?), Some(&mut options))
        .context(|| "diff the result".to_owned())?;
    let base_tree = tree(base)?;
    let mut touched = Vec::new();
    let mut differing = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            let Some(path) = file.path() else { continue };
            let path_text = path.to_string_lossy().into_owned();
            if touched.contains(&path_text) {
                continue;
            }
            touched.push(path_text.clone());
            if !matches_base(&repo.root, &base_tree, path)? {
                differing.push(path_text);
            }
        }
    }
    if !differing.is_empty() {
        return Err(HistoryError::LocalChanges(differing));
    }
    git.apply(&diff, ApplyLocation::WorkDir, None)
        .context(|| "apply the change to the working tree".to_owned())?;
    let marker = journal::runs_dir(&repo.git_dir)
        .join(&info.id)
        .join("applied");
    let _ = fs_err::write(marker, step.unwrap_or("result"));
    Ok(touched)
}

/// Whether the working tree's file at `path` is what the base has (both absent counts).
fn matches_base(root: &Path, base: &git2::Tree<'_>, path: &Path) -> Result<bool, HistoryError> {
    let full = root.join(path);
    let on_disk = match fs_err::symlink_metadata(&full) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = fs_err::read_link(&full).map_err(|source| HistoryError::Io {
                path: full.clone(),
                source,
            })?;
            Some(target.as_os_str().as_encoded_bytes().to_vec())
        }
        Ok(meta) if meta.is_file() => {
            Some(fs_err::read(&full).map_err(|source| HistoryError::Io {
                path: full.clone(),
                source,
            })?)
        }
        Ok(_) => return Ok(false),
        Err(_) => None,
    };
    let in_base = base.get_path(path).ok().map(|e| e.id());
    Ok(match (on_disk, in_base) {
        (None, None) => true,
        (Some(bytes), Some(id)) => {
            Oid::hash_object(git2::ObjectType::Blob, &bytes).context(|| "hash a file".to_owned())?
                == id
        }
        _ => false,
    })
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
    /// Result branches kept because they were never applied.
    pub kept_branches: Vec<String>,
}

/// Removes the worktrees of runs that are not live; with `runs`, also the records and refs of
/// every run that is not its mission's newest (keeping result branches never applied, unless
/// `force`). Live runs are never touched.
pub fn clean(
    repo: &Repo,
    worktrees: &Path,
    runs: bool,
    force: bool,
    grace: crate::run::Grace,
) -> Result<Cleaned, HistoryError> {
    let mut cleaned = Cleaned {
        worktrees: crate::run::prune_dead_runs(repo, worktrees, None, grace),
        ..Cleaned::default()
    };
    if !runs {
        return Ok(cleaned);
    }
    let all = list(&repo.git_dir);
    let mut newest: IndexMap<&str, &str> = IndexMap::new();
    for run in &all {
        newest.insert(run.mission.as_str(), run.id.as_str());
    }
    let runs_dir = journal::runs_dir(&repo.git_dir);
    for run in &all {
        if run.live || newest.get(run.mission.as_str()) == Some(&run.id.as_str()) {
            continue;
        }
        let dir = runs_dir.join(&run.id);
        let applied = dir.join("applied").exists();
        if let Some(branch) = &run.result_branch {
            let name = format!("refs/heads/{branch}");
            if repo.find_ref(&name)?.is_some() {
                if applied || force {
                    repo.delete_refs(&name)?;
                    cleaned.branches.push(branch.clone());
                } else {
                    cleaned.kept_branches.push(branch.clone());
                }
            }
        }
        repo.delete_refs(&format!("refs/medley/{}/", run.id))?;
        fs_err::remove_dir_all(&dir).map_err(|source| HistoryError::Io {
            path: dir.clone(),
            source,
        })?;
        cleaned.runs.push(run.id.clone());
    }
    Ok(cleaned)
}
