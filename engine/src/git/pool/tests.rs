//! The pool against real repositories: a property test of resets (random histories, slots
//! left dirty in every way), leases, kept slots, half-reset slots, trimming.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use proptest::prelude::{Just, Strategy, prop, prop_oneof, proptest};
use proptest::test_runner::Config;

use super::*;

use crate::git::test_git as git;

/// A change to the history's working tree.
#[derive(Debug, Clone)]
enum Op {
    Write(usize, String),
    Delete(usize),
    Rename(usize, usize),
    Chmod(usize),
    Symlink(usize, usize),
    /// `x` becomes a directory holding a file (or a file again).
    Flip,
    /// An eol rule in `.gitattributes`, on or off.
    Eol(bool),
}

const PATHS: [&str; 6] = ["a.txt", "b.txt", "d/c.sh", "d/e/f.txt", "x", "x/y.txt"];

fn op() -> impl Strategy<Value = Op> {
    let i = 0..PATHS.len();
    prop_oneof![
        (i.clone(), "[a-z\n]{0,12}").prop_map(|(i, t)| Op::Write(i, t)),
        i.clone().prop_map(Op::Delete),
        (i.clone(), i.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        i.clone().prop_map(Op::Chmod),
        (i.clone(), i).prop_map(|(a, b)| Op::Symlink(a, b)),
        Just(Op::Flip),
        prop::bool::ANY.prop_map(Op::Eol),
    ]
}

/// Makes room for a file at `path`: no file where a parent directory goes, no directory
/// where the file goes.
fn clear_for(root: &Path, path: &str) {
    let full = root.join(path);
    let mut parent = full.parent();
    while let Some(p) = parent {
        if p == root {
            break;
        }
        if p.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
            fs_err::remove_file(p).unwrap();
        }
        parent = p.parent();
    }
    if let Ok(meta) = full.symlink_metadata() {
        if meta.is_dir() {
            fs_err::remove_dir_all(&full).unwrap();
        } else {
            fs_err::remove_file(&full).unwrap();
        }
    }
    fs_err::create_dir_all(full.parent().unwrap()).unwrap();
}

fn apply(root: &Path, op: &Op) {
    let is_file = |p: &str| root.join(p).symlink_metadata().is_ok_and(|m| !m.is_dir());
    match op {
        Op::Write(i, text) => {
            clear_for(root, PATHS[*i]);
            fs_err::write(root.join(PATHS[*i]), text).unwrap();
        }
        Op::Delete(i) if is_file(PATHS[*i]) => fs_err::remove_file(root.join(PATHS[*i])).unwrap(),
        Op::Rename(a, b) if a != b && is_file(PATHS[*a]) => {
            let text = fs_err::read(root.join(PATHS[*a])).unwrap_or_default();
            fs_err::remove_file(root.join(PATHS[*a])).unwrap();
            clear_for(root, PATHS[*b]);
            fs_err::write(root.join(PATHS[*b]), text).unwrap();
        }
        Op::Chmod(i) if is_file(PATHS[*i]) => {
            let full = root.join(PATHS[*i]);
            if full.symlink_metadata().unwrap().file_type().is_symlink() {
                return;
            }
            let mut perms = fs_err::metadata(&full).unwrap().permissions();
            perms.set_mode(perms.mode() ^ 0o111);
            fs_err::set_permissions(&full, perms).unwrap();
        }
        Op::Symlink(a, b) if a != b => {
            clear_for(root, PATHS[*a]);
            std::os::unix::fs::symlink(PATHS[*b], root.join(PATHS[*a])).unwrap();
        }
        Op::Flip => {
            if is_file("x") {
                clear_for(root, "x/y.txt");
                fs_err::write(root.join("x/y.txt"), "in x\n").unwrap();
            } else {
                clear_for(root, "x");
                fs_err::write(root.join("x"), "x is a file\n").unwrap();
            }
        }
        Op::Eol(on) => {
            let rules = if *on { "*.txt text eol=crlf\n" } else { "" };
            fs_err::write(root.join(".gitattributes"), rules).unwrap();
        }
        _ => {}
    }
}

