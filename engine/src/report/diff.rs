//! A step's change against its base, file by file, as git2 computes it.

use git2::Oid;

use crate::git::{GitError, Repo};

/// The most of one step's diff a report shows; the rest is named, with the command that shows it.
pub const DIFF_LIMIT: usize = 512 * 1024;
/// A step's change, file by file.
#[derive(Debug, Clone, Default)]
pub struct Diff {
    pub base: String,
    pub commit: String,
    pub files: Vec<FileDiff>,
    /// Files left out past [`DIFF_LIMIT`].
    pub omitted: Vec<String>,
}

/// One file's part of a diff.
#[derive(Debug, Clone, Default)]
pub struct FileDiff {
    pub path: String,
    /// The unified diff of this file, its `diff --git` header first.
    pub text: String,
    pub added: usize,
    pub removed: usize,
}

impl Diff {
    /// The command that shows the whole diff.
    pub fn command(&self) -> String {
        format!("git diff {} {}", short(&self.base), short(&self.commit))
    }
}

/// A commit's first 10 characters.
pub fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

/// The diff from `base` to `commit`, file by file (each file's path as git stores it, byte
/// for byte where it is UTF-8), cut at [`DIFF_LIMIT`].
pub fn diff(repo: &Repo, base: &str, commit: &str) -> Result<Diff, GitError> {
    use crate::git::Context as _;
    let oid = |text: &str| Oid::from_str(text).map_err(|_| GitError::BadRef(text.to_owned()));
    let (from, to) = (oid(base)?, oid(commit)?);
    let git = repo.open()?;
    let tree = |oid: Oid| {
        git.find_commit(oid)
            .and_then(|c| c.tree())
            .context(|| format!("read commit {oid}"))
    };
    let mut options = git2::DiffOptions::new();
    options.context_lines(3);
    let changes = git
        .diff_tree_to_tree(Some(&tree(from)?), Some(&tree(to)?), Some(&mut options))
        .context(|| "diff".to_owned())?;
    let mut out = Diff {
        base: base.to_owned(),
        commit: commit.to_owned(),
        ..Diff::default()
    };
    let mut shown = 0;
    for (k, delta) in changes.deltas().enumerate() {
        let path = delta
            .new_file()
            .path()
            .or_else(|| delta.old_file().path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if shown >= DIFF_LIMIT {
            out.omitted.push(path);
            continue;
        }
        let patch = git2::Patch::from_diff(&changes, k).context(|| format!("diff {path}"))?;
        let (text, added, removed) = match patch {
            Some(mut patch) => {
                let (_, added, removed) = patch.line_stats().context(|| format!("diff {path}"))?;
                let buf = patch.to_buf().context(|| format!("diff {path}"))?;
                (String::from_utf8_lossy(&buf).into_owned(), added, removed)
            }
            None => (String::new(), 0, 0),
        };
        shown += text.len();
        out.files.push(FileDiff {
            path,
            text,
            added,
            removed,
        });
    }
    Ok(out)
}
