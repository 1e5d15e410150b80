//! Agent steps: a chain of agents tried in order (or raced), each in its own worktree from the
//! step's base, with attempts that resume the agent's session and carry the gate's words.
//! Every prompt is archived, byte for byte, before the agent starts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::Oid;
use minijinja::value::Value;
use tokio::sync::watch;

use super::process::{self, Exit, Spec};
use super::step::{self, GateResult, Prepared, StepEnd};
use super::{Shared, render, step_ref};
use crate::agent::{self, AgentOutcome, AgentResult, Invocation, OutputKind, SessionTotals};
use crate::event::{Body, FailReason, Outcome, StepError, Tokens};
use crate::mission::Runtime;
use crate::mission::model::Strategy;
use crate::plan::{Action, AgentSpec, Flavor};

/// How long codex may wait for the network before the attempt ends as `unreachable`
/// (AGENTS.md 2.9); `MEDLEY_NETWORK_WAIT` (e.g. `2s`) sets it.
fn network_wait() -> Duration {
    std::env::var("MEDLEY_NETWORK_WAIT")
        .ok()
        .and_then(|w| crate::plan::duration_text::parse(&w))
        .unwrap_or(Duration::from_secs(60))
}

/// How long a CLI may run on after its terminal event before it is stopped.
const AFTER_END: Duration = Duration::from_secs(5);

/// Finds a program on PATH, as a shell would.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt as _;
            fs_err::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The program a profile runs: its CLI's binary, or a command profile's `program[0]`.
pub fn program_of(profile: &AgentSpec) -> String {
    match profile.runtime {
        Runtime::Command => profile
            .program
            .as_ref()
            .and_then(|p| p.first())
            .cloned()
            .unwrap_or_default(),
        runtime => agent::adapter(runtime).binary().to_owned(),
    }
}

fn adapter_of(profile: &AgentSpec) -> Box<dyn agent::Adapter> {
    match profile.runtime {
        Runtime::Command => Box::new(agent::command::CommandAdapter::new(
            profile.program.clone().unwrap_or_default(),
        )),
        runtime => agent::adapter(runtime),
    }
}

/// What one agent of the chain did with the step.
struct AgentRun {
    agent: String,
    /// The passed result, if it passed.
    passed: Option<(Oid, String)>,
    attempts: u32,
    /// `None` while no attempt reported tokens.
    tokens: Option<Tokens>,
    cost: Option<f64>,
    unpriced: bool,
    /// An attempt reported no tokens.
    uncounted: bool,
    /// Why it gave up (for the switch to the next agent and the step's error).
    reason: FailReason,
    error: Option<StepError>,
    cancelled: bool,
}

/// The failure the next attempt hears about.
struct Failure {
    kind: &'static str,
    command: String,
    exit_code: Option<i32>,
    output: String,
}

impl Failure {
    fn value(&self) -> Value {
        step::failure_value(self.kind, &self.command, self.exit_code, &self.output)
    }

    /// The default retry prompt: the failed check, its exit code and the tail of its output.
    fn default_text(&self) -> String {
        let code = self
            .exit_code
            .map_or(String::new(), |c| format!(" with exit code {c}"));
        match self.kind {
            "gate" => format!(
                "The check `{}` failed{code}. Its output ends with:\n\n{}\n\nFix the code so that this check passes.",
                self.command, self.output
            ),
            "timeout" => format!(
                "The last attempt ran out of time before finishing. Continue, and keep the check `{}` passing.",
                self.command
            ),
            _ => format!(
                "The last attempt failed:\n\n{}\n\nTry again and finish the task.",
                self.output
            ),
        }
    }
}