/// Ways a step can leave its worktree.
#[derive(Debug, Clone)]
enum Dirt {
    EditTracked,
    Untracked,
    UntrackedDir,
    NestedRepo,
    Stage,
    MoveHead,
    HalfMerge,
    DeleteAll,
}

fn dirt() -> impl Strategy<Value = Dirt> {
    prop_oneof![
        Just(Dirt::EditTracked),
        Just(Dirt::Untracked),
        Just(Dirt::UntrackedDir),
        Just(Dirt::NestedRepo),
        Just(Dirt::Stage),
        Just(Dirt::MoveHead),
        Just(Dirt::HalfMerge),
        Just(Dirt::DeleteAll),
    ]
}

fn dirty(slot: &Path, dirt: &Dirt, commits: &[String]) {
    match dirt {
        Dirt::EditTracked => {
            for path in git(slot, &["ls-files"]).lines() {
                let full = slot.join(path);
                if full.symlink_metadata().is_ok_and(|m| m.is_file()) {
                    fs_err::write(full, "edited by a step\n").unwrap();
                }
            }
        }
        Dirt::Untracked => fs_err::write(slot.join("new.txt"), "untracked\n").unwrap(),
        Dirt::UntrackedDir => {
            fs_err::create_dir_all(slot.join("u/v")).unwrap();
            fs_err::write(slot.join("u/v/w.txt"), "deep\n").unwrap();
        }
        Dirt::NestedRepo => {
            fs_err::create_dir_all(slot.join("nested")).unwrap();
            git(&slot.join("nested"), &["init", "-q"]);
            fs_err::write(slot.join("nested/n.txt"), "n\n").unwrap();
        }
        Dirt::Stage => {
            fs_err::write(slot.join("staged.txt"), "staged\n").unwrap();
            git(slot, &["add", "staged.txt"]);
        }
        Dirt::MoveHead => {
            git(
                slot,
                &["checkout", "-q", "--detach", "--force", &commits[0]],
            );
        }
        Dirt::HalfMerge => {
            let head = git(slot, &["rev-parse", "HEAD"]);
            let admin = git(slot, &["rev-parse", "--absolute-git-dir"]);
            fs_err::write(Path::new(admin.trim()).join("MERGE_HEAD"), head).unwrap();
            fs_err::create_dir_all(Path::new(admin.trim()).join("rebase-merge")).unwrap();
        }
        Dirt::DeleteAll => {
            for path in git(slot, &["ls-files"]).lines() {
                let _ = fs_err::remove_file(slot.join(path));
            }
        }
    }
}

/// Every file under `root` but `.git` and the ignored ones: path -> (link target or
/// content, executable).
fn files(root: &Path) -> BTreeMap<String, (Vec<u8>, bool)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".git" || rel.starts_with("ignored") || rel.ends_with(".log") {
                continue;
            }
            let meta = path.symlink_metadata().unwrap();
            if meta.file_type().is_symlink() {
                let target = fs_err::read_link(&path).unwrap();
                out.insert(rel, (target.as_os_str().as_encoded_bytes().to_vec(), false));
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                let exec = meta.permissions().mode() & 0o111 != 0;
                out.insert(rel, (fs_err::read(&path).unwrap(), exec));
            }
        }
    }
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    repo: Repo,
    pool: Pool,
    commits: Vec<String>,
    fresh: PathBuf,
}

/// A history of two commits (`a.txt` written, then `b.txt`), and their ids.
fn two_commits() -> (Fixture, Oid, Oid) {
    let f = fixture(&[
        vec![Op::Write(0, "a".to_owned())],
        vec![Op::Write(1, "b".to_owned())],
    ]);
    let first = Oid::from_str(&f.commits[0]).unwrap();
    let second = Oid::from_str(&f.commits[1]).unwrap();
    (f, first, second)
}

