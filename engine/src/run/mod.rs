//! Running a plan: a base snapshot, a worktree per step, commands and gates in their own
//! process groups, results merged from step to step, a journal of events, and a result branch.

mod agent;
mod includes;
pub mod preflight;
pub mod process;
mod step;
mod worktree;

pub use agent::{program_of, which};

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::Oid;
use minijinja::value::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::event::{Body, Event, Outcome, RunOutcome, SkipReason, Tokens};
use crate::git::{GitError, MergeOutcome, Repo};
use crate::journal::{self, Journal, RunLock};
use crate::plan::compile::Upstream;
use crate::plan::template::{self, StepsContext};
use crate::plan::{Flavor, Plan, TemplateRef};

pub use process::Grace;

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where the user ran medley (inside their repository).
    pub cwd: PathBuf,
    /// `--base REF`: start from this commit instead of a snapshot of the working tree.
    pub base: Option<String>,
    /// The stages of stopping a process group.
    pub grace: Grace,
    /// Where worktrees go (default: the user's cache dir, `medley/worktrees`).
    pub worktrees: Option<PathBuf>,
    /// `--no-cache`: run every step, reuse nothing.
    pub no_cache: bool,
    /// `--fresh-worktrees`: a brand-new worktree per step instead of a warm pool slot.
    pub fresh_worktrees: bool,
    /// Steering from outside (watch mode): stop some steps, or stop starting new ones.
    pub control: Option<watch::Receiver<Control>>,
    /// What was asked, kept in the run's directory so `resume` compiles the same plan.
    pub record: Option<RunRecord>,
}

/// Steering of a live run (watch mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Control {
    /// Start no new step; end once the running ones have ended.
    pub drain: bool,
    /// Steps to stop now (their work is no longer wanted).
    pub stop: Vec<String>,
}

/// What a run was asked to do: the mission as it was, and the options that shape its plan.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub mission_path: String,
    pub mission_source: String,
    pub sets: Vec<(String, String)>,
    pub only: Option<String>,
    pub max_parallel: Option<usize>,
    /// `--no-cache` (filled in by [`run`]).
    #[serde(default)]
    pub no_cache: bool,
    /// `--base REF`, as given (the base itself is pinned as `refs/medley/<run>/base`).
    #[serde(default)]
    pub base: Option<String>,
    /// The stages of a staged stop, in milliseconds: after SIGINT, after SIGTERM.
    #[serde(default)]
    pub grace_ms: Option<[u64; 2]>,
    /// Where the run's worktrees went, when not the default place.
    #[serde(default)]
    pub worktrees: Option<PathBuf>,
    /// `--fresh-worktrees`.
    #[serde(default)]
    pub fresh_worktrees: bool,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run: String,
    pub outcome: RunOutcome,
    pub reason: Option<String>,
    pub result_branch: Option<String>,
}

/// Why a run could not start, or could not go on.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RunError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Git(#[from] GitError),
    #[error("cannot write run state at `{path}`")]
    #[diagnostic(help(
        "check free space and permissions there; the journal written so far stays readable"
    ))]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Preflight(#[from] preflight::PreflightError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Resume(Box<ResumeError>),
    #[error("the run did not end: {0}")]
    #[diagnostic(help("this is a bug in medley: please report it"))]
    Internal(String),
    #[error("no cache directory for worktrees")]
    #[diagnostic(help(
        "set HOME (or XDG_CACHE_HOME) so medley can keep worktrees outside your repository"
    ))]
    NoCacheDir,
}

impl RunError {
    /// Errors in what the user asked for (exit 2), rather than failures while running (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RunError::Preflight(_)
                | RunError::Resume(_)
                | RunError::NoCacheDir
                | RunError::Git(
                    GitError::NotARepo(_)
                        | GitError::Bare(_)
                        | GitError::NoCommits
                        | GitError::BadRef(_)
                        | GitError::BranchBlocked
                )
        )
    }
}

/// Writes events to the journal and to the reporters. The journal is written (and fsynced at
/// step boundaries) by a thread of its own, so no task of the async runtime waits on the disk.
/// The first write error is kept; the run stops on it.
pub(crate) struct Emitter {
    run: String,
    /// Values masked in every event (longest first).
    secrets: Vec<String>,
    journal: Mutex<Option<std::sync::mpsc::Sender<Event>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    sender: mpsc::UnboundedSender<Event>,
    error: Arc<Mutex<Option<std::io::Error>>>,
    /// Each step's last `attempt_failed` message: a step that ends with that same failure says
    /// only its first line (the tail it carries is stored once, in the attempt's event).
    last_failure: Mutex<HashMap<String, String>>,
}