/// Runs an agent step to its end: its chain of agents, one after another or raced.
pub(crate) async fn run_agent_step(
    shared: &Arc<Shared>,
    i: usize,
    base: Oid,
    started: Instant,
) -> Outcome {
    let step = &shared.plan.steps[i];
    let Action::Agent {
        agents, strategy, ..
    } = &step.action
    else {
        return Outcome::Failed;
    };
    let installed: Vec<&String> = agents
        .iter()
        .filter(|a| {
            shared
                .plan
                .agents
                .get(*a)
                .is_some_and(|p| which(&program_of(p)).is_some())
        })
        .collect();
    let runs = match strategy {
        Strategy::Race if installed.len() > 1 => race(shared, i, base, &installed).await,
        _ => {
            let mut runs = Vec::new();
            for (n, name) in agents.iter().enumerate() {
                let missing = !installed.contains(&name);
                let run = if missing {
                    AgentRun {
                        agent: name.clone(),
                        passed: None,
                        attempts: 0,
                        tokens: None,
                        uncounted: false,
                        cost: None,
                        unpriced: false,
                        reason: FailReason::AgentError,
                        error: Some(StepError::new(
                            "agent_missing",
                            format!(
                                "`{}` is not installed",
                                shared
                                    .plan
                                    .agents
                                    .get(name)
                                    .map(program_of)
                                    .unwrap_or_default()
                            ),
                        )),
                        cancelled: false,
                    }
                } else {
                    let cancel = shared.cancel_for(i);
                    run_agent(shared, i, name, base, cancel).await
                };
                let done = run.passed.is_some() || run.cancelled;
                runs.push(run);
                if done {
                    break;
                }
                if let (Some(next), Some(last)) = (agents.get(n + 1), runs.last()) {
                    shared.emitter.emit(Body::AgentSwitched {
                        step: step.id.clone(),
                        from: last.agent.clone(),
                        to: next.clone(),
                        reason: last.reason,
                    });
                }
            }
            runs
        }
    };
    let mut tokens: Option<Tokens> = None;
    let mut cost: Option<f64> = None;
    let mut unpriced = false;
    let mut uncounted = false;
    let mut attempts = 0;
    for run in &runs {
        Tokens::add(&mut tokens, run.tokens);
        uncounted |= run.uncounted;
        if let Some(c) = run.cost {
            *cost.get_or_insert(0.0) += c;
        }
        unpriced |= run.unpriced;
        attempts += run.attempts;
    }
    let winner = runs.iter().find(|r| r.passed.is_some());
    let end = |outcome, commit, agent: Option<String>, output, error| StepEnd {
        outcome,
        commit,
        base,
        attempts,
        output,
        error,
        agent,
        tokens,
        cost_usd: if unpriced { None } else { cost },
        unpriced,
        uncounted,
        cached_from: None,
        cached_cost_usd: None,
    };
    if let Some(run) = winner {
        let (commit, output) = run.passed.clone().unwrap_or((base, String::new()));
        return step::finish_with(
            shared,
            i,
            started,
            end(
                Outcome::Passed,
                Some(commit),
                Some(run.agent.clone()),
                output,
                None,
            ),
        );
    }
    if runs.iter().any(|r| r.cancelled) {
        let error = StepError::new("cancelled", shared.stop_reason());
        let agent = runs.last().map(|r| r.agent.clone());
        return step::finish_with(
            shared,
            i,
            started,
            end(Outcome::Cancelled, None, agent, String::new(), Some(error)),
        );
    }
    let error = runs
        .iter()
        .rev()
        .find_map(|r| r.error.clone())
        .map(|mut e| {
            if runs.len() > 1 {
                e.message = format!("every agent of the chain failed; the last: {}", e.message);
            }
            e
        });
    let agent = runs.last().map(|r| r.agent.clone());
    step::finish_with(
        shared,
        i,
        started,
        end(Outcome::Failed, None, agent, String::new(), error),
    )
}

/// Every agent at once, each in its own worktree; the first to pass wins and the others are
/// stopped.
async fn race(shared: &Arc<Shared>, i: usize, base: Oid, agents: &[&String]) -> Vec<AgentRun> {
    let mut senders = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut names = std::collections::HashMap::new();
    for name in agents {
        let (tx, rx) = watch::channel(false);
        senders.push(tx);
        let shared = shared.clone();
        let name = (*name).clone();
        let task = tasks.spawn({
            let name = name.clone();
            async move { run_agent(&shared, i, &name, base, rx).await }
        });
        names.insert(task.id(), name);
    }
    let senders = Arc::new(senders);
    // The run's own cancel reaches every racer.
    let forward = {
        let senders = senders.clone();
        let mut cancel = shared.cancel_for(i);
        tokio::spawn(async move {
            process::cancelled(&mut cancel).await;
            for tx in senders.iter() {
                let _ = tx.send(true);
            }
        })
    };
    let mut runs = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let run = match joined {
            Ok(run) => run,
            // A racer whose task panicked or was aborted failed; the race goes on without it.
            Err(e) => {
                let why = if e.is_panic() {
                    "panicked"
                } else {
                    "was aborted"
                };
                AgentRun {
                    agent: names.get(&e.id()).cloned().unwrap_or_default(),
                    passed: None,
                    attempts: 0,
                    tokens: None,
                    uncounted: false,
                    cost: None,
                    unpriced: false,
                    reason: FailReason::AgentError,
                    error: Some(StepError::new(
                        "internal",
                        format!("medley's task for this agent {why} (a bug: please report it)"),
                    )),
                    cancelled: false,
                }
            }
        };
        if run.passed.is_some() && !runs.iter().any(|r: &AgentRun| r.passed.is_some()) {
            for tx in senders.iter() {
                let _ = tx.send(true);
            }
        }
        runs.push(run);
    }
    forward.abort();
    // A racer stopped because another won is not a cancelled step.
    if runs.iter().any(|r| r.passed.is_some()) {
        for run in &mut runs {
            run.cancelled = false;
        }
    }
    runs
}