fn fixture(history: &[Vec<Op>]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    fs_err::create_dir_all(&root).unwrap();
    git(&root, &["init", "-q", "-b", "main"]);
    fs_err::write(root.join(".gitignore"), "ignored/\n*.log\n").unwrap();
    let mut commits = Vec::new();
    for ops in history {
        for op in ops {
            apply(&root, op);
        }
        git(&root, &["add", "-A"]);
        git(&root, &["commit", "-q", "--allow-empty", "-m", "c"]);
        commits.push(git(&root, &["rev-parse", "HEAD"]).trim().to_owned());
    }
    let repo = Repo::discover(&root).unwrap();
    let pool = Pool::new(&repo, &dir.path().join("worktrees"));
    let fresh = dir.path().join("fresh");
    Fixture {
        _dir: dir,
        repo,
        pool,
        commits,
        fresh,
    }
}

proptest! {
    #![proptest_config(Config { cases: 16, ..Config::default() })]

    /// A slot left dirty in any way and reset to any commit holds exactly what a fresh
    /// `git worktree add` of that commit holds, and its ignored files are still there.
    #[test]
    fn a_reset_slot_equals_a_fresh_worktree(
        history in prop::collection::vec(prop::collection::vec(op(), 1..5), 2..5),
        dirts in prop::collection::vec(dirt(), 0..4),
        from in 0usize..8,
        to in 0usize..8,
    ) {
        let f = fixture(&history);
        let from = &f.commits[from % f.commits.len()];
        let to = &f.commits[to % f.commits.len()];
        let first = f.pool.lease(Oid::from_str(from).unwrap(), "m", "r1").unwrap();
        assert!(first.made);
        let slot = first.path.clone();
        fs_err::create_dir_all(slot.join("ignored")).unwrap();
        fs_err::write(slot.join("ignored/build.bin"), "a build cache").unwrap();
        fs_err::write(slot.join("run.log"), "a log").unwrap();
        for d in &dirts {
            dirty(&slot, d, &f.commits);
        }
        drop(first);

        let second = f.pool.lease(Oid::from_str(to).unwrap(), "m", "r1").unwrap();
        assert_eq!(second.path, slot, "the free slot is reused");
        assert!(!second.made);
        f.repo.add_worktree(&f.fresh, Oid::from_str(to).unwrap()).unwrap();
        assert_eq!(files(&slot), files(&f.fresh));
        assert_eq!(git(&slot, &["status", "--porcelain", "--ignored=no"]), "");
        assert_eq!(git(&slot, &["rev-parse", "HEAD"]).trim(), to.as_str());
        assert_eq!(fs_err::read_to_string(slot.join("ignored/build.bin")).unwrap(), "a build cache");
        assert_eq!(fs_err::read_to_string(slot.join("run.log")).unwrap(), "a log");
        let admin = git(&slot, &["rev-parse", "--absolute-git-dir"]);
        assert!(!Path::new(admin.trim()).join("MERGE_HEAD").exists());
    }
}

#[test]
fn an_eol_rule_that_changes_alone_rewrites_the_files_it_covers() {
    let f = fixture(&[
        vec![Op::Write(0, "x\ny\n".to_owned())],
        vec![Op::Eol(true)],
        vec![Op::Eol(false)],
    ]);
    let oid = |i: usize| Oid::from_str(&f.commits[i]).unwrap();
    for (from, to) in [(0, 1), (1, 2), (2, 1)] {
        drop(f.pool.lease(oid(from), "m", "r2").unwrap());
        let lease = f.pool.lease(oid(to), "m", "r2").unwrap();
        let fresh = f.fresh.with_extension(format!("{from}-{to}"));
        f.repo.add_worktree(&fresh, oid(to)).unwrap();
        assert_eq!(files(&lease.path), files(&fresh), "{from} -> {to}");
        assert_eq!(git(&lease.path, &["status", "--porcelain"]), "");
    }
}

