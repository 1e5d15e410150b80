//! Commits of what a worktree holds: a step attempt's whole tree on top of its parent, with
//! medley's signature; a clean worktree's tree is its HEAD's, with no `git add`.

use std::path::Path;

use git2::{Oid, Repository, Signature};

use super::{Context as _, GitError, Repo, Result, snapshot};

impl Repo {
    /// Commits the whole state of a worktree (tracked and untracked-not-ignored files, as
    /// `git add -A` would store them) on top of `parent`, whatever the worktree's own HEAD and
    /// index say. Returns the commit, how many files differ from `parent`, and whether the
    /// worktree was clean at its HEAD. A nested
    /// repository the worktree gained is an error: its files could not be in the commit.
    pub fn commit_worktree(
        &self,
        worktree: &Path,
        parent: Oid,
        message: &str,
    ) -> Result<Committed> {
        let repo = Repo::open_worktree(worktree)?;
        // A worktree git would call clean holds its HEAD's tree: no `git add` needed.
        let clean = clean_tree(&repo);
        let added = match clean {
            Some((_, tree)) => snapshot::Added {
                tree,
                embedded: Vec::new(),
            },
            None => {
                snapshot::add_all(worktree, &repo.path().join("index")).map_err(|e| match e {
                    GitError::NestedRepoWithoutCommit(path) => GitError::NestedRepoInStep(path),
                    e => e,
                })?
            }
        };
        let parent_tree = repo
            .find_commit(parent)
            .and_then(|c| c.tree())
            .context(|| format!("read commit {parent}"))?;
        // The parent's own tree (a step that changed nothing) differs in no file.
        let files = if parent_tree.id() == added.tree {
            0
        } else {
            changed_files(&repo, &parent_tree, added.tree)?
        };
        let commit = commit_tree(&repo, added.tree, &[parent], message)?;
        Ok(Committed {
            commit,
            files,
            clean_at: clean.map(|(head, _)| head),
        })
    }
}

/// How many files `tree` changes from `parent_tree`; a nested repository it gained (a gitlink)
/// is an error: its files could not be in the commit.
fn changed_files(repo: &Repository, parent_tree: &git2::Tree<'_>, tree: Oid) -> Result<usize> {
    let new_tree = repo.find_tree(tree).context(|| "read tree".to_owned())?;
    let diff = repo
        .diff_tree_to_tree(Some(parent_tree), Some(&new_tree), None)
        .context(|| "diff".to_owned())?;
    if let Some(nested) = diff.deltas().find_map(|d| {
        (d.new_file().mode() == git2::FileMode::Commit)
            .then(|| {
                d.new_file()
                    .path()
                    .map(|p| p.to_string_lossy().into_owned())
            })
            .flatten()
    }) {
        return Err(GitError::NestedRepoInStep(nested));
    }
    Ok(diff.deltas().len())
}

/// A worktree's HEAD and its tree when the worktree is clean (no merge or rebase in progress,
/// nothing modified, staged or untracked-not-ignored), as libgit2 sees it in memory; `None`
/// when it is not, or libgit2 cannot tell (a split index, say): then git is asked.
pub fn clean_tree(repo: &Repository) -> Option<(Oid, Oid)> {
    clean_at(repo, true)
}

/// [`clean_tree`] of a working tree: with `write_stat`, the stat data of unchanged files is
/// written back to its index (never for the user's own).
pub(super) fn clean_at(repo: &Repository, write_stat: bool) -> Option<(Oid, Oid)> {
    if repo.state() != git2::RepositoryState::Clean {
        return None;
    }
    let head = repo.head().ok()?.peel_to_commit().ok()?;
    let mut options = git2::StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(false)
        // The stat data of unchanged files is written back to the index (as `git status`
        // does), so the next look compares stat data instead of hashing every file whose
        // entry was racily clean (written in the same instant as the index). Only medley's own
        // worktrees are looked at this way.
        .update_index(write_stat);
    let statuses = repo.statuses(Some(&mut options)).ok()?;
    statuses.is_empty().then(|| (head.id(), head.tree_id()))
}

/// A worktree's tree, committed.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    pub commit: Oid,
    /// How many files it changed.
    pub files: usize,
    /// The worktree's HEAD, when git would call the worktree clean (it changed nothing).
    pub clean_at: Option<Oid>,
}

fn signature(repo: &Repository) -> Result<Signature<'static>> {
    match repo.signature() {
        Ok(sig) => Ok(sig.to_owned()),
        Err(_) => Signature::now("medley", "medley@localhost").context(|| "signature".to_owned()),
    }
}

pub(super) fn commit_tree(
    repo: &Repository,
    tree: Oid,
    parents: &[Oid],
    message: &str,
) -> Result<Oid> {
    let sig = signature(repo)?;
    let tree = repo.find_tree(tree).context(|| "read tree".to_owned())?;
    let parents: Vec<git2::Commit<'_>> = parents
        .iter()
        .map(|p| repo.find_commit(*p).context(|| format!("read commit {p}")))
        .collect::<Result<_>>()?;
    let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
    repo.commit(None, &sig, &sig, message, &tree, &refs)
        .context(|| "commit".to_owned())
}
