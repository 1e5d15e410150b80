//! A property: medley killed (SIGKILL) at any point of a mixed mission, then resumed, keeps
//! every step that had passed, runs no passed step twice, and leaves no worktree and no
//! process behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::{ProptestConfig, prop_assert, prop_assert_eq, proptest};
use rustix::process::Signal;

use crate::env;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-agent");

/// Events a full run of the mission below writes, roughly: kill points are drawn below it.
const EVENTS: usize = 36;

fn alive(pid: i32) -> bool {
    fs_err::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn lines(path: &Path) -> Vec<String> {
    fs_err::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files
}

/// The journal's events (of the only run) as JSON values.
fn journal(work: &Path) -> Vec<serde_json::Value> {
    let runs = work.join(".git/medley/runs");
    let Some(dir) = fs_err::read_dir(&runs)
        .into_iter()
        .flatten()
        .flatten()
        .next()
    else {
        return Vec::new();
    };
    lines(&dir.path().join("events.jsonl"))
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Runs the mission, kills medley once its journal has `kill_at` events (or lets it end),
/// resumes, and checks what must hold.
fn killed_and_resumed(kill_at: usize) -> Result<(), proptest::test_runner::TestCaseError> {
    let env = env();
    let dir = env.work().parent().unwrap().to_path_buf();
    let d = dir.display();
    env.fakes(FAKE, &["claude"], "claude: write fixed.txt yes\n");
    let mission = format!(
        "[steps.a]\nrun = \"echo $MEDLEY_STEP >> {d}/count; sleep 0.1; echo a > a.txt\"\n\n\
         [steps.b]\nneeds = [\"a\"]\nmatrix = {{ n = [\"1\", \"2\"] }}\n\
         run = \"echo $MEDLEY_STEP >> {d}/count; setsid sleep 300 > /dev/null 2>&1 < /dev/null & echo $! >> {d}/pids; sleep 0.1; echo {{{{ matrix.n }}}} > b{{{{ matrix.n }}}}.txt\"\n\
         gate = \"test -s b{{{{ matrix.n }}}}.txt\"\n\n\
         [steps.fix]\nneeds = [\"a\"]\nagent = \"claude\"\nprompt = \"Fix.\"\n\n\
         [steps.c]\nneeds = [\"b\", \"fix\"]\n\
         run = \"echo $MEDLEY_STEP >> {d}/count; cat a.txt b1.txt b2.txt fixed.txt > c.txt\"\n"
    );
    env.repo(&[("missions/m.toml", &mission), ("README.md", "# x\n")]);

    let mut child = env
        .medley()
        .args(["run", "m"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut ended = false;
    for _ in 0..6000 {
        if journal(&env.work()).len() >= kill_at {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !ended {
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, Signal::KILL);
    }
    child.wait().unwrap();
    // A child it was starting may hold its run's lock until it has started (exec closes it).
    let runs = env.work().join(".git/medley/runs");
    for _ in 0..6000 {
        let live = fs_err::read_dir(&runs)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| medley_engine::journal::is_live(&e.path()));
        if !live {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    // What had passed when medley died.
    let before = journal(&env.work());
    let passed_before: Vec<String> = before
        .iter()
        .filter(|e| e["type"] == "step_finished" && e["outcome"] == "passed")
        .map(|e| e["step"].as_str().unwrap().to_owned())
        .collect();
    let run_passed = before
        .iter()
        .any(|e| e["type"] == "run_finished" && e["outcome"] == "passed");
    if !run_passed {
        let out = env.run(&["resume", "last"]);
        prop_assert_eq!(out.code, 0, "kill at {}: {}", kill_at, out.stderr);
    }

    let branches = env.result_branches();
    prop_assert_eq!(branches.len(), 1);
    let tree = env.tree(&branches[0]);
    prop_assert_eq!(tree["c.txt"].as_str(), "a\n1\n2\nyes");
    // No passed step ran again; every step ran once or, when it was killed, twice.
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for step in lines(&dir.join("count")) {
        *runs.entry(step).or_default() += 1;
    }
    for step in ["a", "b.1", "b.2", "c"] {
        let n = runs.get(step).copied().unwrap_or(0);
        if passed_before.iter().any(|s| s == step) {
            prop_assert_eq!(
                n,
                1,
                "kill at {}: passed step `{}` ran again",
                kill_at,
                step
            );
        } else {
            prop_assert!(
                (1..=2).contains(&n),
                "kill at {kill_at}: `{step}` ran {n} times"
            );
        }
    }
    let calls = env.fake_calls().len();
    if passed_before.iter().any(|s| s == "fix") {
        prop_assert_eq!(
            calls,
            1,
            "kill at {}: the passed agent step ran again",
            kill_at
        );
    } else {
        prop_assert!(
            (1..=2).contains(&calls),
            "kill at {kill_at}: {calls} agent calls"
        );
    }
    // Nothing is left but the pool's free warm worktrees: no other worktree, no process.
    prop_assert!(env.worktrees_outside_pool().is_empty());
    let left: Vec<_> = files_under(&env.home().join(".cache/medley/worktrees"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("/pool/"))
        .collect();
    prop_assert!(left.is_empty(), "kill at {kill_at}: {left:?}");
    for pid in lines(&dir.join("pids")) {
        let pid: i32 = pid.parse().unwrap();
        let running = alive(pid);
        if running && let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, Signal::KILL);
        }
        prop_assert!(
            !running,
            "kill at {kill_at}: process {pid} was left running"
        );
    }
    Ok(())
}

proptest! {
    // A handful of kill points: each case is a real run and a resume. `MEDLEY_KILL_CASES=200`
    // draws more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MEDLEY_KILL_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(6),
        failure_persistence: None,
        max_shrink_iters: 4,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_run_killed_at_any_point_resumes_without_running_a_passed_step_twice(kill_at in 1usize..EVENTS) {
        killed_and_resumed(kill_at)?;
    }
}

#[test]
fn ref_locks_left_by_a_kill_mid_update_do_not_fail_the_resume() {
    let env = env();
    let dir = env.work().parent().unwrap().to_path_buf();
    let d = dir.display();
    env.repo(&[(
        "missions/m.toml",
        &format!(
            "[steps.a]\nrun = \"echo $$ >> {d}/pids; if [ ! -e {d}/go ]; then sleep 300; fi; echo a > a.txt\"\n"
        ),
    )]);
    let mut child = env
        .medley()
        .args(["run", "m"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..6000 {
        if !lines(&dir.join("pids")).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, Signal::KILL).unwrap();
    child.wait().unwrap();
    // As if medley died while git2 updated the step's ref.
    let run = journal(&env.work())[0]["run"].as_str().unwrap().to_owned();
    let refs = env.work().join(format!(".git/refs/medley/{run}/steps"));
    fs_err::create_dir_all(&refs).unwrap();
    fs_err::write(refs.join("a.lock"), "").unwrap();
    let branch = env.work().join(".git/refs/heads/medley/m");
    fs_err::create_dir_all(&branch).unwrap();
    fs_err::write(branch.join(format!("{run}.lock")), "").unwrap();
    fs_err::write(dir.join("go"), "").unwrap();
    let out = env.run(&["resume", "last"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.result_branches().len(), 1);
}