impl Emitter {
    fn new(
        run: &str,
        secrets: Vec<String>,
        mut journal: Journal,
        sender: mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<Emitter> {
        let (tx, rx) = std::sync::mpsc::channel::<Event>();
        let error: Arc<Mutex<Option<std::io::Error>>> = Arc::new(Mutex::new(None));
        let slot = error.clone();
        let writer = std::thread::Builder::new()
            .name("medley-journal".to_owned())
            .spawn(move || {
                for event in rx {
                    if let (Err(e), Ok(mut slot)) = (journal.append(&event), slot.lock()) {
                        slot.get_or_insert(e);
                    }
                }
            })?;
        Ok(Emitter {
            run: run.to_owned(),
            secrets,
            journal: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            sender,
            error,
            last_failure: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn emit(&self, mut body: Body) {
        if let Ok(mut last) = self.last_failure.lock() {
            match &mut body {
                Body::AttemptFailed { step, message, .. } => {
                    last.insert(step.clone(), message.clone());
                }
                Body::StepFinished {
                    step,
                    error: Some(error),
                    ..
                } if last.get(step.as_str()) == Some(&error.message) => {
                    let headline = error.message.lines().next().unwrap_or("");
                    error.message = headline.trim_end_matches(':').to_owned();
                }
                _ => {}
            }
        }
        let event = crate::secrets::mask_event(Event::new(&self.run, body), &self.secrets);
        let queued = match self.journal.lock() {
            Ok(journal) => journal
                .as_ref()
                .is_some_and(|tx| tx.send(event.clone()).is_ok()),
            Err(_) => false,
        };
        if !queued && let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(std::io::Error::other("the journal's writer has stopped"));
        }
        let _ = self.sender.send(event);
    }

    /// A warning for the user, in the event stream.
    pub(crate) fn warn(&self, step: Option<&str>, message: String) {
        self.emit(Body::Warning {
            step: step.map(str::to_owned),
            message,
        });
    }

    /// Whether writing the journal has failed.
    fn failed(&self) -> bool {
        self.error.lock().map(|e| e.is_some()).unwrap_or(true)
    }

    /// Waits until every event emitted so far is in the journal (blocking: call it off the
    /// async runtime); later events are not written.
    fn close(&self) {
        if let Ok(mut journal) = self.journal.lock() {
            journal.take();
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer
            && writer.join().is_err()
            && let Ok(mut slot) = self.error.lock()
        {
            slot.get_or_insert(std::io::Error::other("the journal's writer panicked"));
        }
    }

    fn take_error(&self) -> Option<std::io::Error> {
        self.error.lock().ok()?.take()
    }
}

/// What a finished step leaves for the steps after it.
#[derive(Debug, Clone)]
pub(crate) struct StepRecord {
    /// `cached` for a reused result (templates see it as `passed`, with `cached` true).
    pub outcome: Outcome,
    pub base: Oid,
    pub commit: Option<Oid>,
    pub output: String,
    /// What making its result cost (for a cached result: when it was made).
    pub cost_usd: Option<f64>,
}

/// Everything the step tasks share.
pub(crate) struct Shared {
    pub repo: Repo,
    pub plan: Arc<Plan>,
    pub run: String,
    pub run_dir: PathBuf,
    /// Where fresh worktrees go: `<worktrees>/<repo-id>/<run>`.
    pub worktrees: PathBuf,
    /// The repository's pool of warm worktrees (`None` with `--fresh-worktrees`).
    pub pool: Option<crate::git::pool::Pool>,
    pub base: Oid,
    pub grace: Grace,
    /// Values masked in the journal and the logs (longest first).
    pub secrets: Vec<String>,
    pub emitter: Emitter,
    /// Turns true when the run must stop: the user cancelled, or the budget was reached.
    pub cancel: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    /// One stop per step: the run's stop reaches all, watch mode's only some.
    step_stops: Vec<watch::Sender<bool>>,
    budget_hit: std::sync::atomic::AtomicBool,
    no_cache: bool,
    pub records: Mutex<Vec<Option<StepRecord>>>,
    pub upstream: Upstream,
    /// The `.worktreeinclude` files and digests of their contents, read once at the start
    /// (they are part of the cache keys of the steps that can see them).
    pub includes: Result<Vec<(String, String)>, String>,
    /// Tokens, known cost and unpriced steps so far.
    pub usage: Mutex<Usage>,
}

/// What the run has used so far.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Usage {
    pub tokens: Tokens,
    pub cost_usd: f64,
    pub unpriced_steps: usize,
    pub uncounted_steps: usize,
}

impl Shared {
    /// The template context of step `i` (or of the mission's gate, with `None`). It reads git
    /// (diffs, and `file()` while rendering): build and use it off the async runtime.
    pub(crate) fn context(
        &self,
        i: Option<usize>,
        attempt: u32,
        base: Oid,
        uses_steps: bool,
    ) -> Result<Value, String> {
        let plan = &self.plan;
        let matrix = i.map(|i| plan.steps[i].matrix.clone()).unwrap_or_default();
        let repo = self.repo.clone();
        let steps = if uses_steps {
            self.steps_value(i)?
        } else {
            Value::from_object(StepsContext {
                keys: self.upstream.keys.clone(),
                visible: Arc::new(fixedbitset::FixedBitSet::with_capacity(plan.steps.len())),
                values: Arc::new(HashMap::new()),
                default: None,
            })
        };
        Ok(template::context(vec![
            ("vars", Value::from(minijinja::value::Serde(&plan.vars))),
            (
                "mission",
                template::map([("name", Value::from(plan.mission.as_str()))]),
            ),
            (
                "run",
                template::map([
                    ("id", Value::from(self.run.as_str())),
                    ("base", Value::from(self.base.to_string())),
                ]),
            ),
            ("matrix", Value::from(minijinja::value::Serde(&matrix))),
            ("attempt", Value::from(attempt)),
            ("steps", steps),
            (
                "file",
                template::file_function(move |path| repo.read_file(base, path)),
            ),
        ]))
    }

    /// `steps.<id>` for step `i`: the results of the steps upstream of it (every step for the
    /// mission's gate), with matrix steps summed up over their children. A reused result is
    /// `passed` with `cached` true, and hands on what the run that made it handed on.
    fn steps_value(&self, i: Option<usize>) -> Result<Value, String> {
        let plan = &self.plan;
        let visible = match i {
            Some(i) => self.upstream.of(i),
            None => {
                let mut all = fixedbitset::FixedBitSet::with_capacity(plan.steps.len());
                all.insert_range(..);
                Arc::new(all)
            }
        };
        let records = self.records.lock().map(|r| r.clone()).unwrap_or_default();
        let mut values = HashMap::new();
        for (key, members) in &self.upstream.keys.keys {
            if !members.iter().all(|&m| visible.contains(m)) {
                continue;
            }
            let mut outcome = Outcome::Passed;
            let mut cached = !members.is_empty();
            let mut cost_usd = Some(0.0);
            let mut diff = String::new();
            let mut files: Vec<String> = Vec::new();
            let mut output = String::new();
            let mut commit = None;
            for &m in members {
                let Some(record) = &records[m] else {
                    outcome = Outcome::Skipped;
                    cached = false;
                    cost_usd = None;
                    continue;
                };
                if !record.outcome.ok() && outcome.ok() {
                    outcome = record.outcome;
                }
                cached &= record.outcome == Outcome::Cached;
                cost_usd = match (cost_usd, record.cost_usd) {
                    (Some(sum), Some(c)) => Some(sum + c),
                    _ => None,
                };
                if let Some(c) = record.commit {
                    let id = &plan.steps[m].id;
                    let text = self
                        .repo
                        .diff_text(record.base, c)
                        .map_err(|e| format!("cannot make the diff of step `{id}`: {e}"))?;
                    diff.push_str(&text);
                    let changed = self
                        .repo
                        .changed_files(record.base, c)
                        .map_err(|e| format!("cannot list the files of step `{id}`: {e}"))?;
                    for f in changed {
                        if !files.contains(&f) {
                            files.push(f);
                        }
                    }
                    commit = Some(c.to_string());
                }
                if !output.is_empty() && !record.output.is_empty() {
                    output.push('\n');
                }
                output.push_str(&record.output);
            }
            values.insert(
                key.clone(),
                template::map([
                    ("outcome", Value::from(outcome.name())),
                    ("cached", Value::from(cached)),
                    ("output", Value::from(output)),
                    ("diff", Value::from(diff)),
                    ("files", Value::from(files)),
                    ("commit", commit.map_or(Value::from(()), Value::from)),
                    ("cost_usd", cost_usd.map_or(Value::from(()), Value::from)),
                ]),
            );
        }
        Ok(Value::from_object(StepsContext {
            keys: self.upstream.keys.clone(),
            visible,
            values: Arc::new(values),
            default: None,
        }))
    }

    /// Where the run records every process it starts.
    pub(crate) fn processes(&self) -> PathBuf {
        self.run_dir.join(PROCESSES)
    }

    pub(crate) fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Step `i`'s stop: the run's, or its own.
    pub(crate) fn cancel_for(&self, i: usize) -> watch::Receiver<bool> {
        self.step_stops[i].subscribe()
    }

    pub(crate) fn step_cancelled(&self, i: usize) -> bool {
        *self.step_stops[i].borrow()
    }

    /// Stops the whole run: every step, in stages.
    pub(crate) fn stop_all(&self) {
        let _ = self.stop.send(true);
        for step in &self.step_stops {
            let _ = step.send(true);
        }
    }

    /// Why a step in flight was stopped.
    pub(crate) fn stop_reason(&self) -> &'static str {
        if self.budget_hit.load(std::sync::atomic::Ordering::SeqCst) {
            "the run reached its budget and stopped it"
        } else {
            "the run was cancelled"
        }
    }

    /// Whether step `i` may use and fill the cache.
    pub(crate) fn caching(&self, i: usize) -> bool {
        !self.no_cache && self.plan.steps[i].cache
    }

    /// Adds a known cost; at the budget's cap the run stops: no attempt starts, and every step
    /// in flight is stopped, in stages.
    pub(crate) fn spend(&self, usd: f64) {
        if let Ok(mut usage) = self.usage.lock() {
            usage.cost_usd += usd;
        }
        if self.budget_reached() {
            self.budget_hit
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.stop_all();
        }
    }

    /// Adds a finished step's tokens.
    pub(crate) fn account(&self, tokens: Option<Tokens>, unpriced: bool, uncounted: bool) {
        if let Ok(mut usage) = self.usage.lock() {
            let tokens = tokens.unwrap_or_default();
            usage.tokens.input += tokens.input;
            usage.tokens.output += tokens.output;
            usage.unpriced_steps += usize::from(unpriced);
            usage.uncounted_steps += usize::from(uncounted);
        }
    }

    /// Whether known costs have reached the mission's `budget_usd`.
    pub(crate) fn budget_reached(&self) -> bool {
        let spent = self.usage.lock().map(|u| u.cost_usd).unwrap_or(0.0);
        self.plan.budget_usd.is_some_and(|cap| spent >= cap)
    }
}

fn state_error(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::State {
        path: path.to_owned(),
        source,
    }
}

/// The ref that keeps a step's result: `refs/medley/<run>/steps/<step>` (a matrix child's dots
/// become `/`).
pub fn step_ref(run: &str, step: &str) -> String {
    format!("refs/medley/{run}/steps/{}", step.replace('.', "/"))
}

/// Where this repository's worktrees go.
pub fn worktrees_root(custom: Option<&Path>, repo: &Repo) -> Result<PathBuf, RunError> {
    let root = match custom {
        Some(root) => root.to_owned(),
        None => dirs::cache_dir()
            .ok_or(RunError::NoCacheDir)?
            .join("medley")
            .join("worktrees"),
    };
    Ok(root.join(repo.id()))
}

/// The file of a run's directory that records the processes it started.
const PROCESSES: &str = "processes.jsonl";

/// Stops, in stages, what a run that is no longer live left running (the processes recorded
/// in its directory, their groups and descendants), then forgets the record.
pub fn stop_dead_processes(run_dir: &Path, grace: Grace) {
    let path = run_dir.join(PROCESSES);
    if !path.exists() {
        return;
    }
    process::stop_recorded(&path, grace);
    let _ = fs_err::remove_file(&path);
}

/// Removes the worktrees of runs no live process holds (killed or ended runs), except `keep`,
/// after stopping what they left running. Returns the runs whose worktrees were removed.
pub fn prune_dead_runs(
    repo: &Repo,
    worktrees: &Path,
    keep: Option<&str>,
    grace: Grace,
) -> Vec<String> {
    let runs = journal::runs_dir(&repo.git_dir);
    let mut pruned = Vec::new();
    for run in journal::run_ids(&runs) {
        let dir = runs.join(&run);
        if Some(run.as_str()) != keep && dir.join(PROCESSES).exists() && !journal::is_live(&dir) {
            stop_dead_processes(&dir, grace);
        }
    }
    let Ok(entries) = fs_err::read_dir(worktrees) else {
        return pruned;
    };
    for entry in entries.flatten() {
        let run = entry.file_name().to_string_lossy().into_owned();
        // The pool of warm worktrees lives beside the runs' directories.
        if run == "pool" {
            continue;
        }
        if Some(run.as_str()) == keep || journal::is_live(&runs.join(&run)) {
            continue;
        }
        if fs_err::remove_dir_all(entry.path()).is_ok() {
            pruned.push(run);
        }
    }
    if !pruned.is_empty() {
        let _ = repo.prune_worktrees();
    }
    pruned
}

/// Runs a compiled plan to its end. Events go to `events` as they happen (and to the journal);
/// turning `cancel` true stops every running step, in stages, and ends the run as cancelled.
pub async fn run(
    plan: Plan,
    options: RunOptions,
    events: mpsc::UnboundedSender<Event>,
    cancel: watch::Receiver<bool>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let plan = checked(plan).await?;
    let repo = Repo::discover(&options.cwd)?;
    repo.check_branch_namespace()?;
    let (base, embedded) = match &options.base {
        Some(name) => (repo.resolve(name)?, Vec::new()),
        None => {
            let repo = repo.clone();
            let snapshot = tokio::task::spawn_blocking(move || repo.snapshot())
                .await
                .map_err(|e| RunError::State {
                    path: PathBuf::from("snapshot"),
                    source: std::io::Error::other(e),
                })??;
            (snapshot.commit, snapshot.embedded)
        }
    };
    let warnings = embedded
        .iter()
        .map(|path| {
            format!(
                "`{path}/` is a git repository of its own: as `git add` does, the snapshot holds \
                 it as a gitlink, so its files are not in the steps' worktrees (make it a \
                 submodule, or add it to `.gitignore`)"
            )
        })
        .collect();
    let run = uuid::Uuid::now_v7().to_string();
    let run_dir = journal::runs_dir(&repo.git_dir).join(&run);
    fs_err::create_dir_all(run_dir.join("logs")).map_err(state_error(&run_dir))?;
    if let Some(record) = &options.record {
        // Everything that shapes the run, so that `resume` goes on as it was.
        let record = RunRecord {
            no_cache: options.no_cache,
            base: options.base.clone(),
            grace_ms: Some([
                options.grace.interrupt.as_millis() as u64,
                options.grace.terminate.as_millis() as u64,
            ]),
            worktrees: options.worktrees.clone(),
            fresh_worktrees: options.fresh_worktrees,
            ..record.clone()
        };
        let path = run_dir.join("run.json");
        let json = serde_json::to_string_pretty(&record).map_err(|e| RunError::State {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        fs_err::write(&path, json).map_err(state_error(&path))?;
    }
    execute(
        plan,
        options,
        repo,
        run,
        base,
        Vec::new(),
        warnings,
        events,
        cancel,
        started,
    )
    .await
}

/// Why a run cannot be resumed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ResumeError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    History(#[from] crate::history::HistoryError),
    #[error("run `{0}` is still running")]
    #[diagnostic(help("wait for it, or stop it (Ctrl-C in its terminal), then resume"))]
    Live(String),
    #[error("run `{0}` passed: there is nothing to resume")]
    #[diagnostic(help("start a new run with `medley run`"))]
    Passed(String),
    #[error("run `{0}` did not record what it was asked (it was made by an older medley)")]
    #[diagnostic(help("start a new run with `medley run`"))]
    NoRecord(String),
    #[error("cannot read what the run was asked, in `{path}`: {message}")]
    #[diagnostic(help("start a new run with `medley run`"))]
    BadRunRecord { path: PathBuf, message: String },
    #[error("the mission of run `{run}` no longer compiles")]
    #[diagnostic(help(
        "the run kept its mission as it was, but this medley reads it otherwise; start a new run with `medley run`"
    ))]
    Mission {
        run: String,
        #[source]
        #[diagnostic_source]
        errors: crate::plan::compile::CompileError,
    },
    #[error("the mission of run `{run}` no longer has the step it was run with")]
    #[diagnostic(help("start a new run with `medley run`"))]
    Only {
        run: String,
        #[source]
        #[diagnostic_source]
        error: crate::plan::UnknownStep,
    },
    #[error("run `{run}` recorded a result for step `{step}` that is not a commit: `{commit}`")]
    #[diagnostic(help("start a new run with `medley run`"))]
    BadRecord {
        run: String,
        step: String,
        commit: String,
    },
}

