//! Warm worktrees: steps lease slots of the repository's pool, so ignored build caches carry
//! over, setup runs only when its files change, `.worktreeinclude` copies stay fresh, and two
//! runs never share a slot.

use medley_tests::TestEnv;

use crate::env;

fn outcome(env: &TestEnv, file: &str) -> String {
    let branch = env.result_branches().pop().expect("a result branch");
    env.git(&["show", &format!("{branch}:{file}")])
}

/// Removes the result branches, so the next run's is the only one.
fn forget_branches(env: &TestEnv) {
    for branch in env.result_branches() {
        env.git(&["branch", "-D", "-q", &branch]);
    }
}

const WARM: &str = "[steps.build]\nrun = \"if test -f build/cache; then echo warm; else echo cold; fi > state.txt; mkdir -p build; touch build/cache\"\ncache = false\n";

#[test]
fn a_second_run_finds_the_ignored_build_cache_the_first_left() {
    let env = env();
    env.repo(&[(".gitignore", "build/\n"), ("missions/m.toml", WARM)]);
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(outcome(&env, "state.txt"), "cold\n");
    forget_branches(&env);
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(outcome(&env, "state.txt"), "warm\n");
    // Nothing ignored reaches a result.
    let branch = env.result_branches().pop().unwrap();
    assert!(!env.tree(&branch).contains_key("build/cache"));

    // Opting out: a brand-new worktree, cold.
    forget_branches(&env);
    assert_eq!(env.run(&["run", "--fresh-worktrees"]).code, 0);
    assert_eq!(outcome(&env, "state.txt"), "cold\n");
    forget_branches(&env);
    env.write("missions/m.toml", &format!("{WARM}worktree = \"fresh\"\n"));
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(outcome(&env, "state.txt"), "cold\n");
}

#[test]
fn setup_with_declared_files_runs_only_when_they_change() {
    let env = env();
    let count = env.home().join("setup.count");
    env.repo(&[
        ("lock.txt", "v1\n"),
        (
            "missions/m.toml",
            &format!(
                "setup = \"echo ran >> {}\"\nsetup_files = [\"lock.txt\"]\n\n[steps.a]\nrun = \"true\"\ncache = false\n",
                count.display()
            ),
        ),
    ]);
    let runs = |_: &TestEnv| {
        fs_err::read_to_string(&count)
            .unwrap_or_default()
            .lines()
            .count()
    };
    for _ in 0..3 {
        let out = env.run(&["run"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(runs(&env), 1, "setup ran once for three runs");
    env.write("lock.txt", "v2\n");
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(runs(&env), 2, "and again once its file changed");
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(runs(&env), 2);

    // Without `setup_files`, setup runs at every lease, as it always did.
    env.write(
        "missions/m.toml",
        &format!(
            "setup = \"echo ran >> {}\"\n\n[steps.a]\nrun = \"true\"\ncache = false\n",
            count.display()
        ),
    );
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(runs(&env), 4);
}

#[test]
fn an_edited_worktreeinclude_file_reaches_the_next_lease() {
    let env = env();
    env.repo(&[
        (".gitignore", ".env\n"),
        (".worktreeinclude", ".env\n"),
        (
            "missions/m.toml",
            "[steps.a]\nrun = \"cat .env > seen.txt\"\ncache = false\n",
        ),
    ]);
    env.write(".env", "KEY=one\n");
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(outcome(&env, "seen.txt"), "KEY=one\n");
    let slots = env.pool_slots();
    forget_branches(&env);
    env.write(".env", "KEY=two\n");
    assert_eq!(env.run(&["run"]).code, 0);
    assert_eq!(outcome(&env, "seen.txt"), "KEY=two\n");
    assert_eq!(env.pool_slots(), slots, "the same slot, refreshed");
}

#[test]
fn two_concurrent_runs_never_share_a_slot() {
    let env = env();
    let cwds = env.home().join("cwds");
    env.repo(&[(
        "missions/m.toml",
        &format!(
            "[steps.a]\nrun = \"pwd >> {c}; while [ $(wc -l < {c}) -lt 2 ]; do sleep 0.05; done\"\ncache = false\ntimeout = \"60s\"\n",
            c = cwds.display()
        ),
    )]);
    let start = || {
        env.medley()
            .args(["run", "--output", "plain"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (start(), start());
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let seen: Vec<String> = fs_err::read_to_string(&cwds)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0], seen[1], "both runs ran in the same worktree");
    assert!(seen.iter().all(|c| c.contains("/pool/s")), "{seen:?}");
}
