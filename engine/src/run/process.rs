//! Child processes: each in its own process group, with a timeout, cancellable, and stopped in
//! stages (SIGINT, SIGTERM, SIGKILL) waiting for the whole group each time, so nothing a step
//! started (a background server, a shell's children) outlives it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;
use tokio::sync::watch;

/// How long each stage of a stop waits for the group to go before the next signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace {
    /// After SIGINT, before SIGTERM.
    pub interrupt: Duration,
    /// After SIGTERM, before SIGKILL.
    pub terminate: Duration,
}

impl Default for Grace {
    fn default() -> Self {
        Grace {
            interrupt: Duration::from_secs(5),
            terminate: Duration::from_secs(5),
        }
    }
}

/// A process to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// Added to (or overriding) medley's own environment.
    pub env: Vec<(String, String)>,
    /// Written to stdin, which is then closed; `None`: stdin is `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// stdout goes here (created or appended).
    pub stdout: PathBuf,
    /// stderr goes here; the same path as stdout interleaves them.
    pub stderr: PathBuf,
    /// Variables removed from the inherited environment (git's repository-local ones always
    /// are: `git::env`).
    pub env_remove: Vec<String>,
}

impl Spec {
    /// `sh -c COMMAND` in `cwd`, writing stdout and stderr to `log`.
    pub fn shell(command: &str, cwd: &Path, log: &Path) -> Spec {
        Spec {
            program: PathBuf::from("sh"),
            args: vec!["-c".to_owned(), command.to_owned()],
            cwd: cwd.to_owned(),
            env: Vec::new(),
            stdin: None,
            stdout: log.to_owned(),
            stderr: log.to_owned(),
            env_remove: Vec::new(),
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code (a shell reports 127 for a command not found).
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It ran past its timeout and was stopped.
    TimedOut,
    /// The run was cancelled and it was stopped.
    Cancelled,
    /// Its output handler asked for it to be stopped (an agent waiting for the network).
    Stopped,
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }

    /// The exit code as a shell would report it (128 + signal for a signal).
    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(c),
            Exit::Signal(s) => Some(128 + s),
            Exit::TimedOut | Exit::Cancelled | Exit::Stopped => None,
        }
    }
}

/// A process that could not be started, or whose end could not be learnt.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} `{program}`: {source}")]
pub struct SpawnError {
    pub program: String,
    /// `start`, or `wait for` (the OS would not say how it ended).
    pub action: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// Runs `spec` to its end, its timeout, or `cancel` turning true; returns how it ended and the
/// process group id it had. Whatever it left running in its group is stopped before this
/// returns.
pub async fn run(
    spec: &Spec,
    timeout: Duration,
    cancel: &mut watch::Receiver<bool>,
    grace: Grace,
) -> Result<Exit, SpawnError> {
    let open = |path: &Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SpawnError {
                program: spec.program.display().to_string(),
                action: "start",
                source: std::io::Error::new(source.kind(), format!("{}: {source}", path.display())),
            })
    };
    let stdout = open(&spec.stdout)?;
    let stderr = if spec.stderr == spec.stdout {
        stdout.try_clone().map_err(|source| SpawnError {
            program: spec.program.display().to_string(),
            action: "start",
            source,
        })?
    } else {
        open(&spec.stderr)?
    };
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(false);
    for name in &spec.env_remove {
        command.env_remove(name);
    }
    crate::git::env::scrub_async(&mut command);
    let mut child = command.spawn().map_err(|source| SpawnError {
        program: spec.program.display().to_string(),
        action: "start",
        source,
    })?;
    let pgid = child.id().and_then(|id| Pid::from_raw(id as i32));
    if let (Some(input), Some(mut stdin)) = (&spec.stdin, child.stdin.take()) {
        // A reader that exits early closes the pipe; that is its business, not an error.
        let _ = stdin.write_all(input).await;
        drop(stdin);
    }
    let exit = tokio::select! {
        status = child.wait() => status.map(exit_of),
        () = tokio::time::sleep(timeout) => Ok(Exit::TimedOut),
        () = cancelled(cancel) => Ok(Exit::Cancelled),
    };
    if let Some(pgid) = pgid {
        stop_group(pgid, &mut child, grace).await;
    }
    exit.map_err(|source| wait_error(spec, source))
}

