//! What a slot's reset must know and clear beyond git's own commands: whether the rules for
//! writing its files changed, and what an interrupted operation left in its admin directory.

use std::path::{Path, PathBuf};

use git2::Oid;

use super::git_in;

/// Whether the `.gitattributes` files that decide how the slot's files were written differ from
/// the base's: between its HEAD (or the base it was last reset to) and `base`, or edited in
/// the worktree. Decided in memory with libgit2; when libgit2 cannot read the worktree (e.g. a
/// split index), by `git diff`.
pub(super) fn attributes_changed(slot: &Path, last: Option<&str>, base: Oid) -> bool {
    let in_memory = || -> std::result::Result<bool, git2::Error> {
        let repo = git2::Repository::open(slot)?;
        let base_tree = repo.find_commit(base)?.tree()?;
        let head = repo.head()?.peel_to_commit()?.id();
        let mut olds = vec![head];
        if let Some(last) = last.and_then(|l| Oid::from_str(l).ok()) {
            olds.push(last);
        }
        for old in olds.into_iter().filter(|old| *old != base) {
            let tree = repo.find_commit(old)?.tree()?;
            let mut options = git2::DiffOptions::new();
            options.pathspec("*.gitattributes");
            if repo
                .diff_tree_to_tree(Some(&tree), Some(&base_tree), Some(&mut options))?
                .deltas()
                .len()
                > 0
            {
                return Ok(true);
            }
        }
        let mut options = git2::StatusOptions::new();
        options
            .pathspec("*.gitattributes")
            .include_untracked(true)
            .include_ignored(false);
        Ok(!repo.statuses(Some(&mut options))?.is_empty())
    };
    in_memory().unwrap_or_else(|_| {
        let base = base.to_string();
        git_in(
            slot,
            &["diff", "--quiet", "HEAD", &base, "--", "*.gitattributes"],
        )
        .is_err()
            || git_in(slot, &["diff", "--quiet", "HEAD", "--", "*.gitattributes"]).is_err()
    })
}

/// Removes what an interrupted merge, rebase, cherry-pick, revert or bisect left in a
/// worktree's admin directory (`reset --hard` clears only some of it).
pub(super) fn clear_operation_state(worktree: &Path) {
    let Some(admin) = fs_err::read_to_string(worktree.join(".git"))
        .ok()
        .and_then(|t| t.strip_prefix("gitdir:").map(|d| PathBuf::from(d.trim())))
    else {
        return;
    };
    for dir in ["rebase-merge", "rebase-apply", "sequencer"] {
        let _ = fs_err::remove_dir_all(admin.join(dir));
    }
    for file in [
        "MERGE_HEAD",
        "MERGE_MSG",
        "MERGE_MODE",
        "AUTO_MERGE",
        "CHERRY_PICK_HEAD",
        "REVERT_HEAD",
        "BISECT_LOG",
        "BISECT_START",
        "BISECT_NAMES",
        "BISECT_TERMS",
        "BISECT_EXPECTED_REV",
        "BISECT_ANCESTORS_OK",
    ] {
        let _ = fs_err::remove_file(admin.join(file));
    }
}
