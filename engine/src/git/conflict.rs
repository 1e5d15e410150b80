//! A conflict made concrete for a merge agent: the merge of two sides written as a commit whose
//! conflicting files hold git's conflict markers, the check that a file still holds a full
//! marker block, and the merge commit of an accepted (or a cached) resolution.

use std::path::Path;

use git2::{IndexEntry, MergeFileOptions, Oid};

use super::merge::Sides;
use super::{Context as _, Repo, Result, commit_tree};

/// The stage bits of an index entry's flags.
const STAGE_MASK: u16 = 0x3000;

impl Repo {
    /// The merge of `sides` as a commit on top of `ours`: every file merged as git merges it,
    /// and each conflicting file with git's markers (`<<<<<<< ours`, `=======`,
    /// `>>>>>>> theirs`, labelled with the steps of each side). A file one side deleted and
    /// the other changed holds the changed side's content.
    pub fn conflicted(&self, sides: &Sides, message: &str) -> Result<Oid> {
        let repo = self.open()?;
        let tree_of = |oid: Oid| super::tree_of(&repo, oid);
        let mut index = repo
            .merge_trees(
                &tree_of(sides.ancestor)?,
                &tree_of(sides.ours)?,
                &tree_of(sides.theirs)?,
                None,
            )
            .context(|| "merge".to_owned())?;
        let conflicts: Vec<git2::IndexConflict> = index
            .conflicts()
            .context(|| "read conflicts".to_owned())?
            .filter_map(|c| c.ok())
            .collect();
        let empty = repo.blob(b"").context(|| "write a blob".to_owned())?;
        let ours_label = sides.ours_label();
        for conflict in conflicts {
            let (resolved, path) = match (conflict.ancestor, conflict.our, conflict.their) {
                (ancestor, Some(our), Some(their)) => {
                    // Added on both sides: merged against an empty file.
                    let ancestor = ancestor.unwrap_or_else(|| like(&our, empty, 0));
                    let mut options = MergeFileOptions::new();
                    options
                        .ancestor_label("base")
                        .our_label(&ours_label)
                        .their_label(&sides.theirs_step);
                    let merged = repo
                        .merge_file_from_index(&ancestor, &our, &their, Some(&mut options))
                        .context(|| "merge a conflicting file".to_owned())?;
                    let content = merged.content().to_vec();
                    let id = repo.blob(&content).context(|| "write a blob".to_owned())?;
                    let path = our.path.clone();
                    let size = u32::try_from(content.len()).unwrap_or(u32::MAX);
                    (like(&our, id, size), path)
                }
                (_, Some(side), None) | (_, None, Some(side)) => {
                    let path = side.path.clone();
                    (side, path)
                }
                (_, None, None) => continue,
            };
            let path_text = String::from_utf8_lossy(&path).into_owned();
            index
                .conflict_remove(Path::new(&path_text))
                .context(|| format!("resolve `{path_text}`"))?;
            let entry = like(&resolved, resolved.id, resolved.file_size);
            index
                .add(&entry)
                .context(|| format!("write `{path_text}`"))?;
        }
        let tree = index
            .write_tree_to(&repo)
            .context(|| "write the conflicted tree".to_owned())?;
        commit_tree(&repo, tree, &[sides.ours], message)
    }

    /// The merge commit of a resolution: `resolved`'s tree, with both sides as its parents.
    pub fn resolution(&self, resolved: Oid, sides: &Sides, message: &str) -> Result<Oid> {
        let repo = self.open()?;
        let tree = repo
            .find_commit(resolved)
            .map(|c| c.tree_id())
            .context(|| format!("read commit {resolved}"))?;
        commit_tree(&repo, tree, &[sides.ours, sides.theirs], message)
    }

    /// The parents of a commit, in order.
    pub fn parents_of(&self, commit: Oid) -> Result<Vec<Oid>> {
        let repo = self.open()?;
        repo.find_commit(commit)
            .map(|c| c.parent_ids().collect())
            .context(|| format!("read commit {commit}"))
    }

    /// The tree of a commit.
    pub fn tree_of(&self, commit: Oid) -> Result<Oid> {
        let repo = self.open()?;
        repo.find_commit(commit)
            .map(|c| c.tree_id())
            .context(|| format!("read commit {commit}"))
    }
}

impl Sides {
    /// The steps of the first side: those that changed a conflicting file, or (when none did
    /// since the run's base, as when the sides share history) every step merged into it.
    pub fn first_side(&self) -> Vec<String> {
        if self.ours_steps.is_empty() {
            let n = self.merged.len().saturating_sub(1);
            self.merged[..n].iter().map(|(s, _)| s.clone()).collect()
        } else {
            self.ours_steps.clone()
        }
    }

    /// How the first side's markers name it: its steps.
    pub fn ours_label(&self) -> String {
        self.first_side().join(", ")
    }
}

/// An index entry like `entry`, at stage 0, holding blob `id` of `size` bytes.
fn like(entry: &IndexEntry, id: Oid, size: u32) -> IndexEntry {
    IndexEntry {
        ctime: entry.ctime,
        mtime: entry.mtime,
        dev: entry.dev,
        ino: entry.ino,
        mode: entry.mode,
        uid: entry.uid,
        gid: entry.gid,
        file_size: size,
        id,
        flags: entry.flags & !STAGE_MASK,
        flags_extended: entry.flags_extended,
        path: entry.path.clone(),
    }
}

