//! Git fidelity: in every repository layout, the snapshot, each step's commit and `apply` hold
//! exactly what git would, and nothing of the user's changes.
//!
//! Each case checks the fingerprint (HEAD, index bytes, refs, stash, every file) is unchanged by
//! the run, and that the result of a mission whose step changes nothing is exactly the tree
//! `git add -A && git write-tree` gives on a private copy of the user's index.

use std::ffi::OsStr;
use std::path::Path;

use medley_tests::TestEnv;

use crate::env;

const NOOP: &str = "[steps.look]\nrun = \"true\"\n";

/// The tree `git add -A --sparse && git write-tree` gives on a private copy of the index.
fn reference_tree(env: &TestEnv) -> String {
    let git_dir = env.git(&["rev-parse", "--absolute-git-dir"]);
    let copy = env.home().join("reference-index");
    let _ = fs_err::remove_file(&copy);
    let index = Path::new(git_dir.trim()).join("index");
    if index.exists() {
        fs_err::copy(&index, &copy).unwrap();
    }
    let with = [("GIT_INDEX_FILE", copy.as_os_str())];
    env.git_with(&with, &["add", "-A", "--sparse"]);
    env.git_with(&with, &["write-tree"]).trim().to_owned()
}

fn tree_of(env: &TestEnv, rev: &str) -> String {
    env.git(&["rev-parse", &format!("{rev}^{{tree}}")])
        .trim()
        .to_owned()
}

/// Runs the only mission, checks the user's repository is byte-identical afterwards, and
/// returns the result branch.
fn run_leaving_the_user_alone(env: &TestEnv) -> String {
    let before = env.fingerprint();
    let branch = run_passes(env);
    assert_eq!(
        env.fingerprint(),
        before,
        "the run changed the user's repository"
    );
    branch
}

