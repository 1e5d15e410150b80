//! The run's shared state: what every step task sees (the plan, the repository, the base),
//! each finished step's record, the stops (the run's and each step's), and the budget.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use git2::Oid;
use tokio::sync::watch;

use super::emitter::Emitter;
use super::versions::Versions;
use crate::event::{Outcome, Tokens};
use crate::git::Repo;
use crate::plan::Plan;
use crate::plan::compile::Upstream;
use crate::process::Grace;

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

/// What a template or a gate belongs to: a step, or the mission (its gate, on the merged
/// result, which sees every step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Step(usize),
    Mission,
}

impl Scope {
    /// The step's index, for a step.
    pub(crate) fn step(self) -> Option<usize> {
        match self {
            Scope::Step(i) => Some(i),
            Scope::Mission => None,
        }
    }
}

/// Everything the step tasks share.
pub(crate) struct Shared {
    pub repo: Repo,
    /// The plan, grown as dynamic matrices are expanded (`run::expand`).
    pub plan: Versions<Plan>,
    pub run: String,
    pub run_dir: PathBuf,
    /// The record of every process the run starts (`processes.jsonl` in `run_dir`).
    pub processes: crate::process::Record,
    /// Where fresh worktrees go: `<worktrees>/<repo-id>/<run>`.
    pub worktrees: PathBuf,
    /// The repository's pool of warm worktrees (`None` with `--fresh-worktrees`).
    pub pool: Option<crate::git::pool::Pool>,
    pub base: Oid,
    pub grace: Grace,
    /// How long an agent may wait for the network before its attempt ends as `unreachable`.
    pub network_wait: Duration,
    /// Values masked in the journal and the logs (longest first).
    pub secrets: Vec<String>,
    pub emitter: Emitter,
    pub stops: Stops,
    /// At most `max_parallel` steps work at once (a worktree, a command, an agent, a gate);
    /// finding a cached result takes no part of it.
    pub work: tokio::sync::Semaphore,
    pub no_cache: bool,
    /// By plan index, for every step the run may have ([`Plan::capacity`]).
    pub records: Mutex<Vec<Option<StepRecord>>>,
    pub upstream: Versions<Upstream>,
    /// The `.worktreeinclude` files and digests of their contents, read once at the start
    /// (they are part of the cache keys of the steps that can see them).
    pub includes: Result<Vec<(String, String)>, String>,
    /// Tokens, known cost and unpriced steps so far.
    pub usage: Mutex<Usage>,
    /// What the run knows of approvals (see `approval.rs`).
    pub gates: Mutex<super::decisions::Book>,
    /// Where approval requests go, when a person is there to answer them.
    pub asker: Option<super::decisions::Asker>,
    /// The user's cancel, as given: it still ends the final result's prompt once the schedule
    /// (whose steps hear it through `stops`) is over.
    pub cancelled: watch::Receiver<bool>,
}

/// What the run has used so far.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Usage {
    pub tokens: Tokens,
    pub cost_usd: f64,
    pub unpriced_steps: usize,
    pub uncounted_steps: usize,
}

/// The run's stops: the run's own (the user's cancel, or the budget) reaches every step; a
/// step's own stops only it (watch mode, a race's losers).
pub(crate) struct Stops {
    run: watch::Sender<bool>,
    /// Watch mode's drain: no step starts work any more; those at work go on.
    drain: watch::Sender<bool>,
    steps: Vec<watch::Sender<bool>>,
    by_budget: AtomicBool,
}

impl Stops {
    pub(crate) fn new(steps: usize) -> Stops {
        Stops {
            run: watch::channel(false).0,
            drain: watch::channel(false).0,
            steps: (0..steps).map(|_| watch::channel(false).0).collect(),
            by_budget: AtomicBool::new(false),
        }
    }

    /// Stops the whole run: every step, in stages.
    pub(crate) fn stop_run(&self) {
        let _ = self.run.send(true);
        for step in &self.steps {
            let _ = step.send(true);
        }
    }

    /// No step starts work any more (watch mode: the run is superseded).
    pub(crate) fn drain(&self) {
        let _ = self.drain.send(true);
    }

    /// Whether the run was drained.
    pub(crate) fn drained(&self) -> bool {
        *self.drain.borrow()
    }

    /// Stops step `i` alone.
    pub(crate) fn stop_step(&self, i: usize) {
        let _ = self.steps[i].send(true);
    }

    /// Whether the run was stopped.
    pub(crate) fn run_stopped(&self) -> bool {
        *self.run.borrow()
    }

    /// The run's stop, to wait on.
    pub(crate) fn run_stop(&self) -> watch::Receiver<bool> {
        self.run.subscribe()
    }

    /// Step `i`'s stop (the run's reaches it too), to wait on.
    pub(crate) fn step_stop(&self, i: usize) -> watch::Receiver<bool> {
        self.steps[i].subscribe()
    }

    /// Whether the budget stopped the run.
    pub(crate) fn by_budget(&self) -> bool {
        self.by_budget.load(Ordering::SeqCst)
    }

    /// Why a step in flight was stopped.
    pub(crate) fn reason(&self) -> &'static str {
        if self.by_budget() {
            "the run reached its budget and stopped it"
        } else {
            "the run was cancelled"
        }
    }
}

impl Shared {
    /// The process of a rendered shell template (`run`, `gate`, `setup`) of `step`, in
    /// `worktree`, its output in `log`: recorded, its secrets masked, with the step's
    /// environment and the template's values.
    pub(crate) fn shell_spec(
        &self,
        shell: crate::plan::template::ShellCommand,
        step: &str,
        worktree: &Path,
        attempt: u32,
        log: &Path,
    ) -> crate::process::Spec {
        let mut spec = crate::process::Spec::shell(&shell.command, worktree, log);
        spec.record = Some(self.processes.clone());
        spec.secrets = self.secrets.clone();
        spec.env = self.step_env(step, worktree, attempt);
        spec.env.extend(shell.env);
        spec
    }

    /// The environment every child of a step sees.
    pub(crate) fn step_env(
        &self,
        step: &str,
        worktree: &Path,
        attempt: u32,
    ) -> Vec<(String, String)> {
        vec![
            (
                "MEDLEY_ROOT".to_owned(),
                self.repo.root.display().to_string(),
            ),
            ("MEDLEY_WORKTREE".to_owned(), worktree.display().to_string()),
            ("MEDLEY_RUN".to_owned(), self.run.clone()),
            ("MEDLEY_STEP".to_owned(), step.to_owned()),
            ("MEDLEY_ATTEMPT".to_owned(), attempt.to_string()),
        ]
    }

    /// A share of the run's `max_parallel` for step `i` to work with; `None` when the step was
    /// stopped, or the run drained, before it could start.
    pub(crate) async fn work_permit(&self, i: usize) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let mut stop = self.stops.step_stop(i);
        let mut drain = self.stops.drain.subscribe();
        if *stop.borrow() || *drain.borrow() {
            return None;
        }
        tokio::select! {
            permit = self.work.acquire() => permit.ok(),
            () = crate::process::cancelled(&mut stop) => None,
            () = crate::process::cancelled(&mut drain) => None,
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
            self.stops.by_budget.store(true, Ordering::SeqCst);
            self.stops.stop_run();
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
