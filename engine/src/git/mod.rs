//! git: snapshots of a working tree, merges, commits, refs and worktrees.
//!
//! Object work goes through git2, in memory, never through the user's index. What a working
//! tree holds is read by git itself (`snapshot`: `git add -A` on a private copy of the index),
//! so it is exactly what `git add` stores; worktrees are made with the `git` CLI, so their
//! files are exactly what `git checkout` writes (filters, attributes, LFS). Every git process
//! runs without git's repository-local environment (`env`).
//!
//! Where to look: [`snapshot`] (the run's base), `commit` (an attempt's tree committed),
//! `merge` (results merged onto a base), `conflict` (a conflicted merge checked out for a merge
//! agent, and its markers), [`refs`] (every ref's name), `worktree` (adding and removing
//! worktrees), [`pool`] (warm worktrees), [`env`] (git's variables kept away).

mod commit;
mod conflict;
pub mod env;
mod merge;
pub mod pool;
pub mod refs;
pub mod snapshot;
mod worktree;

use commit::commit_tree;
pub use commit::{Committed, clean_tree};

pub use conflict::has_markers;
pub use merge::{MergeOutcome, Sides};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use git2::{DiffFormat, DiffOptions, ErrorCode, Oid, Repository};

/// Why a git operation failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum GitError {
    #[error("`{0}` is not inside a git repository")]
    #[diagnostic(help("run medley inside a git repository (`git init` makes one)"))]
    NotARepo(PathBuf),
    #[error("`{0}` is a bare repository")]
    #[diagnostic(help("run medley in a repository with a working tree"))]
    Bare(PathBuf),
    #[error("the repository has no commits yet")]
    #[diagnostic(help("make a first commit (`git commit --allow-empty -m init`), then run again"))]
    NoCommits,
    #[error("`{0}` does not name a commit in this repository")]
    #[diagnostic(help("give a branch, tag or commit id that `git rev-parse` knows"))]
    BadRef(String),
    #[error("a branch named `medley` blocks medley's result branches `medley/<mission>/<run>`")]
    #[diagnostic(help("rename it, e.g. `git branch -m medley medley-old`, then run again"))]
    BranchBlocked,
    #[error("git failed: {context}")]
    Git {
        context: String,
        #[source]
        source: git2::Error,
    },
    #[error("`git {args}` failed: {stderr}")]
    Cli { args: String, stderr: String },
    #[error(
        "`{0}/` is a git repository with no commit: git cannot store it (`git add` refuses it \
         too); make a commit in it, remove its `.git`, or add it to `.gitignore`"
    )]
    NestedRepoWithoutCommit(String),
    #[error(
        "the step made `{0}/` a git repository of its own: git would store only a link to its \
         commit, not its files, so the step's result cannot hold them; do not run `git init` or \
         `git clone` inside the worktree (or remove `{0}/.git` before the step ends)"
    )]
    NestedRepoInStep(String),
    #[error("cannot read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, GitError>;

/// `git -C DIR`, without git's repository-local environment (`env`): every git process medley
/// starts is made here.
pub fn command(dir: &Path) -> Command {
    let mut command = Command::new("git");
    env::scrub(&mut command).arg("-C").arg(dir);
    command
}

/// Runs `git -C DIR ARGS...` (see [`command`]); its stdout, or its stderr as the error.
pub fn run(dir: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = command(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| GitError::Io {
            path: PathBuf::from("git"),
            source,
        })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(GitError::Cli {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Open libgit2 handles not in use, by repository root (see [`Repo::open`]).
static HANDLES: std::sync::Mutex<std::collections::BTreeMap<PathBuf, Vec<Repository>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// A libgit2 handle from [`Repo::open`]; it goes back for reuse when dropped.
pub struct Handle {
    repo: Option<Repository>,
    root: PathBuf,
}

impl std::ops::Deref for Handle {
    type Target = Repository;
    fn deref(&self) -> &Repository {
        self.repo
            .as_ref()
            .expect("a handle holds its repository until dropped")
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let (Some(repo), Ok(mut handles)) = (self.repo.take(), HANDLES.lock()) {
            let free = handles.entry(self.root.clone()).or_default();
            // As many as steps run at once, about; more would only hold memory.
            if free.len() < 16 {
                free.push(repo);
            }
        }
    }
}

/// Worktree adds share this lock; a prune takes it alone (see [`Repo::add_worktree`]).
static WORKTREES: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Adds context to git2 errors.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, git2::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| GitError::Git {
            context: what(),
            source,
        })
    }
}

