//! One step: its base, its worktree, setup, attempts (command, commit, gate), and its end.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use git2::Oid;
use minijinja::value::Value;

use super::process::{self, Exit, Spec};
use super::{Shared, StepRecord, render, render_shell, step_ref};
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
    /// `None`: no call reported any.
    pub tokens: Option<Tokens>,
    pub cost_usd: Option<f64>,
    /// Some of its agent calls had no known cost.
    pub unpriced: bool,
    /// Some of its agent calls reported no tokens.
    pub uncounted: bool,
    /// The run whose cached result this is.
    pub cached_from: Option<String>,
    /// For a cached result: what it cost in the run that made it.
    pub cached_cost_usd: Option<f64>,
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
            tokens: None,
            cost_usd: None,
            unpriced: false,
            uncounted: false,
            cached_from: None,
            cached_cost_usd: None,
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
            output: end.output.clone(),
            cost_usd: if end.outcome == Outcome::Cached {
                end.cached_cost_usd
            } else {
                end.cost_usd
            },
        });
    }
    shared.account(end.tokens, end.unpriced, end.uncounted);
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
        output: end.output,
        cached_cost_usd: end.cached_cost_usd,
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
        let logs = shared.run_dir.join("logs").join(&step.id);
        let mut held =
            match super::worktree::acquire(&shared, &step.id, base, step.fresh_worktree).await {
                Ok(held) => held,
                Err(e) => return fail("worktree", e.to_string(), base, 0, None),
            };
        let outcome = command_attempts(&shared, i, run, base, started, &mut held, &logs).await;
        if outcome == Outcome::Failed {
            held.keep(&shared, &step.id).await;
        } else {
            let _ = held.release(&shared).await;
        }
        outcome
    }
    .await;
    if outcome == Outcome::Passed
        && let Some(key) = key
    {
        let record = shared.records.lock().ok().and_then(|r| r[i].clone());
        if let Some(record) = record
            && let Some(commit) = record.commit
        {
            let entry = crate::cache::Entry {
                run: shared.run.clone(),
                step: step.id.clone(),
                base: base.to_string(),
                commit: commit.to_string(),
                output: record.output,
                cost_usd: record.cost_usd,
            };
            let repo = shared.repo.clone();
            let stored = match blocking(move || crate::cache::store(&repo, &key, &entry)).await {
                Ok(stored) => stored.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            if let Err(e) = stored {
                shared.emitter.warn(
                    Some(&step.id),
                    format!("its result could not be kept in the cache, so the next run runs it again: {e}"),
                );
            }
        }
    }
    outcome
}

/// The cache key of step `i` on `base`: its rendered action, gate and setup, what runs it,
/// its base narrowed to its `inputs`, and the `.worktreeinclude` files it can see.
async fn cache_key(shared: &Arc<Shared>, i: usize, base: Oid) -> Result<String, String> {
    let step = &shared.plan.steps[i];
    let (action, runner) = match &step.action {
        Action::Command { run } => (
            render_shell(shared, Some(i), run, 1, base).await?.key(),
            "command".to_owned(),
        ),
        Action::Agent { prompt, agents, .. } => {
            let mut runner = Vec::new();
            for name in agents {
                let Some(profile) = shared.plan.agents.get(name).cloned() else {
                    continue;
                };
                let version = blocking(move || runner_version(&profile)).await?;
                let version = match version {
                    Ok(version) => version,
                    Err((program, why)) => {
                        shared.emitter.warn(
                            Some(&step.id),
                            format!(
                                "cannot learn the version of `{program}` (`--version`): {why}; its results are cached apart from those of a known version"
                            ),
                        );
                        format!("unknown ({why})")
                    }
                };
                let profile = shared.plan.agents.get(name);
                runner.push(serde_json::json!({ "profile": profile, "version": version }));
            }
            (
                render(shared, Some(i), prompt, Flavor::Text, 1, base, None).await?,
                serde_json::to_string(&runner).unwrap_or_default(),
            )
        }
    };
    let gate = match &step.gate {
        Some(gate) => render_shell(shared, Some(i), gate, 1, base).await?.key(),
        None => String::new(),
    };
    let setup = match &shared.plan.setup {
        Some(setup) => render_shell(shared, Some(i), setup, 1, base).await?.key(),
        None => String::new(),
    };
    let repo = shared.repo.clone();
    let inputs = step.inputs.clone();
    let narrowed = blocking(move || crate::cache::narrowed_base(&repo, base, inputs.as_deref()))
        .await?
        .map_err(|e| e.to_string())?;
    let includes = included_digest(&shared.includes, step.inputs.as_deref())?;
    Ok(crate::cache::key(&crate::cache::KeyParts {
        action: &action,
        gate: &gate,
        setup: &setup,
        runner: &runner,
        base: &narrowed,
        includes: &includes,
    }))
}

