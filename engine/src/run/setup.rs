//! Readying a worktree at a step's base: the `.worktreeinclude` files copied in, and the
//! mission's `setup` run (skipped where it already passed on the same `setup_files`).

use std::path::Path;
use std::sync::Arc;

use git2::Oid;

use super::blocking;
use super::context::render_shell;
use super::output::{TAIL_BYTES, TAIL_LINES, describe, tail};
use super::state::{Scope, Shared};
use super::worktree::Worktree;
use crate::event::{ErrorKind, StepError};
use crate::process::{self, Exit};

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
    held: &mut Worktree,
    logs: &Path,
    base: Oid,
    setup_log: &str,
) -> Prepared {
    let worktree = &held.path().to_owned();
    if let Err(e) = fs_err::create_dir_all(logs) {
        return Prepared::Failed(StepError::new(ErrorKind::State, e.to_string()));
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
        Ok(Err(e)) => return Prepared::Failed(StepError::new(ErrorKind::Worktree, e.to_string())),
        Err(e) => return Prepared::Failed(StepError::new(ErrorKind::Worktree, e)),
    }
    let Some(setup) = &shared.plan.setup else {
        return Prepared::Ready;
    };
    let step = &shared.plan.steps[i];
    let log = logs.join(setup_log);
    let shell = match render_shell(shared, Scope::Step(i), setup, 1, base).await {
        Ok(c) => c,
        Err(e) => {
            return Prepared::Failed(StepError::new(
                ErrorKind::Template,
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
    let command = shell.display.clone();
    let spec = shared.shell_spec(shell, &step.id, worktree, 1, &log);
    let mut cancel = shared.stops.step_stop(i);
    let ran = process::run(&spec, step.timeout, &mut cancel, shared.grace).await;
    held.set_setup_stamp(match &ran {
        Ok(exit) if exit.success() => stamp,
        _ => None,
    });
    match ran {
        Ok(exit) if exit.success() => Prepared::Ready,
        Ok(Exit::Cancelled) => Prepared::Cancelled,
        Ok(exit) => Prepared::Failed(StepError::new(
            ErrorKind::Setup,
            format!(
                "setup `{command}` {}:\n{}",
                describe(exit),
                tail(&log, TAIL_LINES, TAIL_BYTES)
            ),
        )),
        Err(e) => Prepared::Failed(StepError::new(ErrorKind::Setup, e.to_string())),
    }
}
