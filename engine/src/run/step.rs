//! One step: its base, its worktree, setup, attempts (command, commit, gate), and its end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use git2::Oid;
use minijinja::value::Value;

use super::process::{self, Exit, Spec};
use super::{Shared, StepRecord, render, step_ref};
use crate::event::{Body, FailReason, Outcome, StepError, Tokens};
use crate::git::MergeOutcome;
use crate::plan::template;
use crate::plan::{Action, Flavor, TemplateRef};

/// Lines of a failure's output that a retry prompt sees.
const FAILURE_LINES: usize = 200;
/// Bytes of a failure's output that a retry prompt sees.
const FAILURE_BYTES: u64 = 16 * 1024;
/// Lines of a gate's output in its `gate_finished` event (and of stderr in an error).
const TAIL_LINES: usize = 20;
/// Bytes of a gate's output in its `gate_finished` event (and of stderr in an error).
const TAIL_BYTES: u64 = 4 * 1024;
/// Bytes of a command step's stdout kept as `steps.<id>.output`; the rest is in its log.
pub(crate) const OUTPUT_BYTES: u64 = 64 * 1024;

/// The last `lines` lines of a file, and no more than its last `bytes` bytes (a line cut there
/// starts with `…`). Only those bytes are read. Empty when unreadable.
pub(crate) fn tail(path: &Path, lines: usize, bytes: u64) -> String {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let Ok(mut file) = fs_err::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(bytes);
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.take(bytes).read_to_end(&mut buf).is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let kept = &all[all.len().saturating_sub(lines)..];
    let mut out = kept.join("\n");
    if from > 0 && kept.len() == all.len() {
        out.insert(0, '…');
    }
    out
}

/// A command step's stdout as `steps.<id>.output`: like `$(...)` in a shell, without its
/// trailing newlines; at most [`OUTPUT_BYTES`] of it (only those are read), and when cut, a
/// last line that says so and where the whole output is.
pub(crate) fn bounded_output(path: &Path) -> String {
    use std::io::Read as _;
    let Ok(file) = fs_err::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = Vec::new();
    if file.take(OUTPUT_BYTES).read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let mut output = String::from_utf8_lossy(&buf)
        .trim_end_matches('\n')
        .to_owned();
    if len > OUTPUT_BYTES {
        output.push_str(&format!(
            "\n[medley: output cut at {OUTPUT_BYTES} of its {len} bytes; all of it is in {}]",
            path.display()
        ));
    }
    output
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
}

/// Ends a step that failed before any attempt (a bad `if`, a merge conflict, a worktree that
/// could not be made).
pub(crate) fn fail_early(shared: &Shared, i: usize, kind: &str, message: String) {
    finish(
        shared,
        i,
        Outcome::Failed,
        None,
        shared.base,
        0,
        Instant::now(),
        String::new(),
        Some(StepError::new(kind, message)),
    );
}

