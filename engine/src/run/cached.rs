//! The cache of step results: a step's key (its rendered action, gate and setup, what runs it,
//! its base narrowed to its `inputs`, the `.worktreeinclude` files it sees), and ending a step
//! with a result its key already has.

use std::sync::Arc;
use std::time::Instant;

use git2::Oid;

use super::blocking;
use super::context::{render, render_shell};
use super::end::{StepEnd, finish_with};
use super::gate::{self, GateResult};
use super::setup::{self, Prepared};
use super::state::{Scope, Shared};
use crate::event::Outcome;
use crate::git::refs;
use crate::plan::{Action, Flavor};

/// The cache key of step `i` on `base`: its rendered action, gate and setup, what runs it,
/// its base narrowed to its `inputs`, and the `.worktreeinclude` files it can see.
pub(crate) async fn key(shared: &Arc<Shared>, i: usize, base: Oid) -> Result<String, String> {
    let step = &shared.plan.steps[i];
    let (action, runner) = match &step.action {
        Action::Command { run } => (
            render_shell(shared, Scope::Step(i), run, 1, base)
                .await?
                .key(),
            "command".to_owned(),
        ),
        Action::Agent { prompt, agents, .. } => {
            let runner = runner(shared, Some(&step.id), agents).await?;
            (
                render(shared, Scope::Step(i), prompt, Flavor::Text, 1, base, None).await?,
                runner,
            )
        }
    };
    let gate = match &step.gate {
        Some(gate) => render_shell(shared, Scope::Step(i), gate, 1, base)
            .await?
            .key(),
        None => String::new(),
    };
    let setup = match &shared.plan.setup {
        Some(setup) => render_shell(shared, Scope::Step(i), setup, 1, base)
            .await?
            .key(),
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

/// What runs a chain of agents, as a key part: each profile as the plan has it (runtime, model,
/// args, env names) with its CLI's version. A step's chain and a merge's use this one key part;
/// a version that cannot be learnt is a warning (for `step`) and a key of its own.
pub(super) async fn runner(
    shared: &Arc<Shared>,
    step: Option<&str>,
    agents: &[String],
) -> Result<String, String> {
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
                    step,
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
    Ok(serde_json::to_string(&runner).unwrap_or_default())
}

/// What decides a profile's results besides its settings: its CLI's version; for a `command`
/// profile's own program (which may not know `--version`), its path and modification time;
/// empty when it is not installed. A version that cannot be learnt is an error: the program,
/// and why.
fn runner_version(profile: &crate::plan::AgentSpec) -> Result<String, (String, String)> {
    let program = super::program::program_of(profile);
    let Some(path) = super::program::which(&program) else {
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
pub(super) fn included_digest(
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
pub(crate) async fn reuse(
    shared: &Arc<Shared>,
    i: usize,
    base: Oid,
    key: &str,
    started: Instant,
) -> Option<Outcome> {
    let step = &shared.plan.steps[i];
    // A step a person rejected runs again (on top of what they rejected).
    if shared.rejected_retry(i).is_some() {
        return None;
    }
    let repo = shared.repo.clone();
    let key = key.to_owned();
    let entry = blocking(move || crate::cache::lookup(&repo, &key))
        .await
        .ok()??;
    let approved = entry.approved_by.is_some();
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
        // Running the gate again is work: it takes a share of `max_parallel`.
        let _permit = shared.work_permit(i).await?;
        let logs = shared.run_dir.join("logs").join(&step.id);
        let mut held = super::worktree::acquire(shared, &step.id, commit, step.fresh_worktree)
            .await
            .ok()?;
        let worktree = held.path().to_owned();
        let passed =
            match setup::prepare(shared, i, &mut held, &logs, commit, "setup.cached.log").await {
                Prepared::Ready => matches!(
                    gate::run(shared, Scope::Step(i), gate, &worktree, &logs, 0, base).await,
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
    let name = refs::step_result(&shared.run, &step.id);
    blocking(move || repo.set_ref(&name, commit, "medley: step result (cached)"))
        .await
        .ok()?
        .ok()?;
    if approved {
        // Its approval is cached with it: a rerun with the same key does not ask again.
        shared.approved_before(i);
    }
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
