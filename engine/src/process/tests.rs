//! The process runner against real processes: exits, output, timeouts, stops in stages, trees.

use super::*;
use rustix::process::{Pid, Signal};

fn grace() -> Grace {
    Grace {
        interrupt: Duration::from_millis(200),
        terminate: Duration::from_millis(200),
    }
}

/// The pid a test's command wrote to `path`.
fn read_pid(path: &std::path::Path) -> i32 {
    fs_err::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs_err::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z")
}

#[tokio::test]
async fn exit_codes_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (_tx, mut rx) = watch::channel(false);
    let spec = Spec::shell("echo out; echo err >&2; exit 3", dir.path(), &log);
    let exit = run(&spec, Duration::from_secs(10), &mut rx, grace())
        .await
        .unwrap();
    assert_eq!(exit, Exit::Code(3));
    assert_eq!(fs_err::read_to_string(&log).unwrap(), "out\nerr\n");
    let missing = Spec::shell("no-such-command-medley", dir.path(), &log);
    let exit = run(&missing, Duration::from_secs(10), &mut rx, grace())
        .await
        .unwrap();
    assert_eq!(exit, Exit::Code(127));
}

#[tokio::test]
async fn timeout_stops_the_whole_group_including_background_processes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let pids = dir.path().join("pids");
    let (_tx, mut rx) = watch::channel(false);
    // A background sleeper that ignores SIGINT and SIGTERM, and a foreground one.
    let command = format!(
        "(trap '' INT TERM; sleep 300) & echo $! > {p}; sleep 300 & echo $! >> {p}; wait",
        p = pids.display()
    );
    let spec = Spec::shell(&command, dir.path(), &log);
    let exit = run(&spec, Duration::from_millis(300), &mut rx, grace())
        .await
        .unwrap();
    assert_eq!(exit, Exit::TimedOut);
    for pid in fs_err::read_to_string(&pids).unwrap().lines() {
        assert!(
            !alive(pid.parse().unwrap()),
            "process {pid} outlived its step"
        );
    }
}

#[tokio::test]
async fn cancel_stops_the_group_and_leftovers_of_a_finished_command_are_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let pids = dir.path().join("pids");
    let (tx, mut rx) = watch::channel(false);
    let spec = Spec::shell(
        &format!("sleep 300 & echo $! > {}; wait", pids.display()),
        dir.path(),
        &log,
    );
    let task = tokio::spawn(async move {
        let exit = run(&spec, Duration::from_secs(60), &mut rx, grace()).await;
        exit.unwrap()
    });
    while !pids.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.send(true).unwrap();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
    let pid = read_pid(&pids);
    assert!(!alive(pid));

    // A command that exits at once but leaves a background process behind.
    let (_tx, mut rx) = watch::channel(false);
    let spec = Spec::shell(
        &format!("sleep 300 & echo $! > {}", pids.display()),
        dir.path(),
        &log,
    );
    let exit = run(&spec, Duration::from_secs(60), &mut rx, grace())
        .await
        .unwrap();
    assert_eq!(exit, Exit::Code(0));
    let pid = read_pid(&pids);
    assert!(!alive(pid));
}

#[tokio::test]
async fn a_process_that_left_the_group_is_stopped_and_the_start_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let pids = dir.path().join("pids");
    let record = dir.path().join("processes.jsonl");
    let (_tx, mut rx) = watch::channel(false);
    let mut spec = Spec::shell(
        &format!(
            "setsid sleep 300 > /dev/null 2>&1 < /dev/null & echo $! > {}",
            pids.display()
        ),
        dir.path(),
        &log,
    );
    spec.record = Some(Record::new(record.clone()));
    let exit = run(&spec, Duration::from_secs(60), &mut rx, grace())
        .await
        .unwrap();
    assert_eq!(exit, Exit::Code(0));
    let pid = read_pid(&pids);
    assert!(!alive(pid), "the setsid sleeper outlived its command");
    let started = read_started(&record);
    assert_eq!(
        started.len(),
        2,
        "the marker before the start, then the pid"
    );
    assert_eq!(started[0].pid, None);
    assert_eq!(started[1].marker, started[0].marker);
    assert!(started[1].start.is_some());
    assert!(!started[0].marker.is_empty());
    // A record whose pid was reused by another process is never signalled.
    let me = std::process::id() as i32;
    let stale = dir.path().join("stale.jsonl");
    Record::new(stale.clone()).append(&Started {
        pid: Some(me),
        start: start_of(me).map(|s| s + 1),
        marker: "none".to_owned(),
    });
    stop_recorded(&stale, grace());
    assert!(alive(me));
}

#[tokio::test]
async fn an_endless_line_goes_to_the_log_and_is_not_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (_tx, mut rx) = watch::channel(false);
    let long = LINE_BYTES + 1000;
    let spec = Spec::shell(
        &format!("echo first; head -c {long} /dev/zero | tr -c x x; echo; echo last"),
        dir.path(),
        &log,
    );
    let mut lines = Vec::new();
    let mut on_stdout = |line: &str| {
        lines.push(line.len());
        None
    };
    let exit = run_streaming(
        &spec,
        Duration::from_secs(60),
        &mut rx,
        grace(),
        &mut on_stdout,
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(exit, Exit::Code(0));
    assert_eq!(lines, vec![5, 4], "only the lines of a sane length");
    assert_eq!(
        fs_err::metadata(&log).unwrap().len(),
        long + "first\n\nlast\n".len() as u64
    );
}

#[tokio::test]
async fn a_process_with_a_cleared_environment_whose_parent_ended_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let pids = dir.path().join("pids");
    let (_tx, mut rx) = watch::channel(false);
    // No marker (`env -i`), its own session, and its parent gone when the command ends:
    // only what was seen of it while it ran tells that it is the command's.
    let spec = Spec::shell(
        &format!(
            "env -i setsid sleep 300 > /dev/null 2>&1 < /dev/null & echo $! > {}; sleep 1",
            pids.display()
        ),
        dir.path(),
        &log,
    );
    let exit = run(&spec, Duration::from_secs(60), &mut rx, grace())
        .await
        .unwrap();
    assert_eq!(exit, Exit::Code(0));
    let pid = read_pid(&pids);
    let left = alive(pid);
    if left && let Some(p) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, Signal::KILL);
    }
    assert!(!left, "the sleeper outlived its command");
}

#[test]
fn a_record_stays_open_across_lines_and_starts_again_once_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("processes.jsonl");
    let record = Record::new(path.clone());
    let line = |marker: &str| Started {
        pid: None,
        start: None,
        marker: marker.to_owned(),
    };
    record.append(&line("a"));
    record.clone().append(&line("b"));
    let markers = |path: &std::path::Path| -> Vec<String> {
        read_started(path).into_iter().map(|s| s.marker).collect()
    };
    assert_eq!(markers(&path), ["a", "b"], "clones share one record");
    record.remove();
    assert!(!path.exists());
    record.append(&line("c"));
    assert_eq!(
        markers(&path),
        ["c"],
        "a line after the removal is not lost"
    );
}
