//! An agent step: its chain of agents tried one after another (or raced, each in its own
//! worktree), each agent's attempts driven by the attempt driver, and the step's end summed
//! over them.

use std::sync::Arc;
use std::time::Instant;

use git2::Oid;
use tokio::sync::watch;

use super::agent::AgentWork;
use super::attempt::{self, End};
use super::end::{self, StepEnd};
use super::program::{program_of, which};
use super::state::Shared;
use crate::event::{Body, ErrorKind, FailReason, Outcome, StepError, Tokens};
use crate::mission::model::Strategy;
use crate::plan::Action;
use crate::process;

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

impl AgentRun {
    fn new(agent: &str) -> AgentRun {
        AgentRun {
            agent: agent.to_owned(),
            passed: None,
            attempts: 0,
            tokens: None,
            cost: None,
            unpriced: false,
            uncounted: false,
            reason: FailReason::AgentError,
            error: None,
            cancelled: false,
        }
    }
}

/// Runs an agent step to its end: its chain of agents, one after another or raced.
pub(crate) async fn run(shared: &Arc<Shared>, i: usize, base: Oid, started: Instant) -> Outcome {
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
                    let program = shared
                        .plan
                        .agents
                        .get(name)
                        .map(program_of)
                        .unwrap_or_default();
                    AgentRun {
                        error: Some(StepError::new(
                            ErrorKind::AgentMissing,
                            format!("`{program}` is not installed"),
                        )),
                        ..AgentRun::new(name)
                    }
                } else {
                    let cancel = shared.stops.step_stop(i);
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
        return end::finish_with(
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
        let error = StepError::new(ErrorKind::Cancelled, shared.stops.reason());
        let agent = runs.last().map(|r| r.agent.clone());
        return end::finish_with(
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
    end::finish_with(
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
        let mut cancel = shared.stops.step_stop(i);
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
                let name = names.get(&e.id()).cloned().unwrap_or_default();
                AgentRun {
                    error: Some(StepError::new(
                        ErrorKind::Internal,
                        format!("medley's task for this agent {why} (a bug: please report it)"),
                    )),
                    ..AgentRun::new(&name)
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
    let logs = shared.run_dir.join("logs").join(&step.id);
    let mut run = AgentRun::new(name);
    let Some(profile) = shared.plan.agents.get(name).cloned() else {
        run.error = Some(StepError::new(
            ErrorKind::Agent,
            format!("no agent profile `{name}`"),
        ));
        return run;
    };
    let name_in_run = format!("{}/{name}", step.id);
    let mut held = match super::worktree::acquire(
        shared,
        &name_in_run,
        shared.start_of(i, base),
        step.fresh_worktree,
    )
    .await
    {
        Ok(held) => held,
        Err(e) => {
            run.error = Some(StepError::new(ErrorKind::Worktree, e.to_string()));
            return run;
        }
    };
    let target = attempt::Target::step(shared, i);
    let mut work = AgentWork::new(shared, &target, name, profile, base, logs.clone());
    let setup_log = format!("setup.{name}.log");
    let ended = attempt::drive(
        shared,
        &target,
        &mut held,
        &logs,
        base,
        &setup_log,
        &mut cancel,
        &mut work,
    )
    .await;
    run.attempts = ended.attempts;
    run.tokens = work.tokens;
    run.cost = work.cost;
    run.unpriced = work.unpriced;
    run.uncounted = work.uncounted;
    match ended.end {
        End::Passed { commit, output } => run.passed = Some((commit, output)),
        End::Failed { error, reason, .. } => {
            run.error = error;
            run.reason = reason;
        }
        End::Cancelled => run.cancelled = true,
    }
    if run.passed.is_some() || run.cancelled {
        let _ = held.release(shared).await;
    } else {
        held.keep(shared, &step.id).await;
    }
    run
}
