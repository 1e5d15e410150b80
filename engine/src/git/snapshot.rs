//! The tree of a working tree as `git add -A` would store it, made through a private copy of
//! its index so that the user's index (or a worktree's) is never written.
//!
//! This is git's own `add`, not a re-implementation: clean filters, `text`/`eol` attributes and
//! `core.autocrlf`, git-lfs pointers, byte (non-UTF-8) paths, skip-worktree and
//! assume-unchanged entries (kept as the index has them: `--sparse` keeps a sparse checkout's
//! entries outside the cone and adds new files there, as `git add --sparse -A` does), split
//! indexes and fsmonitor are all git's business. Nested repositories are what `git add` makes
//! of them: a gitlink for one with a commit, an error for one without.

use std::path::{Path, PathBuf};

use git2::Oid;

use super::{GitError, Result};

/// A working tree's content as a tree in the object database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub tree: Oid,
    /// Nested repositories stored as gitlinks (their files are not in the tree), as `git add`
    /// warns about them.
    pub embedded: Vec<String>,
}

/// `git add -A --sparse` then `git write-tree` in `workdir`, on a private copy of `index` (the
/// working tree's own index file; a missing one starts empty).
pub fn add_all(workdir: &Path, index: &Path) -> Result<Added> {
    let private = tempfile::Builder::new()
        .prefix("medley-index-")
        .tempfile()
        .map_err(|source| GitError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    // git wants to create the index itself (with its own lock file next to it).
    let private_path = private.path().to_owned();
    match fs_err::copy(index, &private_path) {
        // The copy keeps the index's mtime: git trusts an entry's cached stat only when the
        // file is older than the index ("racy git"), so a newer copy would hide an edit made in
        // the same second as the index was written, with the same size.
        Ok(_) => {
            let mtime = fs_err::metadata(index)
                .and_then(|m| m.modified())
                .map_err(|source| GitError::Io {
                    path: index.to_owned(),
                    source,
                })?;
            std::fs::File::options()
                .write(true)
                .open(&private_path)
                .and_then(|f| f.set_modified(mtime))
                .map_err(|source| GitError::Io {
                    path: private_path.clone(),
                    source,
                })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs_err::remove_file(&private_path).map_err(|source| GitError::Io {
                path: private_path.clone(),
                source,
            })?;
        }
        Err(source) => {
            return Err(GitError::Io {
                path: index.to_owned(),
                source,
            });
        }
    }
    let add = git_with_index(
        workdir,
        &private_path,
        &[
            // A split index would be written as a new shared index file in the user's git dir.
            "-c",
            "core.splitIndex=false",
            "-c",
            "advice.addEmbeddedRepo=false",
            "add",
            "-A",
            "--sparse",
        ],
    )?;
    let stderr = String::from_utf8_lossy(&add.stderr).into_owned();
    if !add.status.success() {
        if let Some(path) = no_commit_repo(&stderr) {
            return Err(GitError::NestedRepoWithoutCommit(path));
        }
        return Err(GitError::Cli {
            args: "add -A".to_owned(),
            stderr: stderr.trim().to_owned(),
        });
    }
    let embedded = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("warning: adding embedded git repository: "))
        .map(|p| p.trim().to_owned())
        .collect();
    let written = git_with_index(workdir, &private_path, &["write-tree"])?;
    if !written.status.success() {
        return Err(GitError::Cli {
            args: "write-tree".to_owned(),
            stderr: String::from_utf8_lossy(&written.stderr).trim().to_owned(),
        });
    }
    let text = String::from_utf8_lossy(&written.stdout);
    let tree = Oid::from_str(text.trim()).map_err(|source| GitError::Git {
        context: format!("read the tree id `git write-tree` printed: {}", text.trim()),
        source,
    })?;
    Ok(Added { tree, embedded })
}

/// `error: 'app/' does not have a commit checked out` names a nested repository `git add`
/// cannot store.
fn no_commit_repo(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|line| {
        let rest = line.strip_prefix("error: '")?;
        let (path, tail) = rest.split_once("' ")?;
        tail.starts_with("does not have a commit checked out")
            .then(|| path.trim_end_matches('/').to_owned())
    })
}

