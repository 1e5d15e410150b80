//! git plumbing on repositories of 10 and 10,000 files: the working-tree snapshot (against the
//! git CLI's temporary-index route), a worktree commit, and worktree creation.
//!
//! `cargo bench -p medley-engine --bench git`

use std::path::Path;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use medley_engine::git::Repo;

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@b")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@b")
        .status()
        .expect("git runs")
        .success();
    assert!(ok, "git {args:?}");
}

/// A repository with `files` small files in 100 directories, committed, plus one untracked file.
fn repo(files: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    for i in 0..files {
        let sub = dir.path().join(format!("d{:02}", i % 100));
        fs_err::create_dir_all(&sub).expect("a directory");
        fs_err::write(sub.join(format!("f{i}.txt")), format!("file {i}\n")).expect("a file");
    }
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "files"]);
    fs_err::write(dir.path().join("untracked.txt"), "new\n").expect("a file");
    dir
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("git");
    group.sample_size(10);
    for files in [10, 10_000] {
        let dir = repo(files);
        let repo = Repo::discover(dir.path()).expect("a repository");
        repo.snapshot().expect("a first snapshot");
        group.bench_function(format!("snapshot, nothing changed, {files} files"), |b| {
            b.iter(|| repo.snapshot().expect("a snapshot"))
        });
        group.bench_function(
            format!("git CLI: temp index add -A + write-tree, {files} files"),
            |b| {
                let index = dir.path().join(".git/index");
                let copy = dir.path().join("../bench-index");
                b.iter(|| {
                    fs_err::copy(&index, &copy).expect("an index copy");
                    let status = Command::new("sh")
                        .current_dir(dir.path())
                        .env("GIT_INDEX_FILE", &copy)
                        .args(["-c", "git add -A && git write-tree >/dev/null"])
                        .status()
                        .expect("sh runs");
                    assert!(status.success());
                })
            },
        );
        let base = repo.snapshot().expect("a snapshot").commit;
        let worktree = dir.path().join("../bench-worktree");
        group.bench_function(format!("worktree add + remove, {files} files"), |b| {
            b.iter(|| {
                repo.add_worktree(&worktree, base).expect("a worktree");
                repo.remove_worktree(&worktree).expect("removed");
            })
        });
        group.bench_function(
            format!("git CLI: worktree add + remove, {files} files"),
            |b| {
                b.iter(|| {
                    let path = worktree.to_string_lossy().into_owned();
                    git(
                        dir.path(),
                        &[
                            "worktree",
                            "add",
                            "-q",
                            "--detach",
                            &path,
                            &base.to_string(),
                        ],
                    );
                    git(dir.path(), &["worktree", "remove", "--force", &path]);
                })
            },
        );
        repo.add_worktree(&worktree, base).expect("a worktree");
        fs_err::write(worktree.join("changed.txt"), "x\n").expect("a file");
        group.bench_function(
            format!("commit of a worktree with one new file, {files} files"),
            |b| {
                b.iter(|| {
                    repo.commit_worktree(&worktree, base, "bench")
                        .expect("a commit")
                })
            },
        );
        repo.remove_worktree(&worktree).expect("removed");
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