/// Whether `text` still holds a full conflict block as git writes it: a line starting
/// `<<<<<<<`, then (after an optional diff3 `|||||||` line) a line that is exactly `=======`,
/// then a line starting `>>>>>>>`. A `=======` alone (a Markdown heading's underline) or a
/// stray `<<<<<<<` is not a conflict.
pub fn has_markers(text: &[u8]) -> bool {
    let marker = |line: &[u8], c: u8| {
        line.len() >= 7
            && line[..7].iter().all(|&b| b == c)
            && (line.len() == 7 || line[7] == b' ' || line[7] == b'\t')
    };
    // 0: outside a block; 1: after `<<<<<<<`; 2: after `=======`.
    let mut state = 0;
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if marker(line, b'<') {
            state = 1;
        } else if state == 1 && line == b"=======" {
            state = 2;
        } else if state == 2 && marker(line, b'>') {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::has_markers;
    use crate::git::{MergeOutcome, Repo};

    /// Two branches from one base: one edits, adds and deletes what the other edits and adds
    /// too; the conflicted commit holds markers where both changed lines, the changed side of
    /// a file the other deleted, and every clean change of both.
    #[test]
    fn a_conflict_is_written_with_markers_labelled_by_the_steps() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let git = |args: &[&str]| crate::git::test_git(root, args);
        let commit = |files: &[(&str, Option<&str>)]| {
            for (path, text) in files {
                match text {
                    Some(t) => fs_err::write(root.join(path), t).unwrap(),
                    None => fs_err::remove_file(root.join(path)).unwrap(),
                }
            }
            git(&["add", "-A"]);
            git(&["commit", "-q", "-m", "c"]);
            git(&["rev-parse", "HEAD"]).trim().to_owned()
        };
        git(&["init", "-q"]);
        let base = commit(&[
            ("same.txt", Some("one\ntwo\nthree\n")),
            ("gone.txt", Some("keep\n")),
        ]);
        let a = commit(&[
            ("same.txt", Some("one\nA\nthree\n")),
            ("new.txt", Some("a\n")),
            ("gone.txt", Some("changed\n")),
            ("only-a.txt", Some("a\n")),
        ]);
        git(&["checkout", "-q", &base]);
        let b = commit(&[
            ("same.txt", Some("one\nB\nthree\n")),
            ("new.txt", Some("b\n")),
            ("gone.txt", None),
        ]);
        let repo = Repo::discover(root).unwrap();
        let oid = |s: &str| git2::Oid::from_str(s).unwrap();
        let results = vec![("a".to_owned(), oid(&a)), ("b".to_owned(), oid(&b))];
        let MergeOutcome::Conflict { files, sides, .. } = repo.merge(oid(&base), &results).unwrap()
        else {
            panic!("a conflict");
        };
        assert_eq!(files, ["gone.txt", "new.txt", "same.txt"]);
        let conflicted = repo.conflicted(&sides, "m").unwrap().to_string();
        let show = |path: &str| git(&["show", &format!("{conflicted}:{path}")]);
        assert_eq!(
            show("same.txt"),
            "one\n<<<<<<< a\nA\n=======\nB\n>>>>>>> b\nthree\n"
        );
        assert_eq!(show("new.txt"), "<<<<<<< a\na\n=======\nb\n>>>>>>> b\n");
        assert_eq!(show("gone.txt"), "changed\n");
        assert_eq!(show("only-a.txt"), "a\n");
        assert!(has_markers(show("same.txt").as_bytes()));
        // Its parent is the first side; the resolution's parents are both.
        let parent = git(&["rev-parse", &format!("{conflicted}^")]);
        assert_eq!(parent.trim(), a);
        let merge = repo.resolution(oid(&conflicted), &sides, "m").unwrap();
        let parents = git(&["rev-list", "--parents", "-n", "1", &merge.to_string()]);
        assert_eq!(
            parents.split_whitespace().skip(1).collect::<Vec<_>>(),
            [&a, &b]
        );
    }

    #[test]
    fn a_full_block_is_a_conflict_and_a_lone_underline_is_not() {
        let block = b"a\n<<<<<<< ours\nx\n=======\ny\n>>>>>>> theirs\nb\n";
        assert!(has_markers(block));
        let diff3 = b"<<<<<<< ours\nx\n||||||| base\nw\n=======\ny\n>>>>>>> theirs\n";
        assert!(has_markers(diff3));
        assert!(has_markers(b"<<<<<<<\r\nx\r\n=======\r\ny\r\n>>>>>>>\r\n"));
        assert!(!has_markers(b"Title\n=======\n\ntext\n"));
        assert!(!has_markers(b"<<<<<<< ours\nx\ny\n"));
        assert!(!has_markers(b"=======\n>>>>>>> theirs\n"));
        assert!(!has_markers(b"<<<<<<<< eight\n=======\n>>>>>>> x\n"));
        assert!(!has_markers(b"<<<<<<< a\nx\n======= \ny\n>>>>>>> b\n"));
        assert!(!has_markers(b""));
    }
}
