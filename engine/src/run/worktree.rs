//! The worktree a step (or one agent of a step's chain) works in: a slot leased from the
//! repository's pool of warm worktrees (`git::pool`), reset to the step's base with its ignored
//! build caches kept; or, with `--fresh-worktrees`, a brand-new `git worktree add` under the
//! run's directory, removed when the step passes.
//!
//! When the step passes (or is cancelled) the slot goes back to the pool; when it fails, the
//! slot is kept for a look until the next run of the mission (or `medley clean`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::Oid;

use super::state::Shared;
use crate::git::GitError;
use crate::git::pool::{Kept, Lease};

/// The slot note holding the stamp of the last setup that passed there.
const SETUP: &str = "setup";

/// A step's worktree, held until it is released or kept.
#[derive(Debug)]
pub(crate) enum Worktree {
    Pooled(Box<Lease>),
    Fresh(PathBuf),
}

impl Worktree {
    pub fn path(&self) -> &Path {
        match self {
            Worktree::Pooled(lease) => &lease.path,
            Worktree::Fresh(path) => path,
        }
    }

    /// The stamp of the last `setup` that passed in this slot (`None` for a new slot or a
    /// fresh worktree).
    pub fn setup_stamp(&self) -> Option<&str> {
        match self {
            Worktree::Pooled(lease) if !lease.made => {
                lease.state.notes.get(SETUP).map(String::as_str)
            }
            _ => None,
        }
    }

    /// Records (or, with `None`, forgets) that setup passed here on these files.
    pub fn set_setup_stamp(&mut self, stamp: Option<String>) {
        if let Worktree::Pooled(lease) = self {
            match stamp {
                Some(stamp) => lease.state.notes.insert(SETUP.to_owned(), stamp),
                None => lease.state.notes.remove(SETUP),
            };
            let _ = lease.save();
        }
    }

    /// Nothing runs in it again before it is released, and it was found clean at `head`.
    pub fn mark_clean(&mut self, head: Oid) {
        if let Worktree::Pooled(lease) = self {
            lease.mark_clean(head);
        }
    }

    /// The step is done with it: a slot goes back to the pool, a fresh worktree is removed.
    pub async fn release(self, shared: &Shared) -> Result<(), GitError> {
        match self {
            Worktree::Pooled(lease) => {
                drop(lease);
                Ok(())
            }
            Worktree::Fresh(path) => {
                let repo = shared.repo.clone();
                blocking(move || repo.remove_worktree(&path)).await
            }
        }
    }

    /// The step failed: the worktree stays as it is for a look (a slot until the next run of
    /// the mission; a fresh worktree until the next run's prune or `clean`).
    pub async fn keep(self, shared: &Shared, step: &str) {
        if let Worktree::Pooled(lease) = self {
            let kept = Kept {
                mission: shared.plan.mission.clone(),
                run: shared.run.clone(),
                step: step.to_owned(),
            };
            let _ = super::blocking(move || (*lease).keep(kept)).await;
        }
    }
}

/// A worktree at `base` for `name` (a step id, `step/agent`, or `_final`): a pool slot, or a
/// fresh worktree at `<run>/<name>` when the run (`--fresh-worktrees`) or `fresh` (the step's
/// or mission's `worktree = "fresh"`) asks for one.
pub(crate) async fn acquire(
    shared: &Arc<Shared>,
    name: &str,
    base: Oid,
    fresh: bool,
) -> Result<Worktree, GitError> {
    match shared.pool.as_ref().filter(|_| !fresh) {
        Some(pool) => {
            let pool = pool.clone();
            let mission = shared.plan.mission.clone();
            let run = shared.run.clone();
            blocking(move || pool.lease(base, &mission, &run))
                .await
                .map(|lease| Worktree::Pooled(Box::new(lease)))
        }
        None => {
            let path = shared.worktrees.join(name);
            let repo = shared.repo.clone();
            let made = path.clone();
            blocking(move || repo.add_worktree(&made, base)).await?;
            Ok(Worktree::Fresh(path))
        }
    }
}

/// [`super::blocking`], known by this function's caller.
#[track_caller]
fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, GitError> + Send + 'static,
) -> impl std::future::Future<Output = Result<T, GitError>> {
    let done = super::blocking(work);
    async move {
        done.await.map_err(|e| GitError::Io {
            path: PathBuf::from("worktree"),
            source: std::io::Error::other(e),
        })?
    }
}
