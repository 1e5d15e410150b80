//! Nothing a step starts outlives it: not a process that left its group (`setsid`), not after
//! SIGINT, SIGTERM, SIGHUP or a timeout, and not after medley itself was killed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use medley_tests::TestEnv;
use rustix::process::Signal;

use crate::env;

/// Whether a process runs (a zombie, ended and not yet reaped, does not).
fn alive(pid: i32) -> bool {
    fs_err::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn pids(path: &Path) -> Vec<i32> {
    fs_err::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Signals one process by syscall (procps `kill -SIG -PGID` here signals every process).
fn signal(pid: i32, signal: Signal) {
    let pid = rustix::process::Pid::from_raw(pid).expect("a positive pid");
    rustix::process::kill_process(pid, signal).expect("the process exists");
}

/// Waits (up to a minute) until `path` lists `n` pids.
fn wait_for_pids(path: &Path, n: usize) {
    for _ in 0..6000 {
        if pids(path).len() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never listed {n} pids", path.display());
}

/// Kills what a failed test left, so a red test does not leave sleepers behind.
struct Reaper(Vec<PathBuf>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for path in &self.0 {
            for pid in pids(path) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
        }
    }
}

/// A repository whose step `a` starts a `setsid` sleeper (its pid in `escaped`), a sleeper in
/// its own group (`grouped`), and its shell's pid, then waits; with `go` present it passes.
fn escaping(env: &TestEnv, extra: &str) -> (PathBuf, PathBuf) {
    let dir = env.work().parent().unwrap().to_path_buf();
    let d = dir.display();
    let mission = format!(
        "[steps.a]\n{extra}run = '''\nif [ -e {d}/go ]; then echo done > a.txt; exit 0; fi\n\
         setsid sleep 300 > /dev/null 2>&1 < /dev/null &\necho $! >> {d}/escaped\n\
         sleep 300 &\necho $! >> {d}/grouped\necho $$ >> {d}/grouped\nwait\n'''\n"
    );
    env.repo(&[("missions/m.toml", &mission), ("README.md", "# x\n")]);
    (dir.join("escaped"), dir.join("grouped"))
}

fn assert_all_dead(files: &[&Path]) {
    for file in files {
        let listed = pids(file);
        assert!(!listed.is_empty(), "{} lists no pid", file.display());
        for pid in listed {
            assert!(
                !alive(pid),
                "process {pid} ({}) outlived its step",
                file.display()
            );
        }
    }
}

fn stopped_by(sig: Signal) {
    let env = env();
    let (escaped, grouped) = escaping(&env, "");
    let _reaper = Reaper(vec![escaped.clone(), grouped.clone()]);
    let mut child = env
        .medley()
        .args(["run", "m", "--output", "plain"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_pids(&escaped, 1);
    wait_for_pids(&grouped, 2);
    signal(child.id() as i32, sig);
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "{sig:?} stops the run as cancelled"
    );
    assert_all_dead(&[&escaped, &grouped]);
}

#[test]
fn sigint_stops_a_process_that_left_its_group() {
    stopped_by(Signal::INT);
}

#[test]
fn sigterm_stops_a_process_that_left_its_group() {
    stopped_by(Signal::TERM);
}

#[test]
fn sighup_stops_the_run_like_sigterm() {
    stopped_by(Signal::HUP);
}

#[test]
fn a_timeout_stops_a_process_that_left_its_group() {
    let env = env();
    let (escaped, grouped) = escaping(&env, "timeout = \"1s\"\nattempts = 1\n");
    let _reaper = Reaper(vec![escaped.clone(), grouped.clone()]);
    let out = env.run(&["run", "m"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_all_dead(&[&escaped, &grouped]);
}

#[test]
fn a_step_that_passes_leaves_no_process_that_left_its_group() {
    let env = env();
    let dir = env.work().parent().unwrap().to_path_buf();
    let escaped = dir.join("escaped");
    let _reaper = Reaper(vec![escaped.clone()]);
    env.repo(&[(
        "missions/m.toml",
        &format!(
            "[steps.a]\nrun = \"setsid sleep 300 > /dev/null 2>&1 < /dev/null & echo $! >> {}\"\n",
            escaped.display()
        ),
    )]);
    let out = env.run(&["run", "m"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_all_dead(&[&escaped]);
}

/// Kills medley with SIGKILL while step `a` waits: what it started is left running.
fn kill_medley_mid_step(env: &TestEnv, escaped: &Path, grouped: &Path) {
    let mut child = env
        .medley()
        .args(["run", "m"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_pids(escaped, 1);
    wait_for_pids(grouped, 2);
    signal(child.id() as i32, Signal::KILL);
    child.wait().unwrap();
    for pid in pids(escaped).into_iter().chain(pids(grouped)) {
        assert!(alive(pid), "SIGKILL gave medley no chance to stop {pid}");
    }
}

#[test]
fn resume_stops_what_the_killed_run_left_before_it_runs() {
    let env = env();
    let dir = env.work().parent().unwrap().to_path_buf();
    let d = dir.display();
    // The resumed step notes which old processes it still sees alive.
    let check = format!(
        "for p in $(cat {d}/escaped {d}/grouped); do s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null); \
         if [ -n \"$s\" ] && [ \"$s\" != Z ]; then echo $p >> {d}/seen-alive; fi; done\n"
    );
    let (escaped, grouped) = escaping(&env, &format!("gate = '''\n{check}'''\n"));
    let _reaper = Reaper(vec![escaped.clone(), grouped.clone()]);
    // The gate of the first run never comes: the step waits.
    kill_medley_mid_step(&env, &escaped, &grouped);
    fs_err::write(dir.join("go"), "").unwrap();
    let out = env.run(&["resume", "last"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_all_dead(&[&escaped, &grouped]);
    assert_eq!(
        fs_err::read_to_string(dir.join("seen-alive")).unwrap_or_default(),
        "",
        "the resumed step saw the old processes alive"
    );
}

#[test]
fn the_next_run_stops_what_a_killed_run_left() {
    let env = env();
    let (escaped, grouped) = escaping(&env, "");
    let _reaper = Reaper(vec![escaped.clone(), grouped.clone()]);
    kill_medley_mid_step(&env, &escaped, &grouped);
    env.write("missions/other.toml", "[steps.b]\nrun = \"true\"\n");
    let out = env.run(&["run", "other"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_all_dead(&[&escaped, &grouped]);
}

#[test]
fn clean_stops_what_a_killed_run_left() {
    let env = env();
    let (escaped, grouped) = escaping(&env, "");
    let _reaper = Reaper(vec![escaped.clone(), grouped.clone()]);
    kill_medley_mid_step(&env, &escaped, &grouped);
    let out = env.run(&["clean"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_all_dead(&[&escaped, &grouped]);
}

#[test]
fn sighup_stops_watch_and_what_its_step_started() {
    let env = env();
    let (escaped, grouped) = escaping(&env, "");
    let _reaper = Reaper(vec![escaped.clone(), grouped.clone()]);
    let mut child = env
        .medley()
        .args(["watch", "m", "--output", "plain"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_pids(&escaped, 1);
    wait_for_pids(&grouped, 2);
    signal(child.id() as i32, Signal::HUP);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_all_dead(&[&escaped, &grouped]);
}