/// Checks the plan's agents (preflight) off the async runtime: it runs `--version` probes.
async fn checked(plan: Plan) -> Result<Plan, RunError> {
    let (plan, checked) = tokio::task::spawn_blocking(move || {
        let checked = preflight::preflight(&plan);
        (plan, checked)
    })
    .await
    .map_err(|e| RunError::State {
        path: PathBuf::from("preflight"),
        source: std::io::Error::other(e),
    })?;
    checked?;
    Ok(plan)
}

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
    let options_compile = crate::plan::CompileOptions {
        sets: record.sets.clone(),
    };
    let mut plan = crate::plan::compile(&mission, &options_compile).map_err(mission_error)?;
    if let Some(only) = &record.only {
        plan.only(only).map_err(|error| {
            resume_error(ResumeError::Only {
                run: run.clone(),
                error,
            })
        })?;
    }
    if let Some(n) = record.max_parallel {
        plan.max_parallel = n;
    }
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
    let plan = checked(plan).await?;
    let base = repo
        .find_ref(&format!("refs/medley/{run}/base"))?
        .ok_or_else(|| resume_error(ResumeError::NoRecord(run.clone())))?;
    // Steps that passed keep their results, as long as their refs still hold them, and hand on
    // what they handed on the first time (output, cost, the base their diff is against).
    let mut done = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let Some(seen) = info.steps.get(&step.id) else {
            continue;
        };
        let Some(outcome) = seen.outcome.filter(|o| o.ok()) else {
            continue;
        };
        let Some(commit) = repo.find_ref(&step_ref(&run, &step.id))? else {
            continue;
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
        done.push((
            i,
            StepRecord {
                outcome,
                base: step_base,
                commit: Some(commit),
                output: seen.output.clone(),
                cost_usd,
            },
        ));
    }
    execute(
        plan,
        options,
        repo,
        run,
        base,
        done,
        Vec::new(),
        events,
        cancel,
        started,
    )
    .await
}

