//! The cache of merge resolutions: a conflict's key (the trees of the ancestor and both sides,
//! the rendered merge prompt, the merge's gate and setup, its chain of agents as a step's key
//! sees it), and a resolution made again from the one its key already has, without an agent.

use std::sync::Arc;

use git2::Oid;

use super::blocking;
use super::context::render_shell;
use super::state::{Scope, Shared};
use crate::cache::Resolution;
use crate::git::Sides;
use crate::plan::MergeSpec;

/// Whether resolutions for `scope` are cached: not with `--no-cache`, nor for a step with
/// `cache = false`.
pub(super) fn caching(shared: &Shared, scope: Scope) -> bool {
    match scope {
        Scope::Step(i) => shared.caching(i),
        Scope::Mission => !shared.no_cache,
    }
}

/// The key of the conflict of `sides`, resolved by `spec` with `prompt` (as rendered for this
/// run) in a worktree of `conflicted`.
pub(super) async fn key(
    shared: &Arc<Shared>,
    scope: Scope,
    spec: &MergeSpec,
    prompt: &str,
    sides: &Sides,
    conflicted: Oid,
) -> Result<String, String> {
    let step = scope.step().map(|i| shared.plan.steps[i].id.as_str());
    let repo = shared.repo.clone();
    let (ancestor, ours, theirs) = (sides.ancestor, sides.ours, sides.theirs);
    let conflict = blocking(move || {
        Ok::<_, crate::git::GitError>(format!(
            "merge {} {} {}",
            repo.tree_of(ancestor)?,
            repo.tree_of(ours)?,
            repo.tree_of(theirs)?
        ))
    })
    .await?
    .map_err(|e| e.to_string())?;
    let runner = super::cached::runner(shared, step, &spec.agents).await?;
    // The gate and setup as the merge's attempts render them: on the conflicted commit.
    let gate = match &spec.gate {
        Some(gate) => render_shell(shared, scope, gate, 1, conflicted)
            .await?
            .key(),
        None => String::new(),
    };
    // The final merge's worktree gets neither setup nor `.worktreeinclude` files.
    let (setup, includes) = match (scope, &shared.plan.setup) {
        (Scope::Mission, _) => (String::new(), String::new()),
        (Scope::Step(_), setup) => (
            match setup {
                Some(setup) => render_shell(shared, scope, setup, 1, conflicted)
                    .await?
                    .key(),
                None => String::new(),
            },
            super::cached::included_digest(&shared.includes, None)?,
        ),
    };
    Ok(crate::cache::key(&crate::cache::KeyParts {
        action: &format!("merge prompt\n{prompt}"),
        gate: &gate,
        setup: &setup,
        runner: &runner,
        base: &conflict,
        includes: &includes,
    }))
}

/// The resolution cached under `key`, as a merge commit of this run's `sides`: the cached
/// commit itself when its parents are these very sides, else a new merge commit of its tree
/// with these sides as parents (so the ancestry is this run's). `None`: nothing cached.
pub(super) async fn reuse(
    shared: &Arc<Shared>,
    key: &str,
    sides: &Sides,
) -> Option<(Oid, Resolution)> {
    let repo = shared.repo.clone();
    let key = key.to_owned();
    let entry = blocking(move || crate::cache::lookup_resolution(&repo, &key))
        .await
        .ok()??;
    let cached = Oid::from_str(&entry.commit).ok()?;
    let repo = shared.repo.clone();
    let s = sides.clone();
    let message = format!(
        "medley: merge of {} and {} (resolution of run {} reused)\n\nrun {}",
        sides.ours_label(),
        sides.theirs_step,
        entry.run,
        shared.run
    );
    let commit = blocking(move || {
        if repo.parents_of(cached)? == [s.ours, s.theirs] {
            Ok(cached)
        } else {
            repo.resolution(cached, &s, &message)
        }
    })
    .await
    .ok()?
    .ok()?;
    Some((commit, entry))
}

/// Remembers the accepted resolution `commit` of step `id`'s conflict under `key` (a failure to
/// is a warning: the run goes on).
pub(super) async fn store(
    shared: &Arc<Shared>,
    id: &str,
    key: &str,
    commit: Oid,
    agent: &str,
    cost_usd: Option<f64>,
) {
    let entry = Resolution {
        run: shared.run.clone(),
        step: id.to_owned(),
        commit: commit.to_string(),
        agent: agent.to_owned(),
        cost_usd,
    };
    let repo = shared.repo.clone();
    let key = key.to_owned();
    let stored = blocking(move || crate::cache::store_resolution(&repo, &key, &entry)).await;
    let why = match stored {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e,
    };
    let step = (id != crate::event::FINAL_MERGE).then_some(id);
    shared.emitter.warn(
        step,
        format!("the merge resolution could not be kept in the cache, so the next run asks the merge agent again: {why}"),
    );
}