/// One agent of the chain: its worktree, setup and attempts.
async fn run_agent(
    shared: &Arc<Shared>,
    i: usize,
    name: &str,
    base: Oid,
    mut cancel: watch::Receiver<bool>,
) -> AgentRun {
    let step = &shared.plan.steps[i];
    let profile = shared.plan.agents.get(name).cloned();
    let logs = shared.run_dir.join("logs").join(&step.id);
    let mut run = AgentRun {
        agent: name.to_owned(),
        passed: None,
        attempts: 0,
        tokens: None,
        uncounted: false,
        cost: None,
        unpriced: false,
        reason: FailReason::AgentError,
        error: None,
        cancelled: false,
    };
    let Some(profile) = profile else {
        run.error = Some(StepError::new(
            "agent",
            format!("no agent profile `{name}`"),
        ));
        return run;
    };
    let name_in_run = format!("{}/{name}", step.id);
    let mut held =
        match super::worktree::acquire(shared, &name_in_run, base, step.fresh_worktree).await {
            Ok(held) => held,
            Err(e) => {
                run.error = Some(StepError::new("worktree", e.to_string()));
                return run;
            }
        };
    let run = agent_attempts(
        shared,
        i,
        name,
        base,
        &mut cancel,
        run,
        profile,
        &mut held,
        &logs,
    )
    .await;
    if run.passed.is_some() || run.cancelled {
        let _ = held.release(shared).await;
    } else {
        held.keep(shared, &step.id).await;
    }
    run
}