/// How a step ended, for its `step_finished` event and what later steps see.
pub(crate) struct StepEnd {
    pub outcome: Outcome,
    pub commit: Option<Oid>,
    pub base: Oid,
    pub attempts: u32,
    pub output: String,
    pub error: Option<StepError>,
    pub agent: Option<String>,
    pub tokens: Tokens,
    pub cost_usd: Option<f64>,
    /// Some of its agent calls had no known cost.
    pub unpriced: bool,
    /// The run whose cached result this is.
    pub cached_from: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn finish(
    shared: &Shared,
    i: usize,
    outcome: Outcome,
    commit: Option<Oid>,
    base: Oid,
    attempts: u32,
    started: Instant,
    output: String,
    error: Option<StepError>,
) -> Outcome {
    finish_with(
        shared,
        i,
        started,
        StepEnd {
            outcome,
            commit,
            base,
            attempts,
            output,
            error,
            agent: None,
            tokens: Tokens::default(),
            cost_usd: None,
            unpriced: false,
            cached_from: None,
        },
    )
}

/// Records a step's end and emits its `step_finished` event.
pub(crate) fn finish_with(shared: &Shared, i: usize, started: Instant, end: StepEnd) -> Outcome {
    if let Ok(mut records) = shared.records.lock() {
        records[i] = Some(StepRecord {
            outcome: end.outcome,
            base: end.base,
            commit: end.commit,
            output: end.output,
        });
    }
    shared.account(end.tokens, end.unpriced);
    shared.emitter.emit(Body::StepFinished {
        step: shared.plan.steps[i].id.clone(),
        outcome: end.outcome,
        commit: end.commit.map(|c| c.to_string()),
        agent: end.agent,
        attempts: end.attempts,
        tokens: end.tokens,
        cost_usd: end.cost_usd,
        duration_ms: started.elapsed().as_millis() as u64,
        cached_from: end.cached_from,
        error: end.error,
    });
    end.outcome
}

/// The environment every child of a step sees.
pub(crate) fn step_env(
    shared: &Shared,
    step: &str,
    worktree: &Path,
    attempt: u32,
) -> Vec<(String, String)> {
    vec![
        (
            "MEDLEY_ROOT".to_owned(),
            shared.repo.root.display().to_string(),
        ),
        ("MEDLEY_WORKTREE".to_owned(), worktree.display().to_string()),
        ("MEDLEY_RUN".to_owned(), shared.run.clone()),
        ("MEDLEY_STEP".to_owned(), step.to_owned()),
        ("MEDLEY_ATTEMPT".to_owned(), attempt.to_string()),
    ]
}

/// Runs step `i`, whose passed needs are `needs`, to its end; returns its outcome.
pub(crate) async fn run_step(shared: Arc<Shared>, i: usize, needs: Vec<usize>) -> Outcome {
    let started = Instant::now();
    let step = &shared.plan.steps[i];
    let fail = |kind: &str,
                message: String,
                base: Oid,
                attempts: u32,
                extra: Option<(Vec<String>, Vec<String>)>| {
        let (files, steps) = match extra {
            Some((f, s)) => (Some(f), Some(s)),
            None => (None, None),
        };
        finish(
            &shared,
            i,
            Outcome::Failed,
            None,
            base,
            attempts,
            started,
            String::new(),
            Some(StepError {
                kind: kind.to_owned(),
                message,
                files,
                steps,
            }),
        )
    };

    // The base: the merge of what the needs that passed produced.
    let results: Vec<(String, Oid)> = {
        let records = shared.records.lock().map(|r| r.clone()).unwrap_or_default();
        needs
            .iter()
            .filter_map(|&j| {
                Some((
                    shared.plan.steps[j].id.clone(),
                    records[j].as_ref()?.commit?,
                ))
            })
            .collect()
    };
    let repo = shared.repo.clone();
    let run_base = shared.base;
    let base = match blocking(move || repo.merge(run_base, &results)).await {
        Ok(Ok(MergeOutcome::Merged(base))) => base,
        Ok(Ok(MergeOutcome::Conflict { files, steps })) => {
            let message = format!(
                "the results of steps {} change the same lines of {}",
                steps
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(" and "),
                files
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return fail("merge_conflict", message, run_base, 0, Some((files, steps)));
        }
        Ok(Err(e)) => return fail("merge", e.to_string(), run_base, 0, None),
        Err(e) => return fail("merge", e, run_base, 0, None),
    };
    shared.emitter.emit(Body::StepReady {
        step: step.id.clone(),
        base: base.to_string(),
    });

    // A result this step's key already has is reused; a passed result is kept for next time.
    let key = if shared.caching(i) {
        match cache_key(&shared, i, base).await {
            Ok(key) => Some(key),
            Err(e) => return fail("template", e, base, 0, None),
        }
    } else {
        None
    };
    if let Some(key) = &key
        && let Some(outcome) = from_cache(&shared, i, base, key, started).await
    {
        return outcome;
    }
    let outcome = async {
        if matches!(step.action, Action::Agent { .. }) {
            return super::agent::run_agent_step(&shared, i, base, started).await;
        }
        let Action::Command { run } = &step.action else {
            return fail("agent", "not a command step".to_owned(), base, 0, None);
        };
        let worktree = shared.worktrees.join(&step.id);
        let logs = shared.run_dir.join("logs").join(&step.id);
        match prepare(&shared, i, &worktree, &logs, base, "setup.log").await {
            Prepared::Ready => {}
            Prepared::Cancelled => return cancelled(&shared, i, base, 0, started, &worktree).await,
            Prepared::Failed(e) => return fail(&e.kind, e.message, base, 0, None),
        }
        let mut cancel = shared.cancel_for(i);
        let mut parent = base;
        let mut last_error = None;
        let mut output = String::new();
        for attempt in 1..=step.attempts {
            if shared.step_cancelled(i) {
                return cancelled(&shared, i, base, attempt - 1, started, &worktree).await;
            }
            shared.emitter.emit(Body::StepStarted {
                step: step.id.clone(),
                attempt,
                agent: None,
                runtime: None,
                worktree: worktree.display().to_string(),
            });
            let command = match render(&shared, Some(i), run, Flavor::Shell, attempt, base, None) {
                Ok(c) => c,
                Err(e) => {
                    return fail(
                        "template",
                        format!("cannot render `run`: {e}"),
                        base,
                        attempt,
                        None,
                    );
                }
            };
            let out_path = logs.join(format!("run.{attempt}.out"));
            let err_path = logs.join(format!("run.{attempt}.err"));
            let mut spec = Spec::shell(&command, &worktree, &out_path);
            spec.stderr = err_path.clone();
            spec.record = Some(shared.processes());
            spec.secrets = shared.secrets.clone();
            spec.env = step_env(&shared, &step.id, &worktree, attempt);
            let exit = match process::run(&spec, step.timeout, &mut cancel, shared.grace).await {
                Ok(exit) => exit,
                Err(e) => return fail("command", e.to_string(), base, attempt, None),
            };
            output = bounded_output(&out_path);

            // Whatever the attempt did, its tree is committed on top of the last attempt's.
            let repo = shared.repo.clone();
            let path = worktree.clone();
            let message = format!(
                "medley: {} step {} attempt {attempt}\n\nrun {}",
                shared.plan.mission, step.id, shared.run
            );
            let committed = blocking(move || repo.commit_worktree(&path, parent, &message)).await;
            let (commit, files) = match committed {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return fail("commit", e.to_string(), base, attempt, None),
                Err(e) => return fail("commit", e, base, attempt, None),
            };
            parent = commit;
            shared.emitter.emit(Body::StepCommitted {
                step: step.id.clone(),
                attempt,
                commit: commit.to_string(),
                files,
            });
            if exit == Exit::Cancelled {
                return cancelled(&shared, i, base, attempt, started, &worktree).await;
            }
            if !exit.success() {
                let (reason, kind) = if exit == Exit::TimedOut {
                    (FailReason::Timeout, "timeout")
                } else {
                    (FailReason::Command, "command")
                };
                let mut message = match exit {
                    Exit::TimedOut => format!(
                        "`{}` ran past its timeout of {} and was stopped",
                        command.lines().next().unwrap_or(""),
                        crate::plan::duration_text::format(step.timeout)
                    ),
                    Exit::Code(127) => format!(
                        "`{}` exited with 127: a program it runs was not found",
                        command.lines().next().unwrap_or("")
                    ),
                    other => format!(
                        "`{}` {}",
                        command.lines().next().unwrap_or(""),
                        describe(other)
                    ),
                };
                let stderr = tail(&err_path, TAIL_LINES, TAIL_BYTES);
                if !stderr.is_empty() {
                    message.push_str(&format!(":\n{stderr}"));
                }
                attempt_failed(&shared, i, attempt, reason, &message);
                last_error = Some(StepError::new(kind, message));
                continue;
            }
            if let Some(gate) = &step.gate {
                match run_gate(&shared, Some(i), gate, &worktree, &logs, attempt, base).await {
                    GateResult::Passed => {}
                    GateResult::Cancelled => {
                        return cancelled(&shared, i, base, attempt, started, &worktree).await;
                    }
                    GateResult::Failed { message, .. } => {
                        attempt_failed(&shared, i, attempt, FailReason::Gate, &message);
                        last_error = Some(StepError::new("gate", message));
                        continue;
                    }
                }
            }
            // Passed: keep the result under the run's refs, and let the worktree go.
            let id = step.id.clone();
            let repo = shared.repo.clone();
            let run_id = shared.run.clone();
            let path = worktree.clone();
            let kept = blocking(move || {
                repo.set_ref(&step_ref(&run_id, &id), commit, "medley: step result")?;
                repo.remove_worktree(&path)
            })
            .await;
            if let Ok(Err(e)) = kept {
                return fail("state", e.to_string(), base, attempt, None);
            }
            return finish(
                &shared,
                i,
                Outcome::Passed,
                Some(commit),
                base,
                attempt,
                started,
                output,
                None,
            );
        }
        finish(
            &shared,
            i,
            Outcome::Failed,
            None,
            base,
            step.attempts,
            started,
            output,
            last_error,
        )
    }
    .await;
    if outcome == Outcome::Passed
        && let Some(key) = key
    {
        let commit = shared
            .records
            .lock()
            .ok()
            .and_then(|r| r[i].as_ref().and_then(|r| r.commit));
        if let Some(commit) = commit {
            let entry = crate::cache::Entry {
                run: shared.run.clone(),
                step: step.id.clone(),
                base: base.to_string(),
                commit: commit.to_string(),
            };
            let repo = shared.repo.clone();
            let _ = blocking(move || crate::cache::store(&repo, &key, &entry)).await;
        }
    }
    outcome
}

/// The cache key of step `i` on `base`: its rendered action, gate and setup, what runs it,
/// and its base narrowed to its `inputs`.
async fn cache_key(shared: &Arc<Shared>, i: usize, base: Oid) -> Result<String, String> {
    let step = &shared.plan.steps[i];
    let (action, runner) = match &step.action {
        Action::Command { run } => (
            render(shared, Some(i), run, Flavor::Shell, 1, base, None)?,
            "command".to_owned(),
        ),
        Action::Agent { prompt, agents, .. } => {
            let mut runner = Vec::new();
            for name in agents {
                let Some(profile) = shared.plan.agents.get(name) else {
                    continue;
                };
                let path = super::agent::which(&super::agent::program_of(profile));
                // A CLI's version; for a `command` profile's own program (which may not know
                // `--version`), its path and modification time.
                let version = match (profile.runtime, path) {
                    (crate::mission::Runtime::Command, Some(path)) => fs_err::metadata(&path)
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .map(|t| format!("{} {t:?}", path.display()))
                        .unwrap_or_default(),
                    (_, Some(path)) => super::preflight::version(&path).unwrap_or_default(),
                    (_, None) => String::new(),
                };
                runner.push(serde_json::json!({ "profile": profile, "version": version }));
            }
            (
                render(shared, Some(i), prompt, Flavor::Text, 1, base, None)?,
                serde_json::to_string(&runner).unwrap_or_default(),
            )
        }
    };
    let gate = match &step.gate {
        Some(gate) => render(shared, Some(i), gate, Flavor::Shell, 1, base, None)?,
        None => String::new(),
    };
    let setup = match &shared.plan.setup {
        Some(setup) => render(shared, Some(i), setup, Flavor::Shell, 1, base, None)?,
        None => String::new(),
    };
    let repo = shared.repo.clone();
    let inputs = step.inputs.clone();
    let narrowed = blocking(move || crate::cache::narrowed_base(&repo, base, inputs.as_deref()))
        .await?
        .map_err(|e| e.to_string())?;
    Ok(crate::cache::key(&crate::cache::KeyParts {
        action: &action,
        gate: &gate,
        setup: &setup,
        runner: &runner,
        base: &narrowed,
    }))
}

/// Ends step `i` with a cached result when its key has one that still holds on `base`.
/// A result made on another base is replayed onto this one and its gate runs again; a
/// conflict or a failed gate is a miss (`None`).
async fn from_cache(
    shared: &Arc<Shared>,
    i: usize,
    base: Oid,
    key: &str,
    started: Instant,
) -> Option<Outcome> {
    let step = &shared.plan.steps[i];
    let repo = shared.repo.clone();
    let key = key.to_owned();
    let entry = blocking(move || crate::cache::lookup(&repo, &key))
        .await
        .ok()??;
    let (old_base, cached) = (
        Oid::from_str(&entry.base).ok()?,
        Oid::from_str(&entry.commit).ok()?,
    );
    let repo = shared.repo.clone();
    let message = format!(
        "medley: {} step {} from the cache (run {})\n\nrun {}",
        shared.plan.mission, step.id, entry.run, shared.run
    );
    let (commit, replayed) = blocking(move || repo.replay(old_base, base, cached, &message))
        .await
        .ok()?
        .ok()??;
    if replayed && let Some(gate) = &step.gate {
        let worktree = shared.worktrees.join(&step.id);
        let logs = shared.run_dir.join("logs").join(&step.id);
        let passed = match prepare(shared, i, &worktree, &logs, commit, "setup.cached.log").await {
            Prepared::Ready => matches!(
                run_gate(shared, Some(i), gate, &worktree, &logs, 0, base).await,
                GateResult::Passed
            ),
            Prepared::Cancelled | Prepared::Failed(_) => false,
        };
        let repo = shared.repo.clone();
        let _ = blocking(move || repo.remove_worktree(&worktree)).await;
        if !passed {
            return None;
        }
    }
    let repo = shared.repo.clone();
    let name = step_ref(&shared.run, &step.id);
    blocking(move || repo.set_ref(&name, commit, "medley: step result (cached)"))
        .await
        .ok()?
        .ok()?;
    Some(finish_with(
        shared,
        i,
        started,
        StepEnd {
            outcome: Outcome::Cached,
            commit: Some(commit),
            base,
            attempts: 0,
            output: String::new(),
            error: None,
            agent: None,
            tokens: Tokens::default(),
            cost_usd: None,
            unpriced: false,
            cached_from: Some(entry.run),
        },
    ))
}

/// How preparing a worktree went.
pub(crate) enum Prepared {
    Ready,
    Cancelled,
    Failed(StepError),
}

/// Makes the worktree at `worktree` from `base`, copies in what `.worktreeinclude` names, and
/// runs the mission's `setup` there (its output in `logs/<setup_log>`).
pub(crate) async fn prepare(
    shared: &Shared,
    i: usize,
    worktree: &Path,
    logs: &Path,
    base: Oid,
    setup_log: &str,
) -> Prepared {
    if let Err(e) = fs_err::create_dir_all(logs) {
        return Prepared::Failed(StepError::new("state", e.to_string()));
    }
    let repo = shared.repo.clone();
    let path = worktree.to_owned();
    match blocking(move || {
        repo.add_worktree(&path, base)?;
        copy_worktree_includes(&repo.root, &path).map_err(|e| crate::git::GitError::Io {
            path: path.clone(),
            source: e,
        })
    })
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Prepared::Failed(StepError::new("worktree", e.to_string())),
        Err(e) => return Prepared::Failed(StepError::new("worktree", e)),
    }
    let Some(setup) = &shared.plan.setup else {
        return Prepared::Ready;
    };
    let step = &shared.plan.steps[i];
    let log = logs.join(setup_log);
    let command = match render(shared, Some(i), setup, Flavor::Shell, 1, base, None) {
        Ok(c) => c,
        Err(e) => {
            return Prepared::Failed(StepError::new(
                "template",
                format!("cannot render `setup`: {e}"),
            ));
        }
    };
    let mut spec = Spec::shell(&command, worktree, &log);
    spec.record = Some(shared.processes());
    spec.secrets = shared.secrets.clone();
    spec.env = step_env(shared, &step.id, worktree, 1);
    let mut cancel = shared.cancel_for(i);
    match process::run(&spec, step.timeout, &mut cancel, shared.grace).await {
        Ok(exit) if exit.success() => Prepared::Ready,
        Ok(Exit::Cancelled) => Prepared::Cancelled,
        Ok(exit) => Prepared::Failed(StepError::new(
            "setup",
            format!(
                "setup `{command}` {}:\n{}",
                describe(exit),
                tail(&log, TAIL_LINES, TAIL_BYTES)
            ),
        )),
        Err(e) => Prepared::Failed(StepError::new("setup", e.to_string())),
    }
}

fn describe(exit: Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exited with {c}"),
        Exit::Signal(s) => format!("was killed by signal {s}"),
        Exit::TimedOut => "ran past its timeout".to_owned(),
        Exit::Cancelled => "was cancelled".to_owned(),
        Exit::Stopped => "was stopped".to_owned(),
    }
}