/// What decides a profile's results besides its settings: its CLI's version; for a `command`
/// profile's own program (which may not know `--version`), its path and modification time;
/// empty when it is not installed. A version that cannot be learnt is an error: the program,
/// and why.
fn runner_version(profile: &crate::plan::AgentSpec) -> Result<String, (String, String)> {
    let program = super::agent::program_of(profile);
    let Some(path) = super::agent::which(&program) else {
        return Ok(String::new());
    };
    match profile.runtime {
        crate::mission::Runtime::Command => fs_err::metadata(&path)
            .and_then(|m| m.modified())
            .map(|t| format!("{} {t:?}", path.display()))
            .map_err(|e| (program, e.to_string())),
        _ => super::preflight::version(&path).map_err(|why| (program, why)),
    }
}

/// The `.worktreeinclude` files a step with `inputs` can see (all of them without `inputs`),
/// as one digest of their paths and contents; empty when there are none.
fn included_digest(
    includes: &Result<Vec<(String, String)>, String>,
    inputs: Option<&[String]>,
) -> Result<String, String> {
    let includes = includes.as_ref().map_err(Clone::clone)?;
    let globs = match inputs {
        Some(inputs) => Some(crate::cache::input_globs(inputs).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut hasher = blake3::Hasher::new();
    let mut any = false;
    for (path, digest) in includes {
        if globs.as_ref().is_some_and(|g| !g.is_match(path)) {
            continue;
        }
        any = true;
        hasher.update(path.as_bytes());
        hasher.update(&[0]);
        hasher.update(digest.as_bytes());
        hasher.update(&[0]);
    }
    Ok(if any {
        hasher.finalize().to_hex().to_string()
    } else {
        String::new()
    })
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
        let logs = shared.run_dir.join("logs").join(&step.id);
        let mut held = super::worktree::acquire(shared, &step.id, commit, step.fresh_worktree)
            .await
            .ok()?;
        let worktree = held.path().to_owned();
        let passed = match prepare(shared, i, &mut held, &logs, commit, "setup.cached.log").await {
            Prepared::Ready => matches!(
                run_gate(shared, Some(i), gate, &worktree, &logs, 0, base).await,
                GateResult::Passed
            ),
            Prepared::Cancelled | Prepared::Failed(_) => false,
        };
        let _ = held.release(shared).await;
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
            output: entry.output,
            error: None,
            agent: None,
            tokens: None,
            cost_usd: None,
            unpriced: false,
            uncounted: false,
            cached_from: Some(entry.run),
            cached_cost_usd: entry.cost_usd,
        },
    ))
}