/// The attempts of one agent in its worktree: setup, then agent, commit, gate and retries.
#[allow(clippy::too_many_arguments)]
async fn agent_attempts(
    shared: &Arc<Shared>,
    i: usize,
    name: &str,
    base: Oid,
    cancel: &mut watch::Receiver<bool>,
    mut run: AgentRun,
    profile: AgentSpec,
    held: &mut super::worktree::Worktree,
    logs: &Path,
) -> AgentRun {
    let step = &shared.plan.steps[i];
    let worktree = held.path().to_owned();
    let logs = logs.to_owned();
    match step::prepare(shared, i, held, &logs, base, &format!("setup.{name}.log")).await {
        Prepared::Ready => {}
        Prepared::Cancelled => {
            run.cancelled = true;
            return run;
        }
        Prepared::Failed(e) => {
            run.error = Some(e);
            return run;
        }
    }
    let Action::Agent {
        prompt,
        retry_prompt,
        ..
    } = &step.action
    else {
        return run;
    };
    let adapter = adapter_of(&profile);
    let original = match render(shared, Some(i), prompt, Flavor::Text, 1, base, None).await {
        Ok(p) => p,
        Err(e) => {
            run.error = Some(StepError::new(
                "template",
                format!("cannot render `prompt`: {e}"),
            ));
            return run;
        }
    };
    let prompts = shared.run_dir.join("prompts");
    let _ = fs_err::create_dir_all(&prompts);
    let mut session: Option<String> = None;
    let mut totals = SessionTotals::default();
    let mut parent = base;
    let mut failure: Option<Failure> = None;
    for attempt in 1..=step.attempts {
        if *cancel.borrow() || shared.budget_reached() {
            run.cancelled = *cancel.borrow();
            if !run.cancelled {
                run.error = Some(StepError::new("budget", "budget reached"));
            }
            break;
        }
        run.attempts = attempt;
        // The prompt: the task, or the retry that carries the failure.
        let resume = session
            .clone()
            .filter(|_| adapter.resumable() && failure.is_some());
        let text = match &failure {
            None => original.clone(),
            Some(f) => {
                let retry = match retry_prompt {
                    Some(t) => {
                        render(
                            shared,
                            Some(i),
                            t,
                            Flavor::Text,
                            attempt,
                            base,
                            Some(f.value()),
                        )
                        .await
                    }
                    None => Ok(f.default_text()),
                };
                let retry = match retry {
                    Ok(r) => r,
                    Err(e) => {
                        run.error = Some(StepError::new(
                            "template",
                            format!("cannot render `retry_prompt`: {e}"),
                        ));
                        return run;
                    }
                };
                if resume.is_some() {
                    retry
                } else {
                    format!("{original}\n\n{retry}")
                }
            }
        };
        let archive = prompts.join(format!("{}.{attempt}.{name}.txt", step.id));
        if let Err(e) = fs_err::write(&archive, &text) {
            run.error = Some(StepError::new("state", e.to_string()));
            return run;
        }
        let new_session = (adapter.pre_assigns_session() && resume.is_none())
            .then(|| uuid::Uuid::now_v7().to_string());
        let argv = adapter.argv(&Invocation {
            prompt: &text,
            worktree: &worktree,
            model: profile.model.as_deref(),
            resume: resume.as_deref(),
            new_session: new_session.as_deref(),
            extra_args: &profile.args,
        });
        shared.emitter.emit(Body::StepStarted {
            step: step.id.clone(),
            attempt,
            agent: Some(name.to_owned()),
            runtime: Some(profile.runtime.name().to_owned()),
            worktree: worktree.display().to_string(),
        });
        let previous = resume.as_ref().map(|_| totals);
        let (result, exit) = attempt_once(
            shared, i, name, &*adapter, &profile, &argv, &text, &worktree, &logs, attempt,
            previous, cancel,
        )
        .await;
        // Account what the attempt cost.
        match (result.input_tokens, result.output_tokens) {
            (None, None) => run.uncounted = true,
            (input, output) => Tokens::add(
                &mut run.tokens,
                Some(Tokens {
                    input: input.unwrap_or(0),
                    output: output.unwrap_or(0),
                }),
            ),
        }
        let cost = result.cost_usd.or_else(|| {
            let price = profile.price?;
            let (input, output) = (result.input_tokens?, result.output_tokens?);
            Some(
                input as f64 / 1e6 * price.input_per_mtok
                    + output as f64 / 1e6 * price.output_per_mtok,
            )
        });
        match cost {
            Some(c) => {
                *run.cost.get_or_insert(0.0) += c;
                shared.spend(c);
            }
            None if result.outcome != Some(AgentOutcome::Ok) && result.input_tokens.is_none() => {}
            None => run.unpriced = true,
        }
        if result.session_id.is_some() {
            session = result.session_id.clone();
        } else if new_session.is_some() {
            session = new_session.clone();
        }
        totals.input_tokens += result.input_tokens.unwrap_or(0);
        totals.output_tokens += result.output_tokens.unwrap_or(0);
        totals.cost_usd += result.cost_usd.unwrap_or(0.0);
        // Whatever the agent did, its tree is committed on top of the last attempt's.
        let repo = shared.repo.clone();
        let path = worktree.clone();
        let message = format!(
            "medley: {} step {} attempt {attempt} ({name})\n\nrun {}",
            shared.plan.mission, step.id, shared.run
        );
        let committed =
            tokio::task::spawn_blocking(move || repo.commit_worktree(&path, parent, &message))
                .await;
        let (commit, files) = match committed {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                run.error = Some(StepError::new("commit", e.to_string()));
                return run;
            }
            Err(e) => {
                run.error = Some(StepError::new("commit", e.to_string()));
                return run;
            }
        };
        parent = commit;
        shared.emitter.emit(Body::StepCommitted {
            step: step.id.clone(),
            attempt,
            commit: commit.to_string(),
            files,
        });
        if exit == Exit::Cancelled {
            run.cancelled = true;
            return run;
        }
        let mut outcome = result.outcome.unwrap_or(AgentOutcome::AgentError);
        if outcome == AgentOutcome::Ok && result.denial && files == 0 {
            outcome = AgentOutcome::Denied;
        }
        if outcome != AgentOutcome::Ok {
            let (reason, message) = describe_failure(outcome, &result, name, &profile);
            shared.emitter.emit(Body::AttemptFailed {
                step: step.id.clone(),
                attempt,
                agent: Some(name.to_owned()),
                reason,
                message: message.clone(),
            });
            run.reason = reason;
            run.error = Some(StepError::new(reason_kind(reason), message.clone()));
            if matches!(
                outcome,
                AgentOutcome::AuthError | AgentOutcome::UsageLimit | AgentOutcome::Unreachable
            ) {
                // Another try of this agent cannot help: the chain moves on at once.
                return run;
            }
            failure = Some(Failure {
                kind: if outcome == AgentOutcome::Timeout {
                    "timeout"
                } else {
                    "agent"
                },
                command: name.to_owned(),
                exit_code: exit.code(),
                output: message,
            });
            continue;
        }
        if let Some(gate) = &step.gate {
            match step::run_gate(shared, Some(i), gate, &worktree, &logs, attempt, base).await {
                GateResult::Passed => {}
                GateResult::Cancelled => {
                    run.cancelled = true;
                    return run;
                }
                GateResult::Failed {
                    message,
                    command,
                    exit_code,
                    output,
                } => {
                    shared.emitter.emit(Body::AttemptFailed {
                        step: step.id.clone(),
                        attempt,
                        agent: Some(name.to_owned()),
                        reason: FailReason::Gate,
                        message: message.clone(),
                    });
                    run.reason = FailReason::Gate;
                    run.error = Some(StepError::new("gate", message));
                    failure = Some(Failure {
                        kind: "gate",
                        command,
                        exit_code,
                        output,
                    });
                    continue;
                }
            }
        }
        let id = step.id.clone();
        let repo = shared.repo.clone();
        let run_id = shared.run.clone();
        let kept = tokio::task::spawn_blocking(move || {
            repo.set_ref(&step_ref(&run_id, &id), commit, "medley: step result")
        })
        .await;
        if let Ok(Err(e)) = kept {
            run.error = Some(StepError::new("state", e.to_string()));
            return run;
        }
        run.passed = Some((commit, result.final_message.unwrap_or_default()));
        return run;
    }
    run
}

