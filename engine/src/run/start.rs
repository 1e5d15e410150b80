//! Starting a run and seeing it to its end: the base snapshot, the run's directory, lock and
//! journal, what dead runs left, the schedule, the finish, and the closing event.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use git2::Oid;
use tokio::sync::{mpsc, watch};

use super::emitter::Emitter;
use super::expand;
use super::state::{Shared, StepRecord, Stops, Usage};
use super::versions::Versions;
use super::{RunError, RunOptions, RunRecord, RunSummary, finish, includes, preflight, scheduler};
use crate::event::{Body, Event, Outcome, RunOutcome};
use crate::git::{Repo, refs};
use crate::journal::{self, Journal, RunLock};
use crate::leftovers;
use crate::plan::Plan;
use crate::process;

fn state_error(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::State {
        path: path.to_owned(),
        source,
    }
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

/// Runs a compiled plan to its end. Events go to `events` as they happen (and to the journal);
/// turning `cancel` true stops every running step, in stages, and ends the run as cancelled.
pub async fn run(
    plan: preflight::Checked,
    options: RunOptions,
    events: mpsc::UnboundedSender<Event>,
    cancel: watch::Receiver<bool>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let plan = plan.into_plan();
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
        super::decisions::Book::default(),
        warnings,
        events,
        cancel,
        started,
    )
    .await
}

/// Checks the plan's agents (preflight) off the async runtime: it runs `--version` probes.
pub async fn checked(plan: Plan) -> Result<preflight::Checked, RunError> {
    tokio::task::spawn_blocking(move || preflight::check(plan))
        .await
        .map_err(|e| RunError::State {
            path: PathBuf::from("preflight"),
            source: std::io::Error::other(e),
        })?
        .map_err(RunError::from)
}

/// Runs `plan` as run `run` from `base`, with the steps of `done` already passed.
#[allow(clippy::too_many_arguments)]
pub(super) async fn execute(
    plan: Plan,
    options: RunOptions,
    repo: Repo,
    run: String,
    base: Oid,
    done: Vec<(usize, StepRecord)>,
    book: super::decisions::Book,
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
    for dir in refs::run_ref_dirs(&run) {
        remove_lock_files(&repo.git_dir.join(dir));
    }
    // And its result branch's.
    for lock in refs::result_branch_locks(&plan.mission, &run) {
        let _ = fs_err::remove_file(repo.git_dir.join(lock));
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
            leftovers::stop_dead_processes(&run_dir, grace);
            leftovers::prune_dead_runs(&repo, &worktrees_base, Some(&run), grace);
            // What a killed run of this id left (half-made worktrees) goes before it goes on.
            if worktrees_base.join(&run).exists() {
                let _ = fs_err::remove_dir_all(worktrees_base.join(&run));
                let _ = repo.prune_worktrees();
            }
        })
        .await;
    }
    repo.set_ref(&refs::run_base(&run), base, "medley: run base")?;
    let includes = {
        let root = repo.root.clone();
        tokio::task::spawn_blocking(move || includes::included_digests(&root))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    };

    // Room for every step the run may have: dynamic matrices add their children as it goes.
    let capacity = plan.capacity();
    let expansions = expand::expansions(&plan);
    let order_upstream = expand::upstream_of(&plan);
    let shared = Arc::new(Shared {
        repo: repo.clone(),
        run: run.clone(),
        processes: crate::process::Record::new(run_dir.join(crate::leftovers::PROCESSES)),
        run_dir: run_dir.clone(),
        worktrees: worktrees_base.join(&run),
        pool: (!options.fresh_worktrees)
            .then(|| crate::git::pool::Pool::new(&repo, &worktrees_base)),
        base,
        grace: options.grace,
        secrets: secrets.clone(),
        emitter,
        network_wait: options.network_wait,
        // The steps listen to the run's own stop, which the user's cancel also turns on.
        stops: Stops::new(capacity),
        work: tokio::sync::Semaphore::new(plan.max_parallel.max(1)),
        no_cache: options.no_cache,
        records: Mutex::new({
            let mut records = vec![None; capacity];
            for (i, record) in &done {
                records[*i] = Some(record.clone());
            }
            records
        }),
        upstream: Versions::new(order_upstream, expansions),
        includes,
        usage: Mutex::new(Usage::default()),
        gates: Mutex::new(book),
        asker: options.approvals.clone(),
        cancelled: cancel.clone(),
        plan: Versions::new(plan, expansions),
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
            shared.stops.stop_run();
        })
    };
    let done: Vec<(usize, Outcome)> = done.iter().map(|(i, r)| (*i, r.outcome)).collect();
    let (outcome, reason) = scheduler::schedule(
        &shared,
        shared.stops.run_stop(),
        &done,
        options.control.clone(),
    )
    .await;
    forward.abort();
    let (outcome, reason) = if shared.stops.by_budget() {
        (RunOutcome::Failed, Some("budget reached".to_owned()))
    } else {
        (outcome, reason)
    };
    let (outcome, reason, result_branch) = if outcome == RunOutcome::Passed {
        finish::finish(&shared).await
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
    shared.processes.remove();
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