/// Runs the only mission and returns its result branch.
fn run_passes(env: &TestEnv) -> String {
    let out = env.run(&["run", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let branches = env.result_branches();
    assert_eq!(branches.len(), 1, "{branches:?}");
    branches[0].clone()
}

/// The base (the snapshot) of the newest run, from its journal.
fn run_base(env: &TestEnv) -> String {
    env.journal()
        .into_iter()
        .find(|e| e["type"] == "run_started")
        .and_then(|e| e["base"].as_str().map(str::to_owned))
        .expect("a run_started event")
}

fn blob(env: &TestEnv, rev: &str, path: &str) -> String {
    env.git(&["cat-file", "blob", &format!("{rev}:{path}")])
}

#[test]
fn a_sparse_checkout_keeps_the_files_outside_the_cone() {
    let env = env();
    env.repo(&[
        ("src/a.txt", "a\n"),
        ("docs/d.txt", "d\n"),
        (
            "missions/m.toml",
            "[steps.add]\nrun = \"echo new > src/new.txt\"\n",
        ),
    ]);
    env.git(&["sparse-checkout", "set", "src", "missions"]);
    assert!(!env.work().join("docs/d.txt").exists());
    env.write("src/a.txt", "a edited\n");
    let before = env.fingerprint();
    let branch = run_passes(&env);
    assert_eq!(
        env.fingerprint(),
        before,
        "the run changed the user's repository"
    );
    // Nothing outside the cone is deleted; the step's change and the user's edit are there.
    let changed = env.git(&["diff", "--name-status", "HEAD", &branch]);
    assert_eq!(changed, "M\tsrc/a.txt\nA\tsrc/new.txt\n");
    assert_eq!(blob(&env, &branch, "docs/d.txt"), "d\n");

    // apply brings the change in; the sparse entry stays as it was, the index untouched.
    let index = env.git(&["ls-files", "-t"]);
    let out = env.run(&["apply", "last"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.read("src/new.txt"), "new\n");
    assert!(!env.work().join("docs/d.txt").exists());
    assert_eq!(env.git(&["ls-files", "-t"]), index);
}

#[test]
fn the_snapshot_of_a_sparse_checkout_is_what_git_add_stores() {
    let env = env();
    env.repo(&[
        ("src/a.txt", "a\n"),
        ("docs/d.txt", "d\n"),
        ("docs/e.txt", "e\n"),
        ("missions/m.toml", NOOP),
    ]);
    env.git(&[
        "sparse-checkout",
        "set",
        "--no-cone",
        "/src/",
        "/missions/",
        "/docs/e.txt",
    ]);
    // assume-unchanged keeps the index's content, as git add does.
    env.git(&["update-index", "--assume-unchanged", "src/a.txt"]);
    env.write("src/a.txt", "edited but assumed unchanged\n");
    env.write("docs/new.txt", "outside the cone, untracked\n");
    let branch = run_leaving_the_user_alone(&env);
    assert_eq!(tree_of(&env, &branch), reference_tree(&env));
    assert_eq!(blob(&env, &branch, "docs/d.txt"), "d\n");
    assert_eq!(blob(&env, &branch, "src/a.txt"), "a\n");
}

#[test]
fn gits_environment_reaches_neither_medleys_git_nor_the_steps() {
    let env = env();
    env.repo(&[
        ("a.txt", "a\n"),
        (
            "missions/m.toml",
            "[steps.check]\nrun = \"env | grep -E '^GIT_(DIR|WORK_TREE|INDEX_FILE|OBJECT_DIRECTORY)=' > seen.txt; echo made > made.txt; git status --porcelain > status.txt\"\n",
        ),
    ]);
    // Another repository that GIT_DIR points at: medley must not touch it.
    let other = env.home().join("other");
    fs_err::create_dir_all(&other).unwrap();
    let other_git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(&other)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    other_git(&["init", "-q", "-b", "main"]);
    other_git(&[
        "-c",
        "user.name=o",
        "-c",
        "user.email=o@o",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "other",
    ]);
    let other_refs = other_git(&["for-each-ref"]);
    let other_index = fs_err::read(other.join(".git/index")).ok();

    env.write("staged.txt", "staged work\n");
    env.git(&["add", "staged.txt"]);
    let before = env.fingerprint();
    let index = env.work().join(".git/index");
    let out = env
        .medley()
        .args(["run", "--output", "plain"])
        .env("GIT_INDEX_FILE", &index)
        .env("GIT_DIR", other.join(".git"))
        .env("GIT_WORK_TREE", &other)
        .env("GIT_OBJECT_DIRECTORY", other.join(".git/objects"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("GIT_DIR"),
        "no warning that GIT_DIR is ignored: {stderr}"
    );
    assert_eq!(
        env.fingerprint(),
        before,
        "the run changed the user's repository"
    );
    assert_eq!(other_git(&["for-each-ref"]), other_refs);
    assert_eq!(fs_err::read(other.join(".git/index")).ok(), other_index);
    let branch = env.result_branches().pop().unwrap();
    assert_eq!(
        blob(&env, &branch, "seen.txt"),
        "",
        "git's variables reached the step"
    );
    assert_eq!(blob(&env, &branch, "made.txt"), "made\n");
    assert_eq!(blob(&env, &branch, "staged.txt"), "staged work\n");
    // apply with git's variables set still works on the repository of the current directory.
    let out = env
        .medley()
        .args(["apply", "last"])
        .env("GIT_INDEX_FILE", &index)
        .env("GIT_DIR", other.join(".git"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.read("made.txt"), "made\n");
    assert_eq!(other_git(&["for-each-ref"]), other_refs);
    // The step's git saw its own worktree.
    assert_eq!(
        blob(&env, &branch, "status.txt"),
        "?? made.txt\n?? seen.txt\n?? status.txt\n"
    );
}

#[test]
fn a_separate_git_dir_is_found_as_git_finds_it() {
    let env = env();
    // The git dir's parent holds other files that must never be seen or touched.
    let store = env.home().join("store");
    fs_err::create_dir_all(&store).unwrap();
    fs_err::write(store.join("unrelated.txt"), "not in any repository\n").unwrap();
    let git_dir = store.join("repo.git");
    env.git(&[
        "init",
        "-q",
        "-b",
        "main",
        "--separate-git-dir",
        git_dir.to_str().unwrap(),
    ]);
    env.write("a.txt", "a\n");
    env.write(
        "missions/m.toml",
        "[steps.edit]\nrun = \"echo b > b.txt; rm a.txt\"\n",
    );
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "-m", "initial"]);
    env.write("untracked.txt", "u\n");
    let branch = run_leaving_the_user_alone(&env);
    assert_eq!(tree_of(&env, &run_base(&env)), reference_tree(&env));
    let files = env.git(&["ls-tree", "-r", "--name-only", &branch]);
    assert_eq!(files, "b.txt\nmissions/m.toml\nuntracked.txt\n");
    let out = env.run(&["apply", "last"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.read("b.txt"), "b\n");
    assert!(!env.work().join("a.txt").exists());
    assert_eq!(
        fs_err::read_to_string(store.join("unrelated.txt")).unwrap(),
        "not in any repository\n"
    );
    let mut left: Vec<_> = fs_err::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["repo.git", "unrelated.txt"]);
}

#[test]
fn non_utf8_file_names_are_kept() {
    use std::os::unix::ffi::OsStrExt as _;
    let env = env();
    env.repo(&[(
        "missions/m.toml",
        "[steps.make]\nrun = \"printf s > \\\"$(printf 'step\\\\375.txt')\\\"\"\n",
    )]);
    let odd = |bytes: &[u8]| env.work().join(OsStr::from_bytes(bytes));
    fs_err::write(odd(b"bad\xff.txt"), "untracked\n").unwrap();
    fs_err::create_dir_all(odd(b"dir\xfe")).unwrap();
    fs_err::write(odd(b"dir\xfe/x.txt"), "in an odd directory\n").unwrap();
    let before = env.fingerprint();
    let out = env.run(&["run", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.fingerprint(), before);
    let branch = env.result_branches().pop().unwrap();
    let listed = std::process::Command::new("git")
        .current_dir(env.work())
        .args(["ls-tree", "-r", "-z", "--name-only", &branch])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(tree_of(&env, &run_base(&env)), reference_tree(&env));
    let names: Vec<&[u8]> = listed
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .collect();
    assert_eq!(
        names,
        [
            &b"bad\xff.txt"[..],
            b"dir\xfe/x.txt",
            b"missions/m.toml",
            b"step\xfd.txt"
        ]
    );
    let out = env.run(&["apply", "last"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fs_err::read(odd(b"step\xfd.txt")).unwrap(), b"s");
}

#[test]
fn a_nested_repository_made_by_a_step_fails_it_and_never_passes_its_gate() {
    let env = env();
    env.repo(&[(
        "missions/m.toml",
        "[steps.app]\nrun = \"mkdir app && cd app && git init -q && echo x > main.js\"\ngate = \"test -f app/main.js\"\n",
    )]);
    let out = env.run(&["run", "--output", "plain"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the step made `app/` a git repository of its own"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("gate passed"), "{}", out.stderr);
    assert!(env.result_branches().is_empty());
}

#[test]
fn a_nested_repository_in_the_users_tree_is_a_gitlink_with_a_warning() {
    let env = env();
    env.repo(&[("a.txt", "a\n"), ("missions/m.toml", NOOP)]);
    fs_err::create_dir_all(env.work().join("lib")).unwrap();
    env.write("lib/x.txt", "x\n");
    let nested = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(env.work().join("lib"))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(["-c", "user.name=n", "-c", "user.email=n@n"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    nested(&["init", "-q"]);
    nested(&["add", "-A"]);
    nested(&["commit", "-q", "-m", "nested"]);
    let out = env.run(&["run", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("`lib/` is a git repository of its own"),
        "{}",
        out.stderr
    );
    let branch = env.result_branches().pop().unwrap();
    assert_eq!(tree_of(&env, &branch), reference_tree(&env));
    let entry = env.git(&["ls-tree", &branch, "lib"]);
    assert!(entry.starts_with("160000 commit "), "{entry}");

    // One with no commit cannot be stored at all: a clear error, not a silent drop.
    fs_err::create_dir_all(env.work().join("empty")).unwrap();
    env.write("empty/y.txt", "y\n");
    let out = std::process::Command::new("git")
        .current_dir(env.work().join("empty"))
        .args(["init", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = env.run(&["run", "--output", "plain"]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`empty/` is a git repository with no commit"),
        "{}",
        out.stderr
    );
}

/// A rot13 clean/smudge filter the test configures itself.
fn rot_filter(env: &TestEnv) {
    let rot = "tr A-Za-z N-ZA-Mn-za-m";
    env.git(&["config", "filter.rot.clean", rot]);
    env.git(&["config", "filter.rot.smudge", rot]);
}

#[test]
fn clean_and_smudge_filters_run_as_git_add_and_checkout_run_them() {
    let env = env();
    env.git(&["init", "-q", "-b", "main"]);
    rot_filter(&env);
    env.write(".gitattributes", "*.rot filter=rot\n");
    env.write("secret.rot", "hello\n");
    env.write(
        "missions/m.toml",
        "[steps.see]\nrun = \"cat secret.rot > seen.txt; echo added > more.rot\"\n",
    );
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "-m", "initial"]);
    assert_eq!(blob(&env, "HEAD", "secret.rot"), "uryyb\n");
    env.write("secret.rot", "hello world\n");
    let branch = run_leaving_the_user_alone(&env);
    assert_eq!(tree_of(&env, &run_base(&env)), reference_tree(&env));
    // The step saw the user's text (smudged once), and git stores it cleaned.
    assert_eq!(blob(&env, &branch, "seen.txt"), "hello world\n");
    assert_eq!(blob(&env, &branch, "secret.rot"), "uryyb jbeyq\n");
    assert_eq!(blob(&env, &branch, "more.rot"), "nqqrq\n");

    // apply writes the files as checkout would (smudged), and sees the edited file as the base.
    let out = env.run(&["apply", "last"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.read("more.rot"), "added\n");
    assert_eq!(env.read("secret.rot"), "hello world\n");
}

#[test]
fn autocrlf_stores_lf_as_git_add_does() {
    let env = env();
    env.repo(&[
        ("a.txt", "a\n"),
        (
            "missions/m.toml",
            "[steps.crlf]\nrun = \"printf 'x\\\\r\\\\ny\\\\r\\\\n' > step.txt\"\n",
        ),
    ]);
    env.git(&["config", "core.autocrlf", "true"]);
    env.write("user.txt", "u\r\nv\r\n");
    let branch = run_leaving_the_user_alone(&env);
    assert_eq!(tree_of(&env, &run_base(&env)), reference_tree(&env));
    assert_eq!(blob(&env, &branch, "user.txt"), "u\nv\n");
    assert_eq!(blob(&env, &branch, "step.txt"), "x\ny\n");
    // apply writes what checkout writes: CRLF in the working tree with autocrlf.
    let out = env.run(&["apply", "last"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.read("step.txt"), "x\r\ny\r\n");
    assert_eq!(env.read("user.txt"), "u\r\nv\r\n");
}

#[test]
fn a_split_index_is_read_and_left_alone() {
    let env = env();
    env.repo(&[
        ("a.txt", "a\n"),
        (".gitignore", ".env\n"),
        (".worktreeinclude", ".env\n"),
        (
            "missions/m.toml",
            "[steps.look]\nrun = \"cat .env > seen.txt\"\n",
        ),
    ]);
    env.git(&["config", "core.splitIndex", "true"]);
    env.write("b.txt", "b\n");
    env.git(&["add", "b.txt"]);
    env.git(&["update-index", "--split-index"]);
    env.write(".env", "KEY=1\n");
    let git_dir = env.work().join(".git");
    let shared = |dir: &Path| -> Vec<_> {
        let mut names: Vec<_> = fs_err::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("sharedindex."))
            .collect();
        names.sort();
        names
    };
    let shared_before = shared(&git_dir);
    assert!(!shared_before.is_empty());
    let branch = run_leaving_the_user_alone(&env);
    assert_eq!(shared(&git_dir), shared_before);
    assert_eq!(tree_of(&env, &run_base(&env)), reference_tree(&env));
    assert_eq!(blob(&env, &branch, "b.txt"), "b\n");
    assert_eq!(blob(&env, &branch, "seen.txt"), "KEY=1\n");
    let index = fs_err::read(git_dir.join("index")).unwrap();
    let out = env.run(&["apply", "last"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.read("seen.txt"), "KEY=1\n");
    assert_eq!(fs_err::read(git_dir.join("index")).unwrap(), index);
}