#[test]
fn two_leases_never_share_a_slot_and_a_dropped_one_is_reused() {
    let f = fixture(&[vec![Op::Write(0, "a".to_owned())]]);
    let base = Oid::from_str(&f.commits[0]).unwrap();
    let a = f.pool.lease(base, "m", "r2").unwrap();
    let b = f.pool.lease(base, "m", "r2").unwrap();
    assert_ne!(a.path, b.path);
    assert_eq!((a.slot.as_str(), b.slot.as_str()), ("s0", "s1"));
    drop(a);
    let c = f.pool.lease(base, "m", "r2").unwrap();
    assert_eq!(c.slot, "s0");
    assert!(!c.made);
}

#[test]
fn a_clean_mark_spares_one_look_and_only_at_its_commit() {
    let (f, first, second) = two_commits();
    let mut lease = f.pool.lease(first, "m", "r").unwrap();
    lease.mark_clean(first);
    let slot = lease.path.clone();
    drop(lease);
    // Leased at another commit, the mark does not count: the slot is reset.
    let lease = f.pool.lease(second, "m", "r").unwrap();
    assert_eq!(lease.path, slot);
    assert_eq!(fs_err::read_to_string(slot.join("b.txt")).unwrap(), "b");
    drop(lease);
    // A mark holds for one lease: the one after it looks again, and finds the dirt.
    let mut lease = f.pool.lease(second, "m", "r").unwrap();
    lease.mark_clean(second);
    drop(lease);
    let lease = f.pool.lease(second, "m", "r").unwrap();
    fs_err::write(slot.join("stray.txt"), "x").unwrap();
    drop(lease);
    let lease = f.pool.lease(second, "m", "r").unwrap();
    assert_eq!(lease.path, slot);
    assert!(
        !slot.join("stray.txt").exists(),
        "a slot with no mark is looked at"
    );
}

/// A slot's state is remembered by the process that holds it, as last written: a note saved
/// under one lease is there at the next, and a slot looked at but not handed out (another
/// was preferred) keeps its clean mark.
#[test]
fn a_held_slots_state_is_what_was_last_saved_and_an_unchosen_slot_keeps_its_mark() {
    let (f, first, second) = two_commits();
    let mut one = f.pool.lease(first, "m", "r").unwrap();
    one.state.notes.insert("setup".to_owned(), "v1".to_owned());
    one.save().unwrap();
    one.state.notes.insert("setup".to_owned(), "v2".to_owned());
    one.save().unwrap();
    one.mark_clean(first);
    let two = f.pool.lease(second, "m", "r").unwrap();
    let (one_path, two_path) = (one.path.clone(), two.path.clone());
    drop(one);
    drop(two);
    // Leased at `second`, the slot already there is preferred; `one`'s slot is looked at and
    // passed over, and keeps its mark and its state.
    let at_second = f.pool.lease(second, "m", "r").unwrap();
    assert_eq!(at_second.path, two_path);
    let again = f.pool.lease(first, "m", "r").unwrap();
    assert_eq!(again.path, one_path);
    assert_eq!(
        again.state.notes.get("setup").map(String::as_str),
        Some("v2")
    );
    assert_eq!(again.known_clean, Some(first), "the mark outlived a look");
    drop(at_second);
    drop(again);
    // Handed out, the mark is spent.
    let spent = f.pool.lease(first, "m", "r").unwrap();
    assert_eq!(spent.path, one_path);
    assert_eq!(spent.known_clean, None);
}