/// The user's repository: where its working tree and its (common) git dir are.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The top of the working tree.
    pub root: PathBuf,
    /// The common git dir (`.git`), shared by every worktree.
    pub git_dir: PathBuf,
}

impl Repo {
    /// Finds the repository containing `cwd` as git does with none of its environment set: the
    /// working tree is the directory holding `.git` (a directory, or a file naming a separate
    /// git dir), or `core.worktree`. `GIT_DIR` and `GIT_WORK_TREE` are not read.
    ///
    /// git is asked once per directory in a process (a run asks for its CLI and for its
    /// engine); a repository found is remembered, an error is not.
    pub fn discover(cwd: &Path) -> Result<Repo> {
        static FOUND: std::sync::Mutex<BTreeMap<PathBuf, Repo>> =
            std::sync::Mutex::new(BTreeMap::new());
        let found = FOUND.lock().ok().and_then(|f| f.get(cwd).cloned());
        if let Some(repo) = found.filter(|r| r.git_dir.is_dir()) {
            return Ok(repo);
        }
        let repo = Repo::ask_git(cwd)?;
        if let Ok(mut found) = FOUND.lock() {
            found.insert(cwd.to_owned(), repo.clone());
        }
        Ok(repo)
    }

    fn ask_git(cwd: &Path) -> Result<Repo> {
        // libgit2 takes a separate git dir's parent for the working tree; git itself is asked.
        let out = command(cwd)
            .args([
                "rev-parse",
                "--path-format=absolute",
                "--is-bare-repository",
                "--git-common-dir",
                "--show-toplevel",
            ])
            .env("LC_ALL", "C")
            .output()
            .map_err(|source| GitError::Io {
                path: PathBuf::from("git"),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        match (lines.next(), lines.next(), lines.next()) {
            (Some("true"), Some(git_dir), _) => Err(GitError::Bare(PathBuf::from(git_dir))),
            (Some("false"), Some(git_dir), Some(root)) if out.status.success() => {
                use std::os::unix::ffi::OsStrExt as _;
                // Byte-exact paths: rev-parse prints them raw, one per line.
                let raw: Vec<&[u8]> = out.stdout.split(|b| *b == b'\n').collect();
                let path = |i: usize, fallback: &str| {
                    raw.get(i).map_or_else(
                        || PathBuf::from(fallback),
                        |b| PathBuf::from(std::ffi::OsStr::from_bytes(b)),
                    )
                };
                Ok(Repo {
                    root: path(2, root),
                    git_dir: path(1, git_dir),
                })
            }
            _ => Err(GitError::NotARepo(cwd.to_owned())),
        }
    }

    /// A libgit2 handle on the repository. Handles are reused (opening one reads config files
    /// and probes dozens of paths, which a cached step would otherwise pay several times):
    /// what a handle reads (refs, objects) is looked up on disk each time, so a reused one sees
    /// what other handles and git processes wrote.
    pub fn open(&self) -> Result<Handle> {
        let reused = HANDLES
            .lock()
            .ok()
            .and_then(|mut h| h.get_mut(&self.root).and_then(Vec::pop));
        let repo = match reused {
            Some(repo) => repo,
            None => {
                let repo = Repository::open(&self.root)
                    .context(|| format!("open {}", self.root.display()))?;
                // What git says the working tree is, not libgit2's guess.
                repo.set_workdir(&self.root, false)
                    .context(|| format!("open {}", self.root.display()))?;
                repo
            }
        };
        Ok(Handle {
            repo: Some(repo),
            root: self.root.clone(),
        })
    }

    /// A handle on one of medley's worktrees (a pool slot), reused like [`Repo::open`]'s: a
    /// step looks at its slot several times (is it clean, commit it), and each fresh open
    /// reads the config files and probes dozens of paths.
    pub fn open_worktree(path: &Path) -> Result<Handle> {
        let reused = HANDLES
            .lock()
            .ok()
            .and_then(|mut h| h.get_mut(path).and_then(Vec::pop));
        let repo = match reused {
            Some(repo) => repo,
            None => Repository::open(path).context(|| format!("open {}", path.display()))?,
        };
        Ok(Handle {
            repo: Some(repo),
            root: path.to_owned(),
        })
    }

    /// Forgets the reused handles on a worktree that is removed (and may be made again).
    pub fn forget_handles(path: &Path) {
        if let Ok(mut handles) = HANDLES.lock() {
            handles.remove(path);
        }
    }

    /// A short stable id for this repository, for paths outside it: `<name>-<hash>`.
    pub fn id(&self) -> String {
        let canonical = self.git_dir.canonicalize().unwrap_or(self.git_dir.clone());
        let hash = blake3::hash(canonical.as_os_str().as_encoded_bytes());
        let name: String = self
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        format!("{name}-{}", &hash.to_hex()[..12])
    }

    /// The commit a ref names (`--base REF`).
    pub fn resolve(&self, name: &str) -> Result<Oid> {
        let repo = self.open()?;
        let object = repo
            .revparse_single(name)
            .map_err(|_| GitError::BadRef(name.to_owned()))?;
        let commit = object
            .peel_to_commit()
            .map_err(|_| GitError::BadRef(name.to_owned()))?;
        Ok(commit.id())
    }

    /// The working tree as it is (committed, staged, unstaged and untracked-not-ignored files,
    /// as `git add -A` would store them) as a commit on top of HEAD; HEAD itself when nothing
    /// differs. Touches no file, ref or index of the user's. `embedded` names nested
    /// repositories stored as gitlinks.
    pub fn snapshot(&self) -> Result<Snapshot> {
        self.snapshot_with(libgit2_reads_gits_config())
    }

    /// [`Repo::snapshot`]; with `look`, a working tree that libgit2 (in memory, writing
    /// nothing) finds clean is HEAD's without asking git. libgit2 says clean only when git
    /// would: an edit it cannot judge (a filter it does not run, a split index) reads as
    /// changed, and then `git add` decides.
    fn snapshot_with(&self, look: bool) -> Result<Snapshot> {
        let repo = self.open()?;
        let head = match repo.head() {
            Ok(head) => head.peel_to_commit().context(|| "read HEAD".to_owned())?,
            Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => {
                return Err(GitError::NoCommits);
            }
            Err(e) => return Err(e).context(|| "read HEAD".to_owned()),
        };
        if look && commit::clean_at(&repo, false).is_some_and(|(at, _)| at == head.id()) {
            return Ok(Snapshot {
                commit: head.id(),
                embedded: Vec::new(),
            });
        }
        let added = snapshot::add_all(&self.root, &repo.path().join("index"))?;
        let commit = if added.tree == head.tree_id() {
            head.id()
        } else {
            commit_tree(
                &repo,
                added.tree,
                &[head.id()],
                "medley: snapshot of the working tree",
            )?
        };
        Ok(Snapshot {
            commit,
            embedded: added.embedded,
        })
    }

    /// Points `name` at `oid` (creating or moving it).
    pub fn set_ref(&self, name: &str, oid: Oid, log: &str) -> Result<()> {
        let repo = self.open()?;
        repo.reference(name, oid, true, log)
            .context(|| format!("set {name}"))?;
        Ok(())
    }

    pub fn find_ref(&self, name: &str) -> Result<Option<Oid>> {
        let repo = self.open()?;
        match repo.refname_to_id(name) {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e).context(|| format!("read {name}")),
        }
    }

    /// The names of every ref under `prefix` (e.g. `refs/heads/medley/`).
    pub fn list_refs(&self, prefix: &str) -> Result<Vec<String>> {
        let repo = self.open()?;
        let names = repo
            .references_glob(&format!("{prefix}*"))
            .context(|| format!("list {prefix}"))?
            .filter_map(|r| r.ok()?.name().ok().map(str::to_owned))
            .collect();
        Ok(names)
    }

    /// Deletes every ref under `prefix` (e.g. `refs/medley/<run>/`); returns how many.
    pub fn delete_refs(&self, prefix: &str) -> Result<usize> {
        let repo = self.open()?;
        let mut count = 0;
        let names: Vec<String> = repo
            .references_glob(&format!("{prefix}*"))
            .context(|| format!("list {prefix}"))?
            .filter_map(|r| r.ok()?.name().ok().map(str::to_owned))
            .collect();
        for name in names {
            if let Ok(mut r) = repo.find_reference(&name) {
                r.delete().context(|| format!("delete {name}"))?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// Fails when a branch named `medley` exists: it would block `medley/<mission>/<run>`.
    pub fn check_branch_namespace(&self) -> Result<()> {
        match self.find_ref(refs::BRANCH_ROOT)? {
            Some(_) => Err(GitError::BranchBlocked),
            None => Ok(()),
        }
    }

    /// Paths that differ between two commits.
    pub fn changed_files(&self, from: Oid, to: Oid) -> Result<Vec<String>> {
        let repo = self.open()?;
        let diff = tree_diff(&repo, from, to)?;
        let mut files = BTreeSet::new();
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                if let Some(path) = file.path()
                    && !file.id().is_zero()
                {
                    files.insert(path.to_string_lossy().into_owned());
                }
            }
        }
        Ok(files.into_iter().collect())
    }

    /// The unified diff between two commits.
    pub fn diff_text(&self, from: Oid, to: Oid) -> Result<String> {
        let repo = self.open()?;
        let diff = tree_diff(&repo, from, to)?;
        let mut text = Vec::new();
        diff.print(DiffFormat::Patch, |_, _, line| {
            if matches!(line.origin(), '+' | '-' | ' ') {
                text.push(line.origin() as u8);
            }
            text.extend_from_slice(line.content());
            true
        })
        .context(|| "print diff".to_owned())?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// A file's text at a commit (for the `file(path)` template function).
    pub fn read_file(&self, commit: Oid, path: &str) -> std::result::Result<String, String> {
        let repo = self.open().map_err(|e| e.to_string())?;
        let tree = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(|e| e.to_string())?;
        let entry = tree
            .get_path(Path::new(path))
            .map_err(|_| format!("no file `{path}` in the step's base"))?;
        let blob = entry
            .to_object(&repo)
            .and_then(|o| o.peel_to_blob())
            .map_err(|_| format!("`{path}` is not a file"))?;
        Ok(String::from_utf8_lossy(blob.content()).into_owned())
    }

    fn git(&self, args: &[&str]) -> Result<String> {
        run(&self.root, args).map(|out| String::from_utf8_lossy(&out).into_owned())
    }
}

/// Whether `dir` is the top level of a git working tree (it holds `.git`: a directory, or a
/// file for linked worktrees and separate git dirs). No git process: for walking up a tree.
pub fn is_top_level(dir: &Path) -> bool {
    dir.join(".git").exists()
}

/// The ignored files of the working tree (untracked and matched by `.gitignore` and the
/// like), as git lists them: byte paths, relative to the root.
pub fn ignored_files(root: &Path) -> Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStrExt as _;
    let out = run(
        root,
        &[
            "ls-files",
            "-z",
            "--others",
            "--ignored",
            "--exclude-standard",
        ],
    )?;
    Ok(out
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
        .collect())
}

/// A snapshot of the user's working tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub commit: Oid,
    /// Nested repositories stored as gitlinks, as `git add` stores them (their files are not
    /// in the snapshot).
    pub embedded: Vec<String>,
}

/// Whether libgit2 reads the configuration git reads (what is ignored, line endings): not
/// when git's environment names other config files, which libgit2 does not read.
fn libgit2_reads_gits_config() -> bool {
    [
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_CONFIG_NOSYSTEM",
    ]
    .iter()
    .all(|name| std::env::var_os(name).is_none())
}

/// The tree of commit `oid`.
fn tree_of(repo: &Repository, oid: Oid) -> Result<git2::Tree<'_>> {
    repo.find_commit(oid)
        .and_then(|c| c.tree())
        .context(|| format!("read commit {oid}"))
}

fn tree_diff<'r>(repo: &'r Repository, from: Oid, to: Oid) -> Result<git2::Diff<'r>> {
    let tree = |oid: Oid| tree_of(repo, oid);
    let mut options = DiffOptions::new();
    options.context_lines(3);
    repo.diff_tree_to_tree(Some(&tree(from)?), Some(&tree(to)?), Some(&mut options))
        .context(|| "diff".to_owned())
}

/// medley commits as the repository's configured user, else `medley <medley@localhost>`.
/// Runs git in `dir` for a test's fixture: no user or system config, a fixed author; fails
/// the test when git fails. Returns its stdout.
#[cfg(test)]
pub(crate) fn test_git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
