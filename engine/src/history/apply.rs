//! `medley apply`: a run's change (its result, or one step's) written to the working tree as
//! uncommitted changes, refusing to touch a file that differs from the run's base.

use std::path::{Path, PathBuf};

use git2::Oid;

use super::{HistoryError, RunInfo};
use crate::event::Outcome;
use crate::git::{Context as _, GitError, Repo, refs};
use crate::journal;

/// Applies a run's change (its result, or one step's) against the run's base to the working
/// tree, as uncommitted changes. Refuses, naming them, when a file it would touch differs from
/// the run's base. Returns the paths it changed.
pub fn apply(repo: &Repo, info: &RunInfo, step: Option<&str>) -> Result<Vec<String>, HistoryError> {
    let base = repo.find_ref(&refs::run_base(&info.id))?.ok_or_else(|| {
        HistoryError::NoResult(info.id.clone(), "its base ref is gone".to_owned())
    })?;
    let result = match step {
        Some(step) => {
            let passed = || {
                info.steps
                    .iter()
                    .filter(|(_, s)| s.outcome.is_some_and(Outcome::ok))
                    .map(|(id, _)| format!("`{id}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            repo.find_ref(&refs::step_result(&info.id, step))?
                .ok_or_else(|| HistoryError::NoStep {
                    run: info.id.clone(),
                    step: step.to_owned(),
                    passed: passed(),
                })?
        }
        None => {
            let branch = info.result_branch.clone().ok_or_else(|| {
                HistoryError::NoResult(info.id.clone(), format!("it {}", info.status()))
            })?;
            repo.find_ref(&refs::branch(&branch))?.ok_or_else(|| {
                HistoryError::NoResult(info.id.clone(), format!("branch `{branch}` is gone"))
            })?
        }
    };
    let git = repo.open()?;
    let tree = |oid: Oid| {
        git.find_commit(oid)
            .and_then(|c| c.tree())
            .context(|| format!("read commit {oid}"))
    };
    let (base_tree, result_tree) = (tree(base)?, tree(result)?);
    let diff = git
        .diff_tree_to_tree(Some(&base_tree), Some(&result_tree), None)
        .context(|| "diff the result".to_owned())?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(path) = file.path()
                && !paths.iter().any(|p| p == path)
            {
                paths.push(path.to_owned());
            }
        }
    }
    // The working tree as `git add -A` would store it (filters, eol, sparse entries), so a
    // file counts as unchanged exactly when git would say so.
    let current = crate::git::snapshot::add_all(&repo.root, &git.path().join("index"))?;
    let current = git
        .find_tree(current.tree)
        .context(|| "read the working tree's state".to_owned())?;
    let entry = |tree: &git2::Tree<'_>, path: &Path| {
        tree.get_path(path).ok().map(|e| (e.id(), e.filemode()))
    };
    let differing: Vec<String> = paths
        .iter()
        .filter(|p| entry(&current, p) != entry(&base_tree, p))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if !differing.is_empty() {
        return Err(HistoryError::LocalChanges(differing));
    }
    // Removed files go; the others are written by git as checkout writes them (smudge
    // filters, eol, modes, symlinks), leaving the index alone.
    let (gone, written): (Vec<&PathBuf>, Vec<&PathBuf>) =
        paths.iter().partition(|p| result_tree.get_path(p).is_err());
    for path in gone {
        let full = repo.root.join(path);
        if fs_err::symlink_metadata(&full).is_ok() {
            fs_err::remove_file(&full).map_err(|source| HistoryError::Io {
                path: full.clone(),
                source,
            })?;
        }
    }
    if !written.is_empty() {
        restore(&repo.root, result, &written)?;
    }
    let touched: Vec<String> = paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let marker = journal::runs_dir(&repo.git_dir)
        .join(&info.id)
        .join("applied");
    let _ = fs_err::write(marker, step.unwrap_or("result"));
    Ok(touched)
}

/// `git restore --source=COMMIT --worktree` of `paths` (literal, byte paths): the files as
/// checkout writes them, the index untouched.
fn restore(root: &Path, commit: Oid, paths: &[&PathBuf]) -> Result<(), HistoryError> {
    use std::io::Write as _;
    use std::os::unix::ffi::OsStrExt as _;
    let mut child = crate::git::command(root)
        .args([
            "restore",
            "--worktree",
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
        ])
        .arg(format!("--source={commit}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| HistoryError::Io {
            path: PathBuf::from("git"),
            source,
        })?;
    let mut list = Vec::new();
    for path in paths {
        list.extend_from_slice(b":(literal)");
        list.extend_from_slice(path.as_os_str().as_bytes());
        list.push(0);
    }
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&list);
    }
    let out = child
        .wait_with_output()
        .map_err(|source| HistoryError::Io {
            path: PathBuf::from("git"),
            source,
        })?;
    if !out.status.success() {
        return Err(GitError::Cli {
            args: "restore --worktree".to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }
        .into());
    }
    Ok(())
}