/// Runs `spec` like [`run`], with stdout and stderr read line by line as they arrive: each raw
/// line is written to the spec's log file first, then handed to `on_stdout` / `on_stderr`.
/// `on_stdout` may ask for the process to be stopped at a deadline (the earliest asked wins);
/// it then ends as [`Exit::Stopped`].
pub async fn run_streaming(
    spec: &Spec,
    timeout: Duration,
    cancel: &mut watch::Receiver<bool>,
    grace: Grace,
    on_stdout: &mut (dyn FnMut(&str) -> Option<Duration> + Send),
    on_stderr: &mut (dyn FnMut(&str) + Send),
) -> Result<Exit, SpawnError> {
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    let spawn_error = |source| SpawnError {
        program: spec.program.display().to_string(),
        action: "start",
        source,
    };
    let open = |path: &Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| {
                spawn_error(std::io::Error::new(
                    source.kind(),
                    format!("{}: {source}", path.display()),
                ))
            })
    };
    let mut out_log = open(&spec.stdout)?;
    let mut err_log = if spec.stderr == spec.stdout {
        out_log.try_clone().map_err(spawn_error)?
    } else {
        open(&spec.stderr)?
    };
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    for name in &spec.env_remove {
        command.env_remove(name);
    }
    crate::git::env::scrub_async(&mut command);
    let mut child = command.spawn().map_err(spawn_error)?;
    let pgid = child.id().and_then(|id| Pid::from_raw(id as i32));
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(spawn_error(std::io::Error::other("no pipes to the child")));
    };
    if let (Some(input), Some(mut stdin)) = (&spec.stdin, child.stdin.take()) {
        let input = input.clone();
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        });
    }
    let mut out = BufReader::new(stdout);
    let mut err = BufReader::new(stderr);
    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    let (mut out_open, mut err_open) = (true, true);
    let mut stop_at: Option<tokio::time::Instant> = None;
    let mut status: Option<Exit> = None;
    let mut wait_failed: Option<std::io::Error> = None;
    let deadline = tokio::time::Instant::now() + timeout;
    // Once the process has exited, pipes still held by its background children are read for a
    // moment, then the group is stopped.
    let mut drain_until: Option<tokio::time::Instant> = None;
    let far = || tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let exit = loop {
        if !out_open
            && !err_open
            && let Some(exit) = status
        {
            break exit;
        }

        tokio::select! {
            read = out.read_until(b'\n', &mut out_buf), if out_open => {
                match read {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(_) => {
                        let _ = std::io::Write::write_all(&mut out_log, &out_buf);
                        let line = String::from_utf8_lossy(&out_buf);
                        if let Some(after) = on_stdout(line.trim_end_matches(['\n', '\r'])) {
                            let at = tokio::time::Instant::now() + after;
                            stop_at = Some(stop_at.map_or(at, |s| s.min(at)));
                        }
                        out_buf.clear();
                    }
                }
            }
            read = err.read_until(b'\n', &mut err_buf), if err_open => {
                match read {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(_) => {
                        let _ = std::io::Write::write_all(&mut err_log, &err_buf);
                        on_stderr(String::from_utf8_lossy(&err_buf).trim_end_matches(['\n', '\r']));
                        err_buf.clear();
                    }
                }
            }
            waited = child.wait(), if status.is_none() => {
                match waited {
                    Ok(s) => status = Some(exit_of(s)),
                    Err(e) => {
                        wait_failed = Some(e);
                        break Exit::Stopped;
                    }
                }
                drain_until = Some(tokio::time::Instant::now() + Duration::from_secs(2));
            }
            () = tokio::time::sleep_until(drain_until.unwrap_or_else(far)), if drain_until.is_some() => {
                // Set with the status, which is there.
                break status.unwrap_or(Exit::Stopped);
            }
            () = tokio::time::sleep_until(deadline), if status.is_none() => break Exit::TimedOut,
            () = tokio::time::sleep_until(stop_at.unwrap_or_else(far)), if stop_at.is_some() && status.is_none() => break Exit::Stopped,
            () = cancelled(cancel), if status.is_none() => break Exit::Cancelled,
        }
    };
    if let Some(pgid) = pgid {
        stop_group(pgid, &mut child, grace).await;
    }
    match wait_failed {
        Some(source) => Err(wait_error(spec, source)),
        None => Ok(exit),
    }
}

/// The OS would not say how the process ended (its group is stopped all the same).
fn wait_error(spec: &Spec, source: std::io::Error) -> SpawnError {
    SpawnError {
        program: spec.program.display().to_string(),
        action: "wait for",
        source,
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Signal(0),
    }
}

/// Resolves when `cancel` is (or becomes) true; never, if its sender is gone.
pub async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Stops every process of the group: SIGINT, then SIGTERM, then SIGKILL, each time waiting (up
/// to the grace period) for the whole group to be gone, and reaping the direct child.
pub async fn stop_group(pgid: Pid, child: &mut tokio::process::Child, grace: Grace) {
    let stages = [
        (Signal::INT, grace.interrupt),
        (Signal::TERM, grace.terminate),
        (Signal::KILL, Duration::from_secs(5)),
    ];
    for (signal, wait) in stages {
        let _ = child.try_wait();
        if !group_alive(pgid) {
            return;
        }
        if rustix::process::kill_process_group(pgid, signal).is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            let _ = child.try_wait();
            if !group_alive(pgid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Whether any process of the group still runs. Zombies (ended, not yet reaped by whoever
/// adopted them) do not count.
pub fn group_alive(pgid: Pid) -> bool {
    if rustix::process::test_kill_process_group(pgid).is_err() {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        let Ok(entries) = fs_err::read_dir("/proc") else {
            return true;
        };
        for entry in entries.flatten() {
            let Ok(stat) = fs_err::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let mut fields = after.split_whitespace();
            let state = fields.next();
            let group = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
            if group == Some(pgid.as_raw_nonzero().get()) && state != Some("Z") {
                return true;
            }
        }
        false
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grace() -> Grace {
        Grace {
            interrupt: Duration::from_millis(200),
            terminate: Duration::from_millis(200),
        }
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
        let pid: i32 = fs_err::read_to_string(&pids)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
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
        let pid: i32 = fs_err::read_to_string(&pids)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!alive(pid));
    }
}