/// Runs `plan` as run `run` from `base`, with the steps of `done` already passed.
#[allow(clippy::too_many_arguments)]
async fn execute(
    plan: Plan,
    options: RunOptions,
    repo: Repo,
    run: String,
    base: Oid,
    done: Vec<(usize, StepRecord)>,
    warnings: Vec<String>,
    events: mpsc::UnboundedSender<Event>,
    cancel: watch::Receiver<bool>,
    started: Instant,
) -> Result<RunSummary, RunError> {
    let run_dir = journal::runs_dir(&repo.git_dir).join(&run);
    fs_err::create_dir_all(run_dir.join("logs")).map_err(state_error(&run_dir))?;
    let lock_path = run_dir.join("lock");
    let taken = {
        let lock_path = lock_path.clone();
        tokio::task::spawn_blocking(move || RunLock::try_take(&lock_path))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    let _lock = taken
        .map_err(state_error(&lock_path))?
        .ok_or_else(|| RunError::State {
            path: lock_path.clone(),
            source: std::io::Error::other("the run's lock is held by a live medley"),
        })?;
    // A medley killed mid-update leaves the lock files of this run's refs: no one else writes
    // them (this process holds the run's lock), so they go.
    for dir in [
        repo.git_dir.join("refs/medley").join(&run),
        repo.git_dir.join("logs/refs/medley").join(&run),
    ] {
        remove_lock_files(&dir);
    }
    // And its result branch's.
    for dir in ["refs/heads/medley", "logs/refs/heads/medley"] {
        let lock = repo
            .git_dir
            .join(dir)
            .join(&plan.mission)
            .join(format!("{run}.lock"));
        let _ = fs_err::remove_file(lock);
    }
    let journal_path = run_dir.join("events.jsonl");
    let journal = Journal::create(&journal_path).map_err(state_error(&journal_path))?;
    let secrets = crate::secrets::values(&plan, |name| std::env::var(name).ok());
    let emitter =
        Emitter::new(&run, secrets.clone(), journal, events).map_err(state_error(&journal_path))?;
    let worktrees_base = worktrees_root(options.worktrees.as_deref(), &repo)?;

    process::become_subreaper();
    // What a killed medley left running goes first: this run's own (a resume) and others'.
    // Off the async runtime: stopping processes and removing worktrees wait on the disk.
    {
        let (repo, worktrees_base, run) = (repo.clone(), worktrees_base.clone(), run.clone());
        let run_dir = run_dir.clone();
        let grace = options.grace;
        let _ = tokio::task::spawn_blocking(move || {
            stop_dead_processes(&run_dir, grace);
            prune_dead_runs(&repo, &worktrees_base, Some(&run), grace);
            // What a killed run of this id left (half-made worktrees) goes before it goes on.
            if worktrees_base.join(&run).exists() {
                let _ = fs_err::remove_dir_all(worktrees_base.join(&run));
                let _ = repo.prune_worktrees();
            }
        })
        .await;
    }
    repo.set_ref(&format!("refs/medley/{run}/base"), base, "medley: run base")?;
    let includes = {
        let root = repo.root.clone();
        tokio::task::spawn_blocking(move || includes::included_digests(&root))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    };

    // The steps listen to the run's own stop, which the user's cancel also turns on.
    let (stop, stopped) = watch::channel(false);
    let order_upstream = Upstream::new(
        &plan.steps,
        Some(&(0..plan.steps.len()).collect::<Vec<_>>()),
    );
    let shared = Arc::new(Shared {
        repo: repo.clone(),
        run: run.clone(),
        run_dir: run_dir.clone(),
        worktrees: worktrees_base.join(&run),
        pool: (!options.fresh_worktrees)
            .then(|| crate::git::pool::Pool::new(&repo, &worktrees_base)),
        base,
        grace: options.grace,
        secrets: secrets.clone(),
        emitter,
        cancel: stopped.clone(),
        stop,
        step_stops: (0..plan.steps.len())
            .map(|_| watch::channel(false).0)
            .collect(),
        budget_hit: std::sync::atomic::AtomicBool::new(false),
        no_cache: options.no_cache,
        records: Mutex::new({
            let mut records = vec![None; plan.steps.len()];
            for (i, record) in &done {
                records[*i] = Some(record.clone());
            }
            records
        }),
        upstream: order_upstream,
        includes,
        usage: Mutex::new(Usage::default()),
        plan: Arc::new(plan),
    });
    shared.emitter.emit(Body::RunStarted {
        mission: shared.plan.mission.clone(),
        mission_path: shared.plan.path.clone(),
        base: base.to_string(),
        steps: shared.plan.steps.len(),
    });
    for message in warnings {
        shared.emitter.emit(Body::Warning {
            step: None,
            message,
        });
    }
    // A resumed run's steps that keep their results from before.
    for (i, record) in &done {
        shared.emitter.emit(Body::StepKept {
            step: shared.plan.steps[*i].id.clone(),
            outcome: record.outcome,
            commit: record.commit.map(|c| c.to_string()),
        });
    }

    let forward = {
        let shared = shared.clone();
        let mut cancel = cancel;
        tokio::spawn(async move {
            process::cancelled(&mut cancel).await;
            shared.stop_all();
        })
    };
    let done: Vec<(usize, Outcome)> = done.iter().map(|(i, r)| (*i, r.outcome)).collect();
    let (outcome, reason) = schedule(&shared, stopped, &done, options.control.clone()).await;
    forward.abort();
    let (outcome, reason) = if shared.budget_hit.load(std::sync::atomic::Ordering::SeqCst) {
        (RunOutcome::Failed, Some("budget reached".to_owned()))
    } else {
        (outcome, reason)
    };
    let (outcome, reason, result_branch) = if outcome == RunOutcome::Passed {
        finish(&shared).await
    } else {
        (outcome, reason, None)
    };
    // The run's worktree directory goes when no failed step's worktree is kept in it.
    let _ = std::fs::remove_dir(&shared.worktrees);
    if let Some(pool) = shared.pool.clone() {
        let max_parallel = shared.plan.max_parallel;
        let _ = tokio::task::spawn_blocking(move || pool.bound(max_parallel)).await;
    }
    // Every process it started has been stopped.
    let _ = fs_err::remove_file(shared.processes());
    let usage = shared.usage.lock().map(|u| *u).unwrap_or_default();
    shared.emitter.emit(Body::RunFinished {
        outcome,
        reason: reason.clone(),
        result_branch: result_branch.clone(),
        tokens: usage.tokens,
        cost_usd: usage.cost_usd,
        unpriced_steps: usage.unpriced_steps,
        uncounted_steps: usage.uncounted_steps,
        duration_ms: started.elapsed().as_millis() as u64,
    });
    {
        let shared = shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.emitter.close()).await;
    }
    if let Some(error) = shared.emitter.take_error() {
        return Err(RunError::State {
            path: journal_path,
            source: error,
        });
    }
    Ok(RunSummary {
        run,
        outcome,
        reason,
        result_branch,
    })
}

