//! Registered git worktrees: added detached at a commit, removed, pruned (adds run in
//! parallel; a prune waits for them).

use std::path::{Path, PathBuf};

use git2::Oid;

use super::{GitError, Repo, Result, WORKTREES};

impl Repo {
    /// Adds a detached worktree at `path` checked out at `commit` (`git worktree add`).
    ///
    /// Adds run in parallel; a prune waits for them (a prune running while `git worktree add`
    /// is half done removes it). An add that fails anyway, e.g. by a prune from another medley
    /// process, is tried again.
    pub fn add_worktree(&self, path: &Path, commit: Oid) -> Result<()> {
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).map_err(|source| GitError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        let mut tries = 0;
        loop {
            let added = {
                let _shared = WORKTREES.read().unwrap_or_else(|e| e.into_inner());
                self.git(&[
                    "worktree",
                    "add",
                    "--detach",
                    "--quiet",
                    &path.to_string_lossy(),
                    &commit.to_string(),
                ])
            };
            match added {
                Ok(_) => return Ok(()),
                Err(e) if tries >= 2 => return Err(e),
                Err(_) => {
                    tries += 1;
                    let _ = fs_err::remove_dir_all(path);
                    self.prune_worktrees()?;
                    std::thread::sleep(std::time::Duration::from_millis(20 * tries));
                }
            }
        }
    }

    /// Removes a worktree's directory and git's record of it (its admin directory under
    /// `.git/worktrees`), without a `git` process when the worktree is one of ours and intact.
    pub fn remove_worktree(&self, path: &Path) -> Result<()> {
        // Reused handles on it would outlive it (a fresh worktree's path is never used again).
        Repo::forget_handles(path);
        if !path.exists() {
            return Ok(());
        }
        let admin = fs_err::read_to_string(path.join(".git"))
            .ok()
            .and_then(|text| {
                text.strip_prefix("gitdir:")
                    .map(|d| PathBuf::from(d.trim()))
            })
            .filter(|admin| admin.starts_with(self.git_dir.join("worktrees")) && admin.is_dir());
        if let Some(admin) = admin {
            let removed =
                fs_err::remove_dir_all(path).and_then(|()| fs_err::remove_dir_all(&admin));
            if removed.is_ok() {
                return Ok(());
            }
        }
        let removed = self.git(&[
            "worktree",
            "remove",
            "--force",
            "--force",
            &path.to_string_lossy(),
        ]);
        if removed.is_err() || path.exists() {
            if path.exists() {
                fs_err::remove_dir_all(path).map_err(|source| GitError::Io {
                    path: path.to_owned(),
                    source,
                })?;
            }
            self.prune_worktrees()?;
        }
        Ok(())
    }

    /// Forgets worktrees whose directories are gone (`git worktree prune`).
    pub fn prune_worktrees(&self) -> Result<()> {
        let _exclusive = WORKTREES.write().unwrap_or_else(|e| e.into_inner());
        self.git(&["worktree", "prune"]).map(|_| ())
    }
}