/// The attempts of a command step in its worktree: command, commit, gate, and retries.
async fn command_attempts(
    shared: &Arc<Shared>,
    i: usize,
    run: &TemplateRef,
    base: Oid,
    started: Instant,
    held: &mut super::worktree::Worktree,
    logs: &Path,
) -> Outcome {
    let step = &shared.plan.steps[i];
    let shared = shared.clone();
    let worktree = held.path().to_owned();
    let logs = logs.to_owned();
    let fail = |kind: &str, message: String, base: Oid, attempts: u32, _: Option<()>| {
        finish(
            &shared,
            i,
            Outcome::Failed,
            None,
            base,
            attempts,
            started,
            String::new(),
            Some(StepError::new(kind, message)),
        )
    };
    match prepare(&shared, i, held, &logs, base, "setup.log").await {
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
        let shell = match render_shell(&shared, Some(i), run, attempt, base).await {
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
        let command = shell.display.clone();
        let mut spec = Spec::shell(&shell.command, &worktree, &out_path);
        spec.stderr = err_path.clone();
        spec.record = Some(shared.processes());
        spec.secrets = shared.secrets.clone();
        spec.env = step_env(&shared, &step.id, &worktree, attempt);
        spec.env.extend(shell.env);
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
        let kept =
            blocking(move || repo.set_ref(&step_ref(&run_id, &id), commit, "medley: step result"))
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

/// How preparing a worktree went.
pub(crate) enum Prepared {
    Ready,
    Cancelled,
    Failed(StepError),
}

/// Readies a worktree already at `base`: copies in what `.worktreeinclude` names (what changed
/// since the slot last had it), and runs the mission's `setup` there (its output in
/// `logs/<setup_log>`).
pub(crate) async fn prepare(
    shared: &Arc<Shared>,
    i: usize,
    held: &mut super::worktree::Worktree,
    logs: &Path,
    base: Oid,
    setup_log: &str,
) -> Prepared {
    let worktree = &held.path().to_owned();
    if let Err(e) = fs_err::create_dir_all(logs) {
        return Prepared::Failed(StepError::new("state", e.to_string()));
    }
    let repo = shared.repo.clone();
    let path = worktree.to_owned();
    match blocking(move || {
        super::includes::copy(&repo.root, &path)
            .map(|_| ())
            .map_err(|e| crate::git::GitError::Io {
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
    let shell = match render_shell(shared, Some(i), setup, 1, base).await {
        Ok(c) => c,
        Err(e) => {
            return Prepared::Failed(StepError::new(
                "template",
                format!("cannot render `setup`: {e}"),
            ));
        }
    };
    // With `setup_files`, a pooled worktree where this setup already passed on the same files
    // skips it.
    let stamp = match &shared.plan.setup_files {
        Some(files) => {
            let repo = shared.repo.clone();
            let files = files.clone();
            let key = shell.key();
            match blocking(move || crate::cache::narrowed_base(&repo, base, Some(&files))).await {
                Ok(Ok(digest)) => Some(
                    blake3::hash(format!("{key}\0{digest}").as_bytes())
                        .to_hex()
                        .to_string(),
                ),
                _ => None,
            }
        }
        None => None,
    };
    if let Some(stamp) = &stamp
        && held.setup_stamp() == Some(stamp.as_str())
    {
        return Prepared::Ready;
    }
    let command = shell.display;
    let mut spec = Spec::shell(&shell.command, worktree, &log);
    spec.record = Some(shared.processes());
    spec.secrets = shared.secrets.clone();
    spec.env = step_env(shared, &step.id, worktree, 1);
    spec.env.extend(shell.env);
    let mut cancel = shared.cancel_for(i);
    let ran = process::run(&spec, step.timeout, &mut cancel, shared.grace).await;
    held.set_setup_stamp(match &ran {
        Ok(exit) if exit.success() => stamp,
        _ => None,
    });
    match ran {
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
        Some(StepError::new("cancelled", shared.stop_reason())),
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
    shared: &Arc<Shared>,
    i: Option<usize>,
    gate: &TemplateRef,
    worktree: &Path,
    logs: &Path,
    attempt: u32,
    base: Oid,
) -> GateResult {
    let step_id = i.map(|i| shared.plan.steps[i].id.clone());
    let shell = match render_shell(shared, i, gate, attempt, base).await {
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
    let command = shell.display;
    shared.emitter.emit(Body::GateStarted {
        step: step_id.clone(),
        attempt,
        command: command.clone(),
    });
    let log = logs.join(format!("gate.{attempt}.log"));
    let mut spec = Spec::shell(&shell.command, worktree, &log);
    spec.record = Some(shared.processes());
    spec.secrets = shared.secrets.clone();
    spec.env = step_env(shared, step_id.as_deref().unwrap_or(""), worktree, attempt);
    spec.env.extend(shell.env);
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
    let logs = shared.run_dir.join("logs").join("_final");
    fs_err::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let held = super::worktree::acquire(shared, "_final", merged, shared.plan.fresh_worktrees)
        .await
        .map_err(|e| e.to_string())?;
    let result = run_gate(shared, None, gate, held.path(), &logs, 1, merged).await;
    let _ = held.release(shared).await;
    Ok(matches!(result, GateResult::Passed))
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