fn reason_kind(reason: FailReason) -> &'static str {
    match reason {
        FailReason::Gate => "gate",
        FailReason::Command => "command",
        FailReason::AgentError => "agent_error",
        FailReason::Auth => "auth",
        FailReason::UsageLimit => "usage_limit",
        FailReason::Unreachable => "unreachable",
        FailReason::Denied => "denied",
        FailReason::Timeout => "timeout",
    }
}

/// The reason and a message that says what to fix.
fn describe_failure(
    outcome: AgentOutcome,
    result: &AgentResult,
    name: &str,
    profile: &AgentSpec,
) -> (FailReason, String) {
    let said = result.error.clone().unwrap_or_default();
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    match outcome {
        AgentOutcome::AuthError => (
            FailReason::Auth,
            format!(
                "`{name}` is not logged in or its key was refused{said}; {}",
                login_hint(profile.runtime)
            ),
        ),
        AgentOutcome::UsageLimit => (
            FailReason::UsageLimit,
            format!("`{name}` hit a usage or rate limit{said}"),
        ),
        AgentOutcome::Unreachable => (
            FailReason::Unreachable,
            format!("`{name}` could not reach its model service{said}"),
        ),
        AgentOutcome::Denied => (
            FailReason::Denied,
            format!(
                "`{name}` was refused permission to write and changed nothing{said} (check the profile's `args` do not restrict its permissions)"
            ),
        ),
        AgentOutcome::Timeout => (
            FailReason::Timeout,
            format!("`{name}` ran past the step's timeout and was stopped"),
        ),
        AgentOutcome::AgentError | AgentOutcome::Ok => {
            (FailReason::AgentError, format!("`{name}` failed{said}"))
        }
    }
}

/// What a CLI needs to be logged in (AGENTS.md: credentials of each CLI).
fn login_hint(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Claude => {
            "log in with `claude` (`/login`), or set `ANTHROPIC_API_KEY` in your environment or the profile's `env`"
        }
        Runtime::Codex => {
            "log in with `codex login`, or set `CODEX_API_KEY` (or your provider's key variable) in your environment or the profile's `env`"
        }
        Runtime::Gemini => {
            "log in with `gemini`, or set `GEMINI_API_KEY` in your environment or the profile's `env`"
        }
        Runtime::Qwen => {
            "log in with `qwen`, or set `OPENAI_API_KEY` (with `OPENAI_BASE_URL` and `OPENAI_MODEL`) in your environment or the profile's `env`"
        }
        Runtime::Cursor => {
            "log in with `cursor-agent login`, or set `CURSOR_API_KEY` in your environment or the profile's `env`"
        }
        Runtime::Kimi => {
            "log in with `kimi` (its config lives under `KIMI_CODE_HOME`, by default `~/.kimi-code`)"
        }
        Runtime::Command => "check the program's own credentials",
    }
}