fn attempt_failed(shared: &Shared, i: usize, attempt: u32, reason: FailReason, message: &str) {
    shared.emitter.emit(Body::AttemptFailed {
        step: shared.plan.steps[i].id.clone(),
        attempt,
        agent: None,
        reason,
        message: message.to_owned(),
    });
}

async fn cancelled(
    shared: &Shared,
    i: usize,
    base: Oid,
    attempts: u32,
    started: Instant,
    _worktree: &Path,
) -> Outcome {
    finish(
        shared,
        i,
        Outcome::Cancelled,
        None,
        base,
        attempts,
        started,
        String::new(),
        Some(StepError::new("cancelled", "the run was cancelled")),
    )
}

pub(crate) enum GateResult {
    Passed,
    /// The gate failed: a message for the user, and what a retry prompt tells the agent.
    Failed {
        message: String,
        command: String,
        exit_code: Option<i32>,
        output: String,
    },
    Cancelled,
}

/// Runs a gate in `worktree`; `step` is `None` for the mission's gate.
pub(crate) async fn run_gate(
    shared: &Shared,
    i: Option<usize>,
    gate: &TemplateRef,
    worktree: &Path,
    logs: &Path,
    attempt: u32,
    base: Oid,
) -> GateResult {
    let step_id = i.map(|i| shared.plan.steps[i].id.clone());
    let command = match render(shared, i, gate, Flavor::Shell, attempt, base, None) {
        Ok(c) => c,
        Err(e) => {
            let message = format!("cannot render the gate: {e}");
            return GateResult::Failed {
                message: message.clone(),
                command: gate.source.clone(),
                exit_code: None,
                output: message,
            };
        }
    };
    shared.emitter.emit(Body::GateStarted {
        step: step_id.clone(),
        attempt,
        command: command.clone(),
    });
    let log = logs.join(format!("gate.{attempt}.log"));
    let mut spec = Spec::shell(&command, worktree, &log);
    spec.record = Some(shared.processes());
    spec.secrets = shared.secrets.clone();
    spec.env = step_env(shared, step_id.as_deref().unwrap_or(""), worktree, attempt);
    let timeout = i.map_or(std::time::Duration::from_secs(30 * 60), |i| {
        shared.plan.steps[i].timeout
    });
    let mut cancel = i.map_or_else(|| shared.cancel.clone(), |i| shared.cancel_for(i));
    let exit = process::run(&spec, timeout, &mut cancel, shared.grace).await;
    let output_tail = tail(&log, TAIL_LINES, TAIL_BYTES);
    let exit = match exit {
        Ok(exit) => exit,
        Err(e) => {
            shared.emitter.emit(Body::GateFinished {
                step: step_id,
                attempt,
                exit_code: None,
                passed: false,
                output_tail: e.to_string(),
            });
            let message = format!("the gate `{command}` could not start: {e}");
            return GateResult::Failed {
                message: message.clone(),
                command,
                exit_code: None,
                output: message,
            };
        }
    };
    shared.emitter.emit(Body::GateFinished {
        step: step_id,
        attempt,
        exit_code: exit.code(),
        passed: exit.success(),
        output_tail: output_tail.clone(),
    });
    match exit {
        Exit::Code(0) => GateResult::Passed,
        Exit::Cancelled => GateResult::Cancelled,
        other => {
            // The output is kept once, in `gate_finished`; the message names the gate.
            let message = format!("the gate `{command}` {}", describe(other));
            let output = tail(&log, FAILURE_LINES, FAILURE_BYTES);
            GateResult::Failed {
                message,
                command,
                exit_code: other.code(),
                output,
            }
        }
    }
}