#[test]
fn a_kept_slot_waits_for_the_next_run_of_its_mission() {
    let f = fixture(&[vec![Op::Write(0, "a".to_owned())]]);
    let base = Oid::from_str(&f.commits[0]).unwrap();
    let failed = f.pool.lease(base, "m", "r1").unwrap();
    let kept_path = failed.path.clone();
    fs_err::write(kept_path.join("left.txt"), "for a look").unwrap();
    failed
        .keep(Kept {
            mission: "m".to_owned(),
            run: "r1".to_owned(),
            step: "s".to_owned(),
        })
        .unwrap();
    // Another mission, or another step of the same run, does not take it; it is still
    // there to look at.
    let other = f.pool.lease(base, "other", "r3").unwrap();
    assert_ne!(other.path, kept_path);
    drop(other);
    let same_run = f.pool.lease(base, "m", "r1").unwrap();
    assert_ne!(same_run.path, kept_path);
    drop(same_run);
    assert!(kept_path.join("left.txt").exists());
    // The mission's next run takes it back (reset).
    let next = f.pool.lease(base, "m", "r2").unwrap();
    assert!(next.state.kept.is_none());
    let slots = f.pool.slots().unwrap();
    assert!(slots.iter().all(|s| s.state.kept.is_none()), "{slots:?}");
    drop(next);
}

#[test]
fn a_half_reset_or_broken_slot_is_made_again() {
    let (f, c0, c1) = two_commits();
    let lease = f.pool.lease(c0, "m", "r2").unwrap();
    let path = lease.path.clone();
    drop(lease);
    // Its git link is broken: the reset fails, and the slot is made again in place.
    fs_err::write(path.join(".git"), "gitdir: /nowhere\n").unwrap();
    let again = f.pool.lease(c1, "m", "r2").unwrap();
    assert_eq!(again.path, path);
    assert!(again.made);
    assert_eq!(fs_err::read_to_string(path.join("b.txt")).unwrap(), "b");
}

#[test]
fn trim_removes_the_least_recently_used_free_slots_and_clear_all_free_ones() {
    let f = fixture(&[vec![Op::Write(0, "a".to_owned())]]);
    let base = Oid::from_str(&f.commits[0]).unwrap();
    let leases: Vec<Lease> = (0..4)
        .map(|_| f.pool.lease(base, "m", "r2").unwrap())
        .collect();
    drop(leases);
    let held = f.pool.lease(base, "m", "r2").unwrap();
    assert!(f.pool.disk_usage() > 0);
    let removed = f.pool.trim(2).unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(held.path.exists(), "a leased slot is never removed");
    let cleared = f.pool.clear().unwrap();
    assert_eq!(cleared.len(), 1);
    assert!(held.path.exists());
    drop(held);
    assert_eq!(f.pool.clear().unwrap().len(), 1);
    let listed = git(&f.repo.root, &["worktree", "list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
}

#[test]
fn a_state_written_over_a_longer_one_reads_back_whole_and_a_torn_one_means_a_full_reset() {
    let f = fixture(&[vec![Op::Write(0, "a".to_owned())]]);
    let base = Oid::from_str(&f.commits[0]).unwrap();
    let mut lease = f.pool.lease(base, "m", "r1").unwrap();
    lease
        .state
        .notes
        .insert("setup".to_owned(), "x".repeat(500));
    lease.save().unwrap();
    lease.state.notes.clear();
    lease.save().unwrap();
    let text = fs_err::read_to_string(&lease.state_path).unwrap();
    let state: SlotState = serde_json::from_str(&text).unwrap();
    assert_eq!(state.base.as_deref(), Some(f.commits[0].as_str()));
    assert!(state.notes.is_empty());
    // A state torn by a kill mid-write reads as none: the slot is reset in full, and works.
    let (slot, state_path) = (lease.path.clone(), lease.state_path.clone());
    fs_err::write(slot.join("left.txt"), "dirt").unwrap();
    drop(lease);
    fs_err::write(&state_path, "{\"base\": \"12").unwrap();
    let again = f.pool.lease(base, "m", "r2").unwrap();
    assert_eq!(again.path, slot);
    assert!(!slot.join("left.txt").exists());
    assert_eq!(again.state.base.as_deref(), Some(f.commits[0].as_str()));
}