fn git_with_index(workdir: &Path, index: &Path, args: &[&str]) -> Result<std::process::Output> {
    super::command(workdir)
        .args(args)
        .env("GIT_INDEX_FILE", absolute(index))
        // Its messages are read (nested repositories), so they must not be translated.
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| GitError::Io {
            path: PathBuf::from("git"),
            source,
        })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::no_commit_repo;
    use crate::git::Repo;

    /// Both ways of making a snapshot give what `git add -A` stores, and neither writes the
    /// user's index: clean, with an untracked file, an ignored one, an edit, a staged edit.
    #[test]
    fn a_snapshot_is_git_adds_tree_whether_libgit2_looks_first_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let git = |args: &[&str]| crate::git::test_git(root, args);
        git(&["init", "-q"]);
        fs_err::write(root.join(".gitignore"), "target/\n").unwrap();
        fs_err::write(root.join("a.txt"), "a\n").unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "c"]);
        let repo = Repo::discover(root).unwrap();
        let head = git(&["rev-parse", "HEAD"]).trim().to_owned();
        let index = root.join(".git/index");
        let tree = |commit: git2::Oid| git(&["rev-parse", &format!("{commit}^{{tree}}")]);
        let check = |wanted_files: &str| {
            let before = (
                fs_err::read(&index).unwrap(),
                fs_err::metadata(&index).unwrap().modified().unwrap(),
            );
            let looked = repo.snapshot_with(true).unwrap().commit;
            let asked = repo.snapshot_with(false).unwrap().commit;
            assert_eq!(tree(looked), tree(asked));
            let files = git(&["ls-tree", "-r", "--name-only", &looked.to_string()]);
            assert_eq!(files, wanted_files);
            let after = (
                fs_err::read(&index).unwrap(),
                fs_err::metadata(&index).unwrap().modified().unwrap(),
            );
            assert!(before == after, "the user's index was written");
            looked
        };
        assert_eq!(
            check(".gitignore\na.txt\n").to_string(),
            head,
            "clean: HEAD itself"
        );
        fs_err::create_dir_all(root.join("target")).unwrap();
        fs_err::write(root.join("target/out"), "built\n").unwrap();
        assert_eq!(
            check(".gitignore\na.txt\n").to_string(),
            head,
            "ignored files do not count"
        );
        fs_err::write(root.join("new.txt"), "new\n").unwrap();
        assert_ne!(check(".gitignore\na.txt\nnew.txt\n").to_string(), head);
        fs_err::remove_file(root.join("new.txt")).unwrap();
        fs_err::write(root.join("a.txt"), "edited\n").unwrap();
        assert_ne!(check(".gitignore\na.txt\n").to_string(), head);
        git(&["add", "a.txt"]);
        fs_err::write(root.join("a.txt"), "a\n").unwrap();
        // Staged, then undone in the working tree: `git add -A` stores the working tree's.
        assert_eq!(check(".gitignore\na.txt\n").to_string(), head);
        // A sparse checkout: what is outside it stays in the snapshot.
        fs_err::create_dir_all(root.join("docs")).unwrap();
        fs_err::write(root.join("docs/d.txt"), "d\n").unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "docs"]);
        git(&[
            "sparse-checkout",
            "set",
            "--no-cone",
            "/a.txt",
            "/.gitignore",
        ]);
        assert!(!root.join("docs/d.txt").exists());
        let head = git(&["rev-parse", "HEAD"]).trim().to_owned();
        let files = ".gitignore\na.txt\ndocs/d.txt\n";
        assert_eq!(check(files).to_string(), head);
    }

    /// An edit in the same second as the index was written, keeping the file's size and mtime,
    /// is seen, as `git add` on the user's own index sees it.
    #[test]
    fn a_racily_clean_edit_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let git = |args: &[&str]| crate::git::test_git(root, args);
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let set_mtime = |path: &std::path::Path| {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(old)
                .unwrap();
        };
        git(&["init", "-q"]);
        let file = root.join("lock.txt");
        fs_err::write(&file, "v1\n").unwrap();
        set_mtime(&file);
        git(&["add", "lock.txt"]);
        git(&["commit", "-q", "-m", "c"]);
        // The same size and mtime, and an index written in that same second: racily clean.
        fs_err::write(&file, "v2\n").unwrap();
        set_mtime(&file);
        let index = root.join(".git/index");
        set_mtime(&index);
        let added = super::add_all(root, &index).unwrap();
        let blob = git(&["cat-file", "-p", &format!("{}:lock.txt", added.tree)]);
        assert_eq!(blob, "v2\n");
    }

    #[test]
    fn reads_the_nested_repository_git_add_refuses() {
        let stderr =
            "error: 'app/' does not have a commit checked out\nfatal: adding files failed\n";
        assert_eq!(no_commit_repo(stderr).as_deref(), Some("app"));
        assert_eq!(no_commit_repo("fatal: something else\n"), None);
    }
}
