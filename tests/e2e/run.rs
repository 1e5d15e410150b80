//! `medley run` for real: snapshots, worktrees, gates, merges, result branches, process
//! control, and the commands that read runs back.

use std::time::Duration;

use medley_tests::TestEnv;

use crate::env;

const HELLO: &str = include_str!("../../missions/hello.toml");

fn events_of(env: &TestEnv, kind: &str) -> Vec<serde_json::Value> {
    env.journal()
        .into_iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

fn step_finished(env: &TestEnv, step: &str) -> serde_json::Value {
    events_of(env, "step_finished")
        .into_iter()
        .find(|e| e["step"] == step)
        .unwrap_or_else(|| panic!("no step_finished for {step}"))
}

#[test]
fn hello_runs_and_its_result_branch_holds_the_greetings() {
    let env = env();
    env.repo(&[("README.md", "# demo\n"), ("missions/hello.toml", HELLO)]);
    let before = env.fingerprint();
    let out = env.run(&["run", "hello"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let branches = env.result_branches();
    assert_eq!(branches.len(), 1, "{branches:?}");
    assert!(branches[0].starts_with("medley/hello/"));
    let tree = env.tree(&branches[0]);
    assert_eq!(
        tree["greetings/all.txt"],
        "Hello, world!\nBonjour, world!\nHallo, world!\n"
    );
    assert_eq!(
        env.fingerprint(),
        before,
        "the run changed the user's repository"
    );
    assert!(out.stderr.contains("run passed"), "{}", out.stderr);
    // Nothing but the pool's warm worktrees is left by a passed run.
    assert!(env.worktrees_outside_pool().is_empty());
    let worktrees = env.home().join(".cache/medley/worktrees");
    let left: Vec<_> = walk_files(&worktrees)
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("/pool/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let slots = env.pool_slots();
    assert!(!slots.is_empty() && slots.len() <= 3, "{slots:?}");
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn a_dirty_tree_is_seen_by_steps_and_left_byte_identical() {
    let env = env();
    env.repo(&[
        ("tracked.txt", "committed\n"),
        ("staged.txt", "committed\n"),
        ("gone.txt", "deleted in the working tree\n"),
        (".gitignore", "secret.env\nbuild/\n"),
        ("missions/see.toml", "[steps.look]\nrun = \"ls -a; cat tracked.txt staged.txt untracked.txt; ls secret.env build gone.txt 2>&1 || true\"\n"),
    ]);
    env.write("staged.txt", "staged change\n");
    env.git(&["add", "staged.txt"]);
    env.write("staged.txt", "staged, then changed again\n");
    env.write("tracked.txt", "unstaged change\n");
    env.write("untracked.txt", "new file\n");
    env.write("secret.env", "TOKEN=hunter2\n");
    env.write("build/out.o", "binary\n");
    fs_err::remove_file(env.work().join("gone.txt")).unwrap();
    let before = env.fingerprint();
    let out = env.run(&["run", "see"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        env.fingerprint(),
        before,
        "the run changed the user's files, index or HEAD"
    );
    let run = env.journal()[0]["run"].as_str().unwrap().to_owned();
    let logs = env.run(&["logs", &run, "look"]);
    let seen = &logs.stdout;
    assert!(seen.contains("unstaged change"), "{seen}");
    assert!(seen.contains("staged, then changed again"), "{seen}");
    assert!(seen.contains("new file"), "{seen}");
    assert!(
        !seen.contains("hunter2"),
        "an ignored file reached the step: {seen}"
    );
    assert!(seen.contains("'secret.env': No such file"), "{seen}");
    assert!(seen.contains("'build': No such file"), "{seen}");
    assert!(seen.contains("'gone.txt': No such file"), "{seen}");
}

#[test]
fn worktreeinclude_copies_ignored_files_only() {
    let env = env();
    env.repo(&[
        (".gitignore", "*.env\n"),
        (".worktreeinclude", "*.env\ntracked.txt\n"),
        ("tracked.txt", "committed\n"),
        (
            "missions/m.toml",
            "[steps.a]\nrun = \"cat local.env tracked.txt\"\n",
        ),
    ]);
    env.write("local.env", "KEY=1\n");
    env.write("tracked.txt", "local edit\n");
    let out = env.run(&["run", "m", "--base", "main"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let logs = env.run(&["logs", "last", "a"]);
    assert!(logs.stdout.contains("KEY=1"), "{}", logs.stdout);
    // --base main: the tracked file comes from the commit, never copied from the working tree.
    assert!(logs.stdout.contains("committed"), "{}", logs.stdout);
    assert!(!logs.stdout.contains("local edit"), "{}", logs.stdout);
}

const DIAMOND: &str = r#"
[steps.top]
run = "echo top > top.txt"

[steps.left]
needs = ["top"]
run = "echo left >> {{ vars.left }}"

[steps.right]
needs = ["top"]
run = "echo right >> {{ vars.right }}"

[steps.join]
needs = ["left", "right"]
run = "cat top.txt {{ vars.left }} {{ vars.right }} > joined.txt"

[vars]
left = "left.txt"
right = "right.txt"
"#;

#[test]
fn a_diamond_join_sees_both_branches() {
    let env = env();
    env.repo(&[("missions/diamond.toml", DIAMOND)]);
    let out = env.run(&["run", "diamond"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tree = env.tree(&env.result_branches()[0]);
    assert_eq!(tree["joined.txt"], "top\nleft\nright\n");
}

#[test]
fn a_diamond_whose_branches_edit_the_same_lines_fails_naming_files_and_steps() {
    let env = env();
    env.repo(&[("missions/diamond.toml", DIAMOND), ("shared.txt", "one\n")]);
    let out = env.run(&[
        "run",
        "diamond",
        "--set",
        "left=shared.txt",
        "--set",
        "right=shared.txt",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("`left` and `right`"), "{}", out.stderr);
    assert!(out.stderr.contains("`shared.txt`"), "{}", out.stderr);
    let join = step_finished(&env, "join");
    assert_eq!(join["outcome"], "failed");
    assert_eq!(join["error"]["kind"], "merge_conflict");
    assert_eq!(join["error"]["files"], serde_json::json!(["shared.txt"]));
    assert_eq!(join["error"]["steps"], serde_json::json!(["left", "right"]));
    assert!(
        env.result_branches().is_empty(),
        "a failed run makes no result branch"
    );
}

#[test]
fn a_gate_that_fails_once_is_retried_in_the_same_worktree() {
    let env = env();
    env.repo(&[(
        "missions/flaky.toml",
        "[steps.build]\nrun = \"echo attempt >> attempts.txt\"\ngate = \"test $(wc -l < attempts.txt) -ge 2\"\nattempts = 3\n",
    )]);
    let out = env.run(&["run", "flaky"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let finished = step_finished(&env, "build");
    assert_eq!(finished["attempts"], 2);
    let failed = events_of(&env, "attempt_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["reason"], "gate");
    // The second attempt ran on top of the first: the file has both lines.
    assert_eq!(
        env.tree(&env.result_branches()[0])["attempts.txt"],
        "attempt\nattempt\n"
    );
    let commits = events_of(&env, "step_committed");
    assert_eq!(commits.len(), 2);
}

#[test]
fn a_gate_that_never_passes_fails_the_run_and_skips_dependents() {
    let env = env();
    env.repo(&[(
        "missions/never.toml",
        "[steps.build]\nrun = \"true\"\ngate = \"echo tests failed; exit 1\"\n\n[steps.ship]\nneeds = [\"build\"]\nrun = \"true\"\n\n[steps.after]\nneeds = [\"ship\"]\nrun = \"true\"\n",
    )]);
    let out = env.run(&["run", "never", "--output", "plain"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("ship: skipped: it needs `build`, which failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("after: skipped: it needs `ship`, which was skipped"),
        "{}",
        out.stderr
    );
    let build = step_finished(&env, "build");
    assert_eq!(build["attempts"], 2);
    assert!(
        build["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tests failed")
    );
    let skipped = events_of(&env, "step_skipped");
    assert_eq!(
        skipped[0]["reason"],
        serde_json::json!({"need": "build", "need_outcome": "failed"})
    );
    let show = env.run(&["show", "last"]);
    assert!(
        show.stdout
            .contains("skipped: it needs `build`, which failed"),
        "{}",
        show.stdout
    );
    assert!(env.result_branches().is_empty());
}

#[test]
fn if_runs_a_step_after_a_failure_and_skips_it_when_false() {
    let env = env();
    env.repo(&[(
        "missions/cond.toml",
        "[steps.build]\nrun = \"exit 3\"\nattempts = 1\n\n\
         [steps.report]\nneeds = [\"build\"]\nif = \"steps.build.outcome == 'failed'\"\nrun = \"echo {{ steps.build.outcome }} > report.txt\"\n\n\
         [steps.deploy]\nneeds = [\"build\"]\nif = \"steps.build.outcome == 'passed'\"\nrun = \"true\"\n",
    )]);
    let out = env.run(&["run", "cond"]);
    assert_eq!(out.code, 1);
    assert_eq!(step_finished(&env, "report")["outcome"], "passed");
    let skipped = events_of(&env, "step_skipped");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["step"], "deploy");
    assert_eq!(
        skipped[0]["reason"],
        serde_json::json!({"if": "steps.build.outcome == 'passed'"})
    );
}

#[test]
fn templates_see_upstream_results() {
    let env = env();
    env.repo(&[(
        "missions/t.toml",
        "[steps.make]\nmatrix = { n = [\"a\", \"b\"] }\nrun = \"echo {{ matrix.n }} > {{ matrix.n }}.txt; echo made {{ matrix.n }}\"\n\n\
         [steps.use]\nneeds = [\"make\"]\nrun = \"echo {{ steps.make.outcome }} {{ steps.make.files | shell_args }} {{ steps['make.a'].output }} > use.txt\"\n",
    )]);
    let out = env.run(&["run", "t"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tree = env.tree(&env.result_branches()[0]);
    assert_eq!(tree["use.txt"], "passed a.txt b.txt made a\n");
}

#[test]
fn only_runs_a_step_and_what_it_needs() {
    let env = env();
    env.repo(&[("missions/hello.toml", HELLO)]);
    let out = env.run(&["run", "hello", "--only", "greet.fr"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let started: Vec<String> = events_of(&env, "step_finished")
        .iter()
        .map(|e| e["step"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(started, ["greet.fr"]);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let env = env();
    env.write("missions/hello.toml", HELLO);
    let not_repo = env.run(&["run", "hello"]);
    assert_eq!(not_repo.code, 2);
    assert!(
        not_repo.stderr.contains("is not inside a git repository"),
        "{}",
        not_repo.stderr
    );
    env.git(&["init", "-q"]);
    let empty = env.run(&["run", "hello"]);
    assert_eq!(empty.code, 2);
    assert!(
        empty.stderr.contains("the repository has no commits yet"),
        "{}",
        empty.stderr
    );
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "-m", "init"]);
    let bad_base = env.run(&["run", "hello", "--base", "no-such-branch"]);
    assert_eq!(bad_base.code, 2);
    assert!(
        bad_base
            .stderr
            .contains("`no-such-branch` does not name a commit"),
        "{}",
        bad_base.stderr
    );
    env.git(&["branch", "medley"]);
    let blocked = env.run(&["run", "hello"]);
    assert_eq!(blocked.code, 2);
    assert!(
        blocked.stderr.contains("git branch -m medley"),
        "{}",
        blocked.stderr
    );
}

#[test]
fn a_missing_command_and_a_failing_setup_say_so() {
    let env = env();
    env.repo(&[
        (
            "missions/missing.toml",
            "[steps.a]\nrun = \"no-such-tool --flag\"\nattempts = 1\n",
        ),
        (
            "missions/setup.toml",
            "setup = \"echo installing; exit 4\"\n\n[steps.a]\nrun = \"true\"\n",
        ),
    ]);
    let missing = env.run(&["run", "missing", "--output", "plain"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("exited with 127: a program it runs was not found"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("no-such-tool"),
        "{}",
        missing.stderr
    );
    let setup = env.run(&["run", "setup", "--output", "plain"]);
    assert_eq!(setup.code, 1);
    let a = step_finished(&env, "a");
    assert_eq!(a["error"]["kind"], "setup");
    let message = a["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exited with 4") && message.contains("installing"),
        "{message}"
    );
}

/// Waits (up to a minute) for `path` to exist: the fake work reached that point.
pub(crate) fn wait_for(path: &std::path::Path) {
    for _ in 0..6000 {
        if path.exists() && fs_err::read_to_string(path).is_ok_and(|t| t.ends_with('\n')) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}

fn alive(pid: i32) -> bool {
    fs_err::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn pids(path: &std::path::Path) -> Vec<i32> {
    fs_err::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_timeout_stops_the_step_and_its_background_processes() {
    let env = env();
    let pidfile = env.work().parent().unwrap().join("pids");
    env.repo(&[(
        "missions/slow.toml",
        &format!(
            "[steps.slow]\nrun = \"sleep 300 & echo $! >> {p}; echo $$ >> {p}; wait\"\ntimeout = \"1s\"\nattempts = 1\n",
            p = pidfile.display()
        ),
    )]);
    let out = env.run(&["run", "slow"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let slow = step_finished(&env, "slow");
    assert_eq!(slow["error"]["kind"], "timeout");
    assert!(
        slow["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ran past its timeout of 1s")
    );
    for pid in pids(&pidfile) {
        assert!(!alive(pid), "process {pid} outlived its step");
    }
}

#[test]
fn sigint_cancels_the_run_and_leaves_no_process() {
    let env = env();
    let pidfile = env.work().parent().unwrap().join("pids");
    env.repo(&[(
        "missions/long.toml",
        &format!(
            "[steps.a]\nmatrix = {{ n = [1, 2] }}\nrun = \"sleep 300 & echo $! >> {p}; echo $$ >> {p}; wait\"\n\n[steps.b]\nneeds = [\"a\"]\nrun = \"true\"\n",
            p = pidfile.display()
        ),
    )]);
    let before = env.fingerprint();
    let mut child = env
        .medley()
        .args(["run", "long", "--output", "plain"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both steps have started their processes.
    for _ in 0..6000 {
        if pids(&pidfile).len() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(pids(&pidfile).len() >= 4, "the steps never started");
    signal(child.id() as i32, rustix::process::Signal::INT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    for pid in pids(&pidfile) {
        assert!(!alive(pid), "process {pid} outlived medley");
    }
    let finished = events_of(&env, "run_finished");
    assert_eq!(finished[0]["outcome"], "cancelled");
    for e in events_of(&env, "step_finished") {
        assert_eq!(e["outcome"], "cancelled", "{e}");
    }
    assert_eq!(env.fingerprint(), before);
}

/// Signals one process, by syscall (never through a `kill` program: procps-ng 4.0.2's
/// `kill -SIG -PGID` signals every process).
pub(crate) fn signal(pid: i32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid).expect("a positive pid");
    rustix::process::kill_process(pid, signal).expect("the process exists");
}

/// Runs `long` (a step that sleeps) and kills medley with SIGKILL mid-step.
fn kill_mid_step(env: &TestEnv, fresh: bool) {
    let pidfile = env.work().parent().unwrap().join("pids");
    env.repo(&[
        (
            "missions/long.toml",
            &format!(
                // The pid is written last: the test kills once it sees it, so the file is there.
                "[steps.a]\nrun = \"touch left-by-the-killed-step; echo $$ >> {p}; sleep 300\"\n",
                p = pidfile.display()
            ),
        ),
        ("missions/hello.toml", HELLO),
    ]);
    let mut args = vec!["run", "long"];
    if fresh {
        args.push("--fresh-worktrees");
    }
    let mut child = env
        .medley()
        .args(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&pidfile);
    signal(child.id() as i32, rustix::process::Signal::KILL);
    child.wait().unwrap();
    // SIGKILL gives medley no chance to stop its step: the test does.
    for pid in pids(&pidfile) {
        if let Some(group) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
    let show = env.run(&["show", "last"]);
    assert!(show.stdout.contains("outcome   killed"), "{}", show.stdout);
}

#[test]
fn a_killed_runs_fresh_worktrees_are_pruned_by_the_next_run() {
    let env = env();
    kill_mid_step(&env, true);
    let worktrees = env.home().join(".cache/medley/worktrees");
    assert!(
        !walk_files(&worktrees).is_empty(),
        "the killed run left its worktree"
    );
    assert_eq!(env.worktrees_outside_pool().len(), 1);
    let out = env.run(&["run", "hello", "--fresh-worktrees"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        walk_files(&worktrees).is_empty(),
        "{:?}",
        walk_files(&worktrees)
    );
    assert_eq!(env.git(&["worktree", "list"]).lines().count(), 1);
}

#[test]
fn a_killed_runs_pool_slot_is_reset_and_reused_by_the_next_run() {
    let env = env();
    kill_mid_step(&env, false);
    let slots = env.pool_slots();
    assert_eq!(slots.len(), 1, "{slots:?}");
    assert!(slots[0].join("left-by-the-killed-step").exists());
    // The killed run's lease died with it: the next run takes the slot and resets it.
    let out = env.run(&["run", "hello"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tree = env.tree(&env.result_branches()[0]);
    assert!(!tree.contains_key("left-by-the-killed-step"), "{tree:?}");
    assert!(env.pool_slots().contains(&slots[0]));
    assert!(!slots[0].join("left-by-the-killed-step").exists());
    assert!(env.worktrees_outside_pool().is_empty());
}

#[test]
fn apply_brings_the_result_in_and_refuses_over_local_edits() {
    let env = env();
    env.repo(&[
        ("notes.txt", "one\n"),
        (
            "missions/edit.toml",
            "[steps.e]\nrun = \"echo two >> notes.txt; echo new > new.txt\"\n",
        ),
    ]);
    assert_eq!(env.run(&["run", "edit"]).code, 0);
    env.write("notes.txt", "my own edit\n");
    let head = env.git(&["rev-parse", "HEAD"]);
    let index = fs_err::read(env.work().join(".git/index")).unwrap();
    let refused = env.run(&["apply", "last"]);
    assert_eq!(refused.code, 2);
    assert!(
        refused
            .stderr
            .contains("would overwrite local changes in `notes.txt`"),
        "{}",
        refused.stderr
    );
    assert_eq!(env.read("notes.txt"), "my own edit\n");
    assert!(!env.work().join("new.txt").exists());

    env.write("notes.txt", "one\n");
    let applied = env.run(&["apply", "last"]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(env.read("notes.txt"), "one\ntwo\n");
    assert_eq!(env.read("new.txt"), "new\n");
    assert_eq!(env.git(&["rev-parse", "HEAD"]), head, "apply moved HEAD");
    assert_eq!(
        fs_err::read(env.work().join(".git/index")).unwrap(),
        index,
        "apply touched the index"
    );
    let step = env.run(&["apply", "last", "--step", "nope"]);
    assert_eq!(step.code, 2);
    assert!(
        step.stderr.contains("its steps that passed: `e`"),
        "{}",
        step.stderr
    );
}

#[test]
fn clean_is_idempotent_and_says_what_it_removed() {
    let env = env();
    env.repo(&[
        ("missions/hello.toml", HELLO),
        (
            "missions/fail.toml",
            "[steps.x]\nrun = \"exit 1\"\nattempts = 1\n",
        ),
    ]);
    assert_eq!(env.run(&["run", "hello"]).code, 0);
    assert_eq!(env.run(&["run", "hello"]).code, 0);
    // A failed step's worktree is kept for a look, until the next run or `clean`.
    assert_eq!(env.run(&["run", "fail"]).code, 1);
    let show = env.run(&["show", "last"]);
    assert!(show.stdout.contains("worktree kept at"), "{}", show.stdout);
    let first = env.run(&["clean"]);
    assert_eq!(first.code, 0);
    let fail_run = env.journal()[0]["run"].as_str().unwrap().to_owned();
    let mut said = first.stderr.lines();
    assert_eq!(
        said.next(),
        Some(format!("released the worktree step x of run {fail_run} kept for a look").as_str())
    );
    let pool = said.next().unwrap_or_default();
    assert!(
        pool.starts_with("the pool of warm worktrees holds ")
            && pool.ends_with(" (`medley clean --pool` removes it)"),
        "{}",
        first.stderr
    );

    let second = env.run(&["clean"]);
    assert!(
        second.stderr.starts_with("nothing to clean\n"),
        "{}",
        second.stderr
    );
    let runs = env.run(&["clean", "--runs"]);
    assert_eq!(runs.code, 0);
    // The older hello run was never applied: it is kept whole, and the next clean still sees it.
    assert!(
        runs.stderr.contains("kept run ") && runs.stderr.contains(" and its branch medley/hello/"),
        "{}",
        runs.stderr
    );
    assert!(
        runs.stderr
            .contains("`medley clean --runs --force` removes it"),
        "{}",
        runs.stderr
    );
    assert_eq!(
        env.run(&["runs"]).stdout.lines().count(),
        4,
        "header, the kept hello, the newest hello, the newest fail"
    );
    let force = env.run(&["clean", "--runs", "--force"]);
    assert!(
        force.stderr.contains("removed branch medley/hello/"),
        "the never-applied run goes with --force: {}",
        force.stderr
    );
    assert_eq!(env.result_branches().len(), 1, "the newest hello's");
    assert_eq!(env.run(&["runs"]).stdout.lines().count(), 3);
    // --all: each mission's newest run goes too; nothing of medley's is left in `git branch`.
    let all = env.run(&["clean", "--runs", "--all", "--force"]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert!(env.result_branches().is_empty());
    assert_eq!(env.git(&["branch", "--list", "medley/*"]), "");
    assert_eq!(
        env.run(&["runs"]).stderr,
        "no runs yet: start one with `medley run`\n"
    );
    // The pool goes with --pool, and git forgets its worktrees.
    assert!(!env.pool_slots().is_empty());
    let pool = env.run(&["clean", "--pool"]);
    assert!(
        pool.stderr
            .starts_with("removed the pool of warm worktrees ("),
        "{}",
        pool.stderr
    );
    assert!(env.pool_slots().is_empty());
    assert_eq!(env.git(&["worktree", "list"]).lines().count(), 1);
    assert_eq!(env.run(&["clean", "--pool"]).stderr, "nothing to clean\n");
}

#[test]
fn json_output_is_the_event_stream_and_its_format_is_pinned() {
    let env = env();
    env.repo(&[(
        "missions/pin.toml",
        "gate = \"test -f b.txt\"\n\n[steps.a]\nrun = \"echo a > a.txt\"\ngate = \"test -f a.txt\"\n\n[steps.b]\nneeds = [\"a\"]\nrun = \"echo b > b.txt\"\n\n[steps.c]\nneeds = [\"a\"]\nif = \"false\"\nrun = \"true\"\n",
    )]);
    let out = env.run(&["run", "pin", "--output", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        events,
        env.journal(),
        "stdout carries exactly the journal's events"
    );
    let run = events[0]["run"].as_str().unwrap().to_owned();
    let text = out.stdout.replace(&run, "<run>");
    insta::with_settings!({
        snapshot_path => "../snapshots",
        prepend_module_to_snapshot => false,
        filters => vec![
            (r#""ts":"[^"]+""#, r#""ts":"<ts>""#),
            (r"[0-9a-f]{40}", "<sha>"),
            (r#""duration_ms":\d+"#, r#""duration_ms":<ms>"#),
            (r#""worktree":"[^"]+""#, r#""worktree":"<worktree>""#),
        ],
    }, {
        insta::assert_snapshot!("run-events-json", text);
    });
}

#[test]
fn two_runs_at_once_share_no_worktree_and_no_ref() {
    let env = env();
    let gate = env.work().parent().unwrap().join("go");
    env.repo(&[(
        "missions/wait.toml",
        &format!(
            "[steps.a]\nrun = \"echo $MEDLEY_RUN > run.txt; pwd > where.txt; while [ ! -e {g} ]; do sleep 0.05; done\"\n",
            g = gate.display()
        ),
    )]);
    let spawn = || {
        env.medley()
            .args(["run", "wait"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut first, mut second) = (spawn(), spawn());
    // Both are running their step at once before either may finish.
    let worktrees = env.home().join(".cache/medley/worktrees");
    for _ in 0..6000 {
        if walk_files(&worktrees)
            .iter()
            .filter(|p| p.ends_with("where.txt"))
            .count()
            == 2
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    fs_err::write(&gate, "").unwrap();
    assert!(first.wait().unwrap().success());
    assert!(second.wait().unwrap().success());
    let branches = env.result_branches();
    assert_eq!(branches.len(), 2, "{branches:?}");
    let (a, b) = (env.tree(&branches[0]), env.tree(&branches[1]));
    assert_ne!(
        a["run.txt"], b["run.txt"],
        "each run's step saw its own run id"
    );
    assert_ne!(
        a["where.txt"], b["where.txt"],
        "the two runs shared a worktree"
    );
    let refs = env.git(&["for-each-ref", "--format=%(refname)", "refs/medley/"]);
    let refs: String = refs
        .lines()
        .filter(|r| !r.starts_with("refs/medley/cache/"))
        .map(|r| format!("{r}\n"))
        .collect();
    assert_eq!(
        refs.lines().count(),
        4,
        "a base and a step ref per run: {refs}"
    );
}

/// A disk that fills up mid-run, simulated with a file-size limit (writes past it fail, as on a
/// full disk): a clear error, and a journal that is still readable.
#[test]
fn a_full_disk_stops_the_run_with_a_clear_error_and_a_readable_journal() {
    let env = env();
    let mut mission = String::new();
    for i in 0..60 {
        mission.push_str(&format!("[steps.s{i}]\nrun = \"true\"\n"));
        if i > 0 {
            mission.push_str(&format!("needs = [\"s{}\"]\n", i - 1));
        }
    }
    env.repo(&[("missions/many.toml", &mission)]);
    let output = {
        let program = env.medley().get_program().to_owned();
        let mut cmd = std::process::Command::new("sh");
        cmd.current_dir(env.work())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", env.home())
            .env("NO_COLOR", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .arg("-c")
            // 16 blocks of 512 bytes: the journal outgrows it after a few dozen events.
            .arg("trap '' XFSZ; ulimit -f 16; exec \"$0\" run many --output plain")
            .arg(program);
        cmd.output().unwrap()
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write run state at"), "{stderr}");
    assert!(stderr.contains("events.jsonl"), "{stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    assert!(stderr.contains("check free space"), "{stderr}");
    // The journal written so far reads back: `show` lists the steps that ran.
    let show = env.run(&["show", "last"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    let row = |step: &str| {
        show.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(step))
    };
    assert!(
        row("s0").is_some_and(|l| l.contains("passed")),
        "{}",
        show.stdout
    );
    assert!(
        row("s59").is_none(),
        "the run stopped starting steps: {}",
        show.stdout
    );
}

/// `--set` values reach `run`, `gate` and `setup` byte for byte, in every quoting context,
/// and never run (issue 10).
#[test]
fn a_set_value_never_runs_in_any_quoting_context() {
    let env = env();
    let mission = r#"setup = "printf '%s' '{{ vars.x }}' > setup.txt"

[vars]
x = "plain"

[steps.quote]
run = """
printf '%s' {{ vars.x }} > bare.txt
printf '%s' "{{ vars.x }}" > double.txt
printf '%s' '{{ vars.x }}' > single.txt
cat > heredoc.txt <<EOF
{{ vars.x }}
EOF
: `printf '%s' {{ vars.x }} > backtick.txt`
: "$(printf '%s' "{{ vars.x }}" > subst.txt)"
echo "{{ vars.x }}"
"""
gate = "test \"$(cat double.txt)\" = \"{{ vars.x }}\" && test ! -e pwned"
"#;
    env.repo(&[("README.md", "# demo\n"), ("missions/quote.toml", mission)]);
    let payload = "$(touch pwned)`touch pwned`'\"; touch pwned; \"'\\\nEOF\nx";
    let set = format!("x={payload}");
    let out = env.run(&["run", "quote", "--set", &set]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tree = env.tree(&env.result_branches()[0]);
    assert!(!tree.contains_key("pwned"), "{tree:?}");
    for file in ["bare", "double", "single", "backtick", "subst", "setup"] {
        assert_eq!(tree[&format!("{file}.txt")], payload, "{file}");
    }
    assert_eq!(tree["heredoc.txt"], format!("{payload}\n"));
    // Events show the values written in, quoted for where they stand.
    let gate = &events_of(&env, "gate_started")[0];
    let shown = gate["command"].as_str().unwrap();
    assert!(
        shown.contains("\\$(touch pwned)\\`touch pwned\\`"),
        "{shown}"
    );
    assert!(!shown.contains("MEDLEY_V"), "{shown}");
}

#[test]
fn at_most_max_parallel_steps_work_at_once() {
    let env = env();
    let log = env.home().join("overlap.log");
    let log = log.display();
    let mut mission = String::from("max_parallel = 2\n");
    for i in 0..6 {
        mission.push_str(&format!(
            "\n[steps.s{i}]\nrun = \"echo start $(date +%s%N) >> {log}; sleep 0.3; echo end $(date +%s%N) >> {log}\"\n"
        ));
    }
    env.repo(&[("missions/par.toml", &mission)]);
    let out = env.run(&["run", "par", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = fs_err::read_to_string(env.home().join("overlap.log")).unwrap();
    let mut marks: Vec<(u128, i32)> = text
        .lines()
        .map(|l| {
            let (what, at) = l.split_once(' ').unwrap();
            (at.parse().unwrap(), if what == "start" { 1 } else { -1 })
        })
        .collect();
    assert_eq!(marks.len(), 12, "{text}");
    // Ends before starts at the same instant.
    marks.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in marks {
        now += d;
        most = most.max(now);
    }
    assert_eq!(most, 2, "steps at work at once:\n{text}");
}