/// Runs the mission's gate on the merged result, in a worktree of its own.
pub(crate) async fn final_gate(
    shared: &Arc<Shared>,
    gate: &TemplateRef,
    merged: Oid,
) -> Result<bool, String> {
    let worktree = shared.worktrees.join("_final");
    let logs = shared.run_dir.join("logs").join("_final");
    fs_err::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let repo = shared.repo.clone();
    let path = worktree.clone();
    blocking(move || repo.add_worktree(&path, merged))
        .await?
        .map_err(|e| e.to_string())?;
    let result = run_gate(shared, None, gate, &worktree, &logs, 1, merged).await;
    let repo = shared.repo.clone();
    let _ = blocking(move || repo.remove_worktree(&worktree)).await;
    Ok(matches!(result, GateResult::Passed))
}

/// Copies into a new worktree the ignored files of the repository that its
/// `.worktreeinclude` (gitignore syntax) names, e.g. `.env`. Tracked files are never copied:
/// the worktree already has them from the base.
fn copy_worktree_includes(root: &Path, worktree: &Path) -> std::io::Result<()> {
    let list = root.join(".worktreeinclude");
    if !list.is_file() {
        return Ok(());
    }
    let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
    if let Some(e) = builder.add(&list) {
        return Err(std::io::Error::other(format!("{}: {e}", list.display())));
    }
    let patterns = builder
        .build()
        .map_err(|e| std::io::Error::other(format!("{}: {e}", list.display())))?;
    let repo = git2::Repository::open(root).map_err(std::io::Error::other)?;
    let mut options = git2::StatusOptions::new();
    options
        .include_ignored(true)
        .recurse_ignored_dirs(true)
        .include_untracked(false)
        .exclude_submodules(true);
    let statuses = repo
        .statuses(Some(&mut options))
        .map_err(std::io::Error::other)?;
    for status in statuses.iter() {
        if !status.status().contains(git2::Status::IGNORED) {
            continue;
        }
        let Ok(path) = status.path() else { continue };
        let relative = PathBuf::from(path);
        if !patterns
            .matched_path_or_any_parents(&relative, false)
            .is_ignore()
        {
            continue;
        }
        let from = root.join(&relative);
        let to = worktree.join(&relative);
        if let Some(parent) = to.parent() {
            fs_err::create_dir_all(parent)?;
        }
        let meta = fs_err::symlink_metadata(&from)?;
        if meta.file_type().is_symlink() {
            let target = fs_err::read_link(&from)?;
            let _ = fs_err::remove_file(&to);
            std::os::unix::fs::symlink(target, &to)?;
        } else if meta.is_file() {
            fs_err::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// The failure a retry prompt describes (`failure.*`).
pub(crate) fn failure_value(
    kind: &str,
    command: &str,
    exit_code: Option<i32>,
    output: &str,
) -> Value {
    template::map([
        ("kind", Value::from(kind)),
        ("command", Value::from(command)),
        ("exit_code", exit_code.map_or(Value::from(()), Value::from)),
        ("output", Value::from(output)),
    ])
}