/// Removes the `*.lock` files under `dir`, at any depth.
fn remove_lock_files(dir: &Path) {
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "lock") {
                let _ = fs_err::remove_file(&path);
            }
        }
    }
}

/// Starts steps as their needs end, at most `max_parallel` at once, until every step has ended
/// or the run is cancelled.
async fn schedule(
    shared: &Arc<Shared>,
    mut cancel: watch::Receiver<bool>,
    done: &[(usize, Outcome)],
    control: Option<watch::Receiver<Control>>,
) -> (RunOutcome, Option<String>) {
    let mut control = control;
    let mut draining = false;
    let plan = shared.plan.clone();
    let n = plan.steps.len();
    let index: HashMap<&str, usize> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let needs: Vec<Vec<usize>> = plan
        .steps
        .iter()
        .map(|s| {
            s.needs
                .iter()
                .filter_map(|n| index.get(n.as_str()).copied())
                .collect()
        })
        .collect();
    let mut ended: Vec<Option<Outcome>> = vec![None; n];
    for &(i, outcome) in done {
        ended[i] = Some(outcome);
    }
    let mut started: HashSet<usize> = HashSet::new();
    let mut running = JoinSet::new();
    // Which step each task runs, to end the step whose task panicked or was aborted.
    let mut tasks: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut cancelled = false;
    loop {
        if shared.emitter.failed() && !cancelled {
            cancelled = true;
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
                if step.if_.is_none() {
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
                            step::fail_early(
                                shared,
                                i,
                                "template",
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
            if running.len() >= plan.max_parallel || cancelled || draining {
                break;
            }
            started.insert(i);
            let passed: Vec<usize> = needs[i]
                .iter()
                .copied()
                .filter(|&j| ended[j].is_some_and(Outcome::ok))
                .collect();
            let shared = shared.clone();
            let task = running.spawn(async move { step::run_step(shared, i, passed).await });
            tasks.insert(task.id(), i);
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next_with_id() => {
                if let Some((i, outcome)) = joined.and_then(|j| ended_step(shared, &tasks, j)) {
                    ended[i] = Some(outcome);
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
                                let _ = shared.step_stops[i].send(true);
                            }
                        }
                        draining |= wanted.drain;
                    }
                    None => control = None,
                }
            }
        }
    }
    if cancelled || *shared.cancel.borrow() {
        return (RunOutcome::Cancelled, Some("cancelled".to_owned()));
    }
    if draining {
        return (
            RunOutcome::Cancelled,
            Some("superseded by a change".to_owned()),
        );
    }
    if ended.contains(&Some(Outcome::Failed)) {
        return (RunOutcome::Failed, Some("step failed".to_owned()));
    }
    (RunOutcome::Passed, None)
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
            step::fail_early(shared, i, "internal", message);
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