/// Runs the CLI once, streaming its events; returns its result with the outcome decided.
#[allow(clippy::too_many_arguments)]
async fn attempt_once(
    shared: &Arc<Shared>,
    i: usize,
    name: &str,
    adapter: &dyn agent::Adapter,
    profile: &AgentSpec,
    argv: &[String],
    prompt: &str,
    worktree: &Path,
    logs: &Path,
    attempt: u32,
    previous: Option<SessionTotals>,
    cancel: &mut watch::Receiver<bool>,
) -> (AgentResult, Exit) {
    let step = &shared.plan.steps[i];
    let program = program_of(profile);
    let mut env = step::step_env(shared, &step.id, worktree, attempt);
    env.extend(profile.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let spec = Spec {
        program: which(&program).unwrap_or_else(|| PathBuf::from(&program)),
        args: argv.to_vec(),
        cwd: worktree.to_owned(),
        env,
        stdin: adapter
            .prompt_on_stdin()
            .then(|| prompt.as_bytes().to_vec()),
        stdout: logs.join(format!("{name}.{attempt}.jsonl")),
        stderr: logs.join(format!("{name}.{attempt}.stderr")),
        // Nesting variables of a Claude Code session around medley (AGENTS.md 2.8).
        env_remove: vec!["CLAUDECODE".to_owned(), "CLAUDE_CODE_ENTRYPOINT".to_owned()],
        record: Some(shared.processes()),
        secrets: shared.secrets.clone(),
    };
    let parser = Mutex::new(adapter.parser(previous));
    let wait = network_wait();
    let step_id = step.id.clone();
    let mut on_stdout = |line: &str| {
        let Ok(mut parser) = parser.lock() else {
            return None;
        };
        for output in parser.stdout_line(line) {
            shared.emitter.emit(Body::AgentOutput {
                step: step_id.clone(),
                attempt,
                agent: name.to_owned(),
                session_id: output.session_id,
                kind: kind_name(output.kind).to_owned(),
                summary: output.summary,
                raw: output.raw,
            });
        }
        if parser.ended() {
            return Some(AFTER_END);
        }
        parser.waiting_for_network().then_some(wait)
    };
    let mut on_stderr = |line: &str| {
        if let Ok(mut parser) = parser.lock() {
            parser.stderr_line(line);
        }
    };
    let exit = process::run_streaming(
        &spec,
        step.timeout,
        cancel,
        shared.grace,
        &mut on_stdout,
        &mut on_stderr,
    )
    .await;
    let exit = match exit {
        Ok(exit) => exit,
        Err(e) => {
            let result = AgentResult {
                outcome: Some(AgentOutcome::AgentError),
                error: Some(e.to_string()),
                ..AgentResult::default()
            };
            return (result, Exit::Code(127));
        }
    };
    let (mut result, ended) = match parser.lock() {
        Ok(mut parser) => {
            let ended = parser.ended();
            // Stopped after saying how it ended: the CLI finished, whatever its exit would be.
            let code = if exit == Exit::Stopped && ended {
                Some(0)
            } else {
                exit.code()
            };
            (parser.finish(code), ended)
        }
        Err(_) => (AgentResult::default(), false),
    };
    match exit {
        Exit::TimedOut => result.outcome = Some(AgentOutcome::Timeout),
        // Stopped after its terminal event: the result stands.
        Exit::Stopped if result.outcome.is_some() && ended => {}
        Exit::Stopped => {
            result.outcome = Some(AgentOutcome::Unreachable);
            result.error = Some(format!(
                "it waited for the network for {} and was stopped",
                crate::plan::duration_text::format(wait)
            ));
        }
        _ => {}
    }
    (result, exit)
}

fn kind_name(kind: OutputKind) -> &'static str {
    match kind {
        OutputKind::Message => "message",
        OutputKind::Tool => "tool",
        OutputKind::Usage => "usage",
        OutputKind::Error => "error",
        OutputKind::Other => "other",
    }
}
