//! `medley resume` after a SIGKILL at several points of a run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use medley_tests::TestEnv;

use crate::env;

pub(crate) fn signal_kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a positive pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("medley is alive");
}

/// Kills the process groups whose leaders' pids `path` lists (what SIGKILL left running).
pub(crate) fn kill_groups(path: &Path) {
    for pid in fs_err::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
    {
        if let Some(group) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

pub(crate) fn wait_for(what: impl Fn() -> bool) {
    for _ in 0..6000 {
        if what() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("waited a minute in vain");
}

pub(crate) fn lines(path: &Path) -> usize {
    fs_err::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

struct Setup {
    env: TestEnv,
    dir: PathBuf,
}

/// A chain a -> b -> c. `b` (or its gate, with `in_gate`) hangs, writing its shell's pid,
/// until the test creates `go`; every step counts its runs in `<step>.count`.
fn setup(in_gate: bool) -> Setup {
    let env = env();
    let dir = env.work().parent().unwrap().to_path_buf();
    let d = dir.display();
    let hang = format!("if [ ! -e {d}/go ]; then echo $$ >> {d}/pids; sleep 300; fi");
    let (run_b, gate_b) = if in_gate {
        (format!("echo b >> {d}/b.count; echo b > b.txt"), hang)
    } else {
        (
            format!("echo b >> {d}/b.count; {hang}; echo b > b.txt"),
            "true".to_owned(),
        )
    };
    let mission = format!(
        "[steps.a]\nrun = \"echo a >> {d}/a.count; echo a > a.txt\"\n\n\
         [steps.b]\nneeds = [\"a\"]\nrun = \"{run_b}\"\ngate = \"{gate_b}\"\n\n\
         [steps.c]\nneeds = [\"b\"]\nrun = \"echo c >> {d}/c.count; cat a.txt b.txt > c.txt\"\n"
    );
    env.repo(&[("missions/chain.toml", &mission), ("README.md", "# x\n")]);
    env.write("README.md", "# x, edited and not committed\n");
    Setup { env, dir }
}

fn kill_mid_run(s: &Setup) {
    let mut child = s
        .env
        .medley()
        .args(["run", "chain"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(|| lines(&s.dir.join("pids")) > 0);
    signal_kill(child.id());
    child.wait().unwrap();
    kill_groups(&s.dir.join("pids"));
    fs_err::write(s.dir.join("go"), "").unwrap();
}

fn resume_completes(s: &Setup) {
    let before = s.env.fingerprint();
    let out = s.env.run(&["resume", "last", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        s.env.fingerprint(),
        before,
        "resume changed the user's files"
    );
    let branches = s.env.result_branches();
    assert_eq!(branches.len(), 1, "{branches:?}");
    let tree = s.env.tree(&branches[0]);
    assert_eq!(tree["c.txt"], "a\nb\n");
    assert_eq!(
        tree["README.md"], "# x, edited and not committed\n",
        "the run's own base was kept"
    );
    let show = s.env.run(&["show", "last"]);
    assert!(show.stdout.contains("outcome   passed"), "{}", show.stdout);
    // No worktree of the run is left.
    assert!(s.env.worktrees_outside_pool().is_empty());
}

#[test]
fn a_run_killed_mid_command_resumes_keeping_what_passed() {
    let s = setup(false);
    kill_mid_run(&s);
    resume_completes(&s);
    assert_eq!(
        lines(&s.dir.join("a.count")),
        1,
        "the passed step is kept, not run again"
    );
    assert_eq!(
        lines(&s.dir.join("b.count")),
        2,
        "the killed step runs again"
    );
    assert_eq!(lines(&s.dir.join("c.count")), 1);
}

#[test]
fn a_run_killed_mid_gate_resumes() {
    let s = setup(true);
    kill_mid_run(&s);
    resume_completes(&s);
    assert_eq!(lines(&s.dir.join("a.count")), 1);
    assert_eq!(lines(&s.dir.join("b.count")), 2);
}

#[test]
fn a_run_killed_before_its_first_step_resumes_and_a_torn_journal_line_is_ignored() {
    let s = setup(false);
    fs_err::write(s.dir.join("go"), "").unwrap();
    let runs = s.env.work().join(".git/medley/runs");
    let mut child = s
        .env
        .medley()
        .args(["run", "chain"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(|| {
        fs_err::read_dir(&runs)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                fs_err::read_to_string(e.path().join("events.jsonl"))
                    .is_ok_and(|t| t.contains("run_started"))
            })
    });
    signal_kill(child.id());
    child.wait().unwrap();
    // As if the kill came mid-write.
    let run = fs_err::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut journal = fs_err::OpenOptions::new()
        .append(true)
        .open(run.join("events.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut journal, b"{\"v\":1,\"ts\":\"2026-11-").unwrap();
    drop(journal);
    resume_completes(&s);
    assert_eq!(lines(&s.dir.join("c.count")), 1);
    let text = fs_err::read_to_string(run.join("events.jsonl")).unwrap();
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "the torn line was cut off before the resume wrote on: {text}"
    );
}

#[test]
fn a_passed_run_has_nothing_to_resume() {
    let env = env();
    env.repo(&[("missions/ok.toml", "[steps.a]\nrun = \"true\"\n")]);
    assert_eq!(env.run(&["run", "ok"]).code, 0);
    let out = env.run(&["resume", "last"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("passed: there is nothing to resume"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_run_killed_mid_agent_resumes_and_the_agent_runs_again() {
    let env = env();
    let dir = env.work().parent().unwrap().to_path_buf();
    let pids = dir.join("agent.pids");
    env.fakes(
        env!("CARGO_BIN_EXE_fake-agent"),
        &["claude"],
        &format!(
            "claude: pid {}; hang\nclaude: write fixed.txt yes\n",
            pids.display()
        ),
    );
    env.repo(&[(
        "missions/a.toml",
        &format!("[steps.prep]\nrun = \"echo prep >> {d}/prep.count; echo p > p.txt\"\n\n[steps.fix]\nneeds = [\"prep\"]\nagent = \"claude\"\nprompt = \"Fix.\"\n", d = dir.display()),
    )]);
    let mut child = env
        .medley()
        .args(["run", "a"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(|| lines(&pids) > 0);
    signal_kill(child.id());
    child.wait().unwrap();
    for pid in fs_err::read_to_string(&pids).unwrap().split_whitespace() {
        let pid = rustix::process::Pid::from_raw(pid.parse().unwrap()).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let before = env.fingerprint();
    let out = env.run(&["resume", "last"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.fingerprint(), before);
    assert_eq!(lines(&dir.join("prep.count")), 1, "the passed step is kept");
    assert_eq!(env.fake_calls().len(), 2, "the agent ran again");
    let tree = env.tree(&env.result_branches()[0]);
    assert_eq!(tree["fixed.txt"], "yes");
    assert_eq!(tree["p.txt"], "p\n");
}