/// Evaluates step `i`'s `if` off the async runtime (its context reads git).
async fn eval_if(shared: &Arc<Shared>, i: usize, expression: &str) -> Result<bool, String> {
    let shared = shared.clone();
    let expression = expression.to_owned();
    tokio::task::spawn_blocking(move || {
        let context = shared.context(Some(i), 1, shared.base, true)?;
        shared
            .plan
            .templates
            .eval(&expression, &context)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
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

/// Merges the results no other passed step built on, runs the mission's gate on the merge, and
/// points the result branch at it.
async fn finish(shared: &Arc<Shared>) -> (RunOutcome, Option<String>, Option<String>) {
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
    let repo = shared.repo.clone();
    let base = shared.base;
    let merged = tokio::task::spawn_blocking(move || repo.merge(base, &leaves)).await;
    let merged = match merged {
        Ok(Ok(MergeOutcome::Merged(oid))) => oid,
        Ok(Ok(MergeOutcome::Conflict { files, steps })) => {
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
        Ok(Err(e)) => {
            return (
                RunOutcome::Failed,
                Some(format!("cannot merge the results: {e}")),
                None,
            );
        }
        Err(e) => {
            return (
                RunOutcome::Failed,
                Some(format!("cannot merge the results: {e}")),
                None,
            );
        }
    };
    if let Some(gate) = plan.gate.as_ref().filter(|_| !plan.partial) {
        match step::final_gate(shared, gate, merged).await {
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
        if shared.cancelled() {
            return (RunOutcome::Cancelled, Some("cancelled".to_owned()), None);
        }
    }
    let branch = format!("medley/{}/{}", plan.mission, shared.run);
    match shared.repo.set_ref(
        &format!("refs/heads/{branch}"),
        merged,
        "medley: run result",
    ) {
        Ok(()) => (RunOutcome::Passed, None, Some(branch)),
        Err(e) => (
            RunOutcome::Failed,
            Some(format!("cannot make branch `{branch}`: {e}")),
            None,
        ),
    }
}

/// A duration for humans: `850ms`, `4.2s`, `3m05s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Renders a template of the plan for step `i` with the run's context (a shell template as its
/// display), off the async runtime: the context reads git (diffs of upstream steps, `file()`).
pub(crate) async fn render(
    shared: &Arc<Shared>,
    i: Option<usize>,
    template: &TemplateRef,
    flavor: Flavor,
    attempt: u32,
    base: Oid,
    failure: Option<Value>,
) -> Result<String, String> {
    let shared = shared.clone();
    let template = template.clone();
    tokio::task::spawn_blocking(move || {
        let context = render_context(&shared, i, &template, attempt, base, failure)?;
        shared
            .plan
            .templates
            .render(&template.name, flavor, &context)
            .map_err(|e| e.detail().map_or_else(|| e.to_string(), str::to_owned))
    })
    .await
    .map_err(|e| format!("the rendering task failed: {e}"))?
}

/// Renders a shell template of the plan (`run`, `gate`, `setup`) for step `i`, off the async
/// runtime.
pub(crate) async fn render_shell(
    shared: &Arc<Shared>,
    i: Option<usize>,
    template: &TemplateRef,
    attempt: u32,
    base: Oid,
) -> Result<crate::plan::template::ShellCommand, String> {
    let shared = shared.clone();
    let template = template.clone();
    tokio::task::spawn_blocking(move || {
        let context = render_context(&shared, i, &template, attempt, base, None)?;
        shared
            .plan
            .templates
            .render_shell(&template.name, &context)
            .map_err(|e| e.detail().map_or_else(|| e.to_string(), str::to_owned))
    })
    .await
    .map_err(|e| format!("the rendering task failed: {e}"))?
}

fn render_context(
    shared: &Shared,
    i: Option<usize>,
    template: &TemplateRef,
    attempt: u32,
    base: Oid,
    failure: Option<Value>,
) -> Result<Value, String> {
    let mut context = shared.context(i, attempt, base, template.source.contains("steps"))?;
    if let Some(failure) = failure {
        let mut pairs: std::collections::BTreeMap<String, Value> =
            std::collections::BTreeMap::new();
        if let Ok(iter) = context.try_iter() {
            for key in iter {
                if let Ok(v) = context.get_item(&key) {
                    pairs.insert(key.to_string(), v);
                }
            }
        }
        pairs.insert("failure".to_owned(), failure);
        context = Value::from(pairs);
    }
    Ok(context)
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
