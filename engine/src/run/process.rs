//! Child processes: each in its own process group, with a timeout, cancellable, and stopped in
//! stages (SIGINT, SIGTERM, SIGKILL) waiting for the whole group each time, so nothing a step
//! started (a background server, a shell's children) outlives it.

// Without /proc (macOS), only process groups are stopped: the /proc helpers go unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

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
    /// Where the started process is recorded (a run's `processes.jsonl`), so that what it
    /// leaves can be stopped after medley itself was killed.
    pub record: Option<PathBuf>,
    /// Values masked as `***` in what is written to `stdout` and `stderr` (longest first).
    pub secrets: Vec<String>,
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
            record: None,
            secrets: Vec::new(),
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
    let spawn_error = |source| SpawnError {
        program: spec.program.display().to_string(),
        action: "start",
        source,
    };
    let stdout = open(&spec.stdout)?;
    let stderr = if spec.stderr == spec.stdout {
        None
    } else {
        Some(open(&spec.stderr)?)
    };
    // With secrets to mask, output goes through medley on its way to the log; else the child
    // writes to the log itself.
    let mut copiers = Vec::new();
    let (out_stdio, err_stdio): (Stdio, Stdio) = if spec.secrets.is_empty() {
        let err = match stderr {
            Some(file) => file,
            None => stdout.try_clone().map_err(spawn_error)?,
        };
        (Stdio::from(stdout), Stdio::from(err))
    } else {
        let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
        copiers.push(copy_masked(reader, stdout, spec.secrets.clone()));
        let err_writer = match stderr {
            Some(file) => {
                let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
                copiers.push(copy_masked(reader, file, spec.secrets.clone()));
                writer
            }
            None => writer.try_clone().map_err(spawn_error)?,
        };
        (Stdio::from(writer), Stdio::from(err_writer))
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
        .stdout(out_stdio)
        .stderr(err_stdio)
        .process_group(0)
        .kill_on_drop(false);
    for name in &spec.env_remove {
        command.env_remove(name);
    }
    crate::git::env::scrub_async(&mut command);
    let marker = new_marker();
    command.env(MARKER, &marker);
    record_marker(spec, &marker);
    let spawned = command.spawn();
    // The pipes' write ends now belong to the child alone, so the copiers see their end.
    drop(command);
    let mut child = spawned.map_err(spawn_error)?;
    let mut tree = started(spec, &child, marker);
    if let (Some(input), Some(mut stdin)) = (&spec.stdin, child.stdin.take()) {
        // A reader that exits early closes the pipe; that is its business, not an error.
        let _ = stdin.write_all(input).await;
        drop(stdin);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut track = tracker();
    let exit = loop {
        tokio::select! {
            status = child.wait() => break match status {
                Ok(status) => Ok(exit_of(status)),
                Err(e) => Err(e),
            },
            () = tokio::time::sleep_until(deadline) => break Ok(Exit::TimedOut),
            () = cancelled(cancel) => break Ok(Exit::Cancelled),
            _ = track.tick() => tree.track(),
        }
    };
    stop_tree(&mut tree, &mut child, grace).await;
    // Everything that held the pipes is gone: the copiers end (a moment at most is waited for
    // one still held by a process that escaped every search).
    for copier in copiers {
        let _ = tokio::time::timeout(Duration::from_secs(5), copier).await;
    }
    exit.map_err(|source| wait_error(spec, source))
}

/// Copies `reader` into `file` with the secrets masked, on a thread of its own; the receiver
/// resolves when the pipe has ended.
fn copy_masked(
    mut reader: std::io::PipeReader,
    mut file: std::fs::File,
    secrets: Vec<String>,
) -> tokio::sync::oneshot::Receiver<()> {
    use std::io::{Read as _, Write as _};
    let (done, ended) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut masker = crate::secrets::Masker::new(&secrets);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let _ = file.write_all(&masker.push(&buf[..n]));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = file.write_all(&masker.finish());
        let _ = done.send(());
    });
    ended
}

/// Records, before a process starts, the marker it will have: a medley killed before it could
/// record the pid leaves enough for what the process starts to be found.
fn record_marker(spec: &Spec, marker: &str) {
    if let Some(path) = &spec.record {
        record_started(
            path,
            &Started {
                pid: None,
                start: None,
                marker: marker.to_owned(),
            },
        );
    }
}

/// Records a started process (when its spec asks) and returns the tree to stop after it.
fn started(spec: &Spec, child: &tokio::process::Child, marker: String) -> Tree {
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return Tree::new(&[Started {
            pid: None,
            start: None,
            marker,
        }]);
    };
    let started = Started {
        pid: Some(pid),
        start: start_of(pid),
        marker,
    };
    if let Some(path) = &spec.record {
        record_started(path, &started);
    }
    Tree::new(&[started])
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
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
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
    let marker = new_marker();
    command.env(MARKER, &marker);
    record_marker(spec, &marker);
    let mut child = command.spawn().map_err(spawn_error)?;
    let mut tree = started(spec, &child, marker);
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
    // What goes to the logs has the secrets masked.
    let mut out_mask = crate::secrets::Masker::new(&spec.secrets);
    let mut err_mask = crate::secrets::Masker::new(&spec.secrets);
    // Whether the line being read is longer than a handler is given (it goes to the log only).
    let (mut out_long, mut err_long) = (false, false);
    let mut stop_at: Option<tokio::time::Instant> = None;
    let mut status: Option<Exit> = None;
    let mut wait_failed: Option<std::io::Error> = None;
    let deadline = tokio::time::Instant::now() + timeout;
    // Once the process has exited, pipes still held by its background children are read for a
    // moment, then the group is stopped.
    let mut drain_until: Option<tokio::time::Instant> = None;
    let far = || tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let mut track = tracker();
    let exit = loop {
        if !out_open
            && !err_open
            && let Some(exit) = status
        {
            break exit;
        }

        // Each read stops at a line's end or at the longest line handed over.
        let mut out_part = (&mut out).take(LINE_BYTES.saturating_sub(out_buf.len() as u64).max(1));
        let mut err_part = (&mut err).take(LINE_BYTES.saturating_sub(err_buf.len() as u64).max(1));
        tokio::select! {
            read = out_part.read_until(b'\n', &mut out_buf), if out_open => {
                match read {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(_) => {
                        let _ = std::io::Write::write_all(&mut out_log, &out_mask.push(&out_buf));
                        if let Some(line) = line_of(&mut out_buf, &mut out_long)
                            && let Some(after) = on_stdout(&line)
                        {
                            let at = tokio::time::Instant::now() + after;
                            stop_at = Some(stop_at.map_or(at, |s| s.min(at)));
                        }
                    }
                }
            }
            read = err_part.read_until(b'\n', &mut err_buf), if err_open => {
                match read {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(_) => {
                        let _ = std::io::Write::write_all(&mut err_log, &err_mask.push(&err_buf));
                        if let Some(line) = line_of(&mut err_buf, &mut err_long) {
                            on_stderr(&line);
                        }
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
            _ = track.tick() => tree.track(),
        }
    };
    let _ = std::io::Write::write_all(&mut out_log, &out_mask.finish());
    let _ = std::io::Write::write_all(&mut err_log, &err_mask.finish());
    stop_tree(&mut tree, &mut child, grace).await;
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

/// The longest line of a streamed output handed to its handler; a longer one goes to the log
/// only, so one endless line never fills medley's memory.
const LINE_BYTES: u64 = 16 * 1024 * 1024;

/// What `buf` (just read, and written to the log) gives the handler: a whole line (also the last,
/// unended one), or nothing while a line too long to hand over goes on. Empties `buf`.
fn line_of(buf: &mut Vec<u8>, long: &mut bool) -> Option<String> {
    let ended = buf.ends_with(b"\n");
    let full = buf.len() as u64 >= LINE_BYTES;
    let line = if *long || (full && !ended) {
        None
    } else {
        Some(
            String::from_utf8_lossy(buf)
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        )
    };
    *long = !ended && (full || *long);
    buf.clear();
    line
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

/// The variable every process medley starts gets (and passes on to what it starts): a value
/// of its own per start, so a process that left the group (`setsid`) is still found.
pub const MARKER: &str = "MEDLEY_PROCESS";

/// A process medley started, as recorded in a run's directory (`processes.jsonl`): its pid
/// (the leader of its process group), its start time (clock ticks after boot, from
/// `/proc/<pid>/stat`, so a reused pid is never taken for it) and its marker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Started {
    /// `None` in the line written just before the process starts (its marker alone).
    pub pid: Option<i32>,
    pub start: Option<u64>,
    pub marker: String,
}

/// Makes medley a child subreaper (Linux): the orphans of what it starts become its children
/// instead of init's, so none leaves medley's sight.
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if rustix::process::set_child_subreaper(Some(rustix::process::getpid())).is_ok() {
        SUBREAPER.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Whether medley is a child subreaper: then a descendant whose parent is gone is medley's
/// child, and only medley's children need their markers read.
static SUBREAPER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A fresh marker value.
fn new_marker() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Appends `started` to the record at `path` (one JSON object a line).
fn record_started(path: &Path, started: &Started) {
    use std::io::Write as _;
    let Ok(mut line) = serde_json::to_vec(started) else {
        return;
    };
    line.push(b'\n');
    if let Ok(mut file) = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = file.write_all(&line);
    }
}

/// The records of `path` (empty when there is none).
pub fn read_started(path: &Path) -> Vec<Started> {
    fs_err::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    zombie: bool,
    start: u64,
}

fn proc_stat(pid: i32) -> Option<Proc> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
    // stime cutime cstime priority nice threads itrealvalue starttime ...; comm may hold
    // spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(Proc {
        pid,
        zombie: *fields.first()? == "Z",
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The start time of a process, when it can be read.
fn start_of(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|p| p.start)
}

fn all_procs() -> Vec<Proc> {
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// The marker in a process's environment, when it has one.
fn marker_of(pid: i32) -> Option<String> {
    let environ = fs_err::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{MARKER}=");
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// Everything some started processes led to: their process groups, their descendants (found
/// by parent links, and by their marker once a parent is gone), each known by pid and start
/// time.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    leaders: Vec<(i32, Option<u64>)>,
    markers: std::collections::HashSet<String>,
    /// Every member seen so far, by pid, with its start time.
    known: std::collections::HashMap<i32, u64>,
    /// Read the marker of every process, not only of medley's own children (for what a dead
    /// medley left: its orphans went to another parent).
    scan_all: bool,
}

impl Tree {
    pub(crate) fn new(started: &[Started]) -> Tree {
        Tree {
            leaders: started
                .iter()
                .filter_map(|s| Some((s.pid?, s.start)))
                .collect(),
            markers: started.iter().map(|s| s.marker.clone()).collect(),
            known: std::collections::HashMap::new(),
            scan_all: !SUBREAPER.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// The live members now (zombies do not count). With `environ`, every process's marker is
    /// read too (slower: done once a stage).
    fn members(&mut self, environ: bool) -> Vec<Proc> {
        #[cfg(not(target_os = "linux"))]
        {
            // Without /proc: the groups that still have a process.
            let _ = environ;
            self.leaders
                .iter()
                .filter(|(pid, _)| {
                    Pid::from_raw(*pid)
                        .is_some_and(|p| rustix::process::test_kill_process_group(p).is_ok())
                })
                .map(|(pid, _)| Proc {
                    pid: *pid,
                    ppid: 0,
                    pgrp: *pid,
                    zombie: false,
                    start: 0,
                })
                .collect()
        }
        #[cfg(target_os = "linux")]
        {
            let procs = all_procs();
            // A group is ours while its leader is the process started (same start time), or
            // gone: Linux never reuses a pid that is still some group's id.
            let groups: Vec<i32> = self
                .leaders
                .iter()
                .filter(|(pid, start)| {
                    procs
                        .iter()
                        .find(|p| p.pid == *pid)
                        .is_none_or(|p| *start == Some(p.start))
                })
                .map(|(pid, _)| *pid)
                .collect();
            let me = rustix::process::getpid().as_raw_nonzero().get();
            let mut ours: std::collections::HashSet<i32> = std::collections::HashSet::new();
            for p in &procs {
                let known = self.known.get(&p.pid) == Some(&p.start);
                let leader = self
                    .leaders
                    .iter()
                    .any(|(pid, start)| *pid == p.pid && *start == Some(p.start));
                if known
                    || leader
                    || groups.contains(&p.pgrp)
                    || (environ
                        && !self.markers.is_empty()
                        && (self.scan_all || p.ppid == me)
                        && marker_of(p.pid).is_some_and(|m| self.markers.contains(&m)))
                {
                    ours.insert(p.pid);
                }
            }
            // Descendants of members are members.
            let mut grew = true;
            while grew {
                grew = false;
                for p in &procs {
                    if !ours.contains(&p.pid) && ours.contains(&p.ppid) {
                        ours.insert(p.pid);
                        grew = true;
                    }
                }
            }
            let members: Vec<Proc> = procs
                .into_iter()
                .filter(|p| ours.contains(&p.pid))
                .collect();
            for p in &members {
                self.known.insert(p.pid, p.start);
            }
            members.into_iter().filter(|p| !p.zombie).collect()
        }
    }

    /// Sends `signal` to every live member (each checked against its start time first) and to
    /// the groups that are still ours.
    fn signal(&mut self, members: &[Proc], signal: Signal) {
        let mut groups: Vec<i32> = Vec::new();
        #[cfg(not(target_os = "linux"))]
        groups.extend(members.iter().map(|p| p.pgrp));
        #[cfg(target_os = "linux")]
        for p in members {
            if start_of(p.pid) != Some(p.start) {
                continue;
            }
            if let Some(pid) = Pid::from_raw(p.pid) {
                let _ = rustix::process::kill_process(pid, signal);
            }
            if !groups.contains(&p.pgrp) && self.leaders.iter().any(|(l, _)| *l == p.pgrp) {
                groups.push(p.pgrp);
            }
        }
        for group in groups {
            if let Some(pgid) = Pid::from_raw(group) {
                let _ = rustix::process::kill_process_group(pgid, signal);
            }
        }
    }

    /// Learns the current members (by group and parent links), so that they are known by pid
    /// and start time once their parents are gone.
    fn track(&mut self) {
        #[cfg(target_os = "linux")]
        let _ = self.members(false);
    }

    /// Whether nothing of the tree is left: no member by parent or group, and (checked only
    /// then) none by marker either.
    fn gone(&mut self) -> bool {
        self.members(false).is_empty() && self.members(true).is_empty()
    }

    /// Reaps the members that became medley's children (it is a subreaper) and ended, so
    /// they do not stay zombies; `except` is the direct child, which its owner reaps.
    fn reap(&self, except: Option<i32>) {
        #[cfg(target_os = "linux")]
        {
            let me = rustix::process::getpid().as_raw_nonzero().get();
            for (&pid, &start) in &self.known {
                if Some(pid) == except {
                    continue;
                }
                let Some(p) = proc_stat(pid) else { continue };
                if p.zombie
                    && p.ppid == me
                    && p.start == start
                    && let Some(pid) = Pid::from_raw(pid)
                {
                    let _ =
                        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = except;
    }
}

/// How often a running process's descendants are looked up, so that one whose parent ended
/// (and which cleared its environment) is still known when the step stops.
fn tracker() -> tokio::time::Interval {
    let every = Duration::from_millis(100);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

const STAGES: usize = 3;

fn stages(grace: Grace) -> [(Signal, Duration); STAGES] {
    [
        (Signal::INT, grace.interrupt),
        (Signal::TERM, grace.terminate),
        (Signal::KILL, Duration::from_secs(5)),
    ]
}

/// Stops every process of the tree: SIGINT, then SIGTERM, then SIGKILL, each time waiting (up
/// to the grace period) for all of it to be gone, and reaping the direct child.
pub(crate) async fn stop_tree(tree: &mut Tree, child: &mut tokio::process::Child, grace: Grace) {
    let direct = child.id().and_then(|id| i32::try_from(id).ok());
    'stages: for (signal, wait) in stages(grace) {
        let _ = child.try_wait();
        let members = tree.members(true);
        if members.is_empty() {
            break;
        }
        tree.signal(&members, signal);
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            let _ = child.try_wait();
            tree.reap(direct);
            if tree.gone() {
                break 'stages;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let _ = child.try_wait();
    tree.reap(direct);
}

/// Stops, in stages, what the processes recorded at `path` (by a run that is no longer live)
/// left running. Blocks until they are gone.
pub fn stop_recorded(path: &Path, grace: Grace) {
    // Without /proc a recorded pid cannot be told from a reused one: nothing is signalled.
    if cfg!(not(target_os = "linux")) {
        return;
    }
    let started = read_started(path);
    if started.is_empty() {
        return;
    }
    let mut tree = Tree::new(&started);
    tree.scan_all = true;
    'stages: for (signal, wait) in stages(grace) {
        let members = tree.members(true);
        if members.is_empty() {
            break;
        }
        tree.signal(&members, signal);
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            tree.reap(None);
            if tree.gone() {
                break 'stages;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    tree.reap(None);
}

/// Whether any process of the group still runs. Zombies (ended, not yet reaped by whoever
/// adopted them) do not count.
pub fn group_alive(pgid: Pid) -> bool {
    if rustix::process::test_kill_process_group(pgid).is_err() {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        let group = pgid.as_raw_nonzero().get();
        all_procs().iter().any(|p| p.pgrp == group && !p.zombie)
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
        spec.record = Some(record.clone());
        let exit = run(&spec, Duration::from_secs(60), &mut rx, grace())
            .await
            .unwrap();
        assert_eq!(exit, Exit::Code(0));
        let pid: i32 = fs_err::read_to_string(&pids)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
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
        record_started(
            &stale,
            &Started {
                pid: Some(me),
                start: start_of(me).map(|s| s + 1),
                marker: "none".to_owned(),
            },
        );
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
        let pid: i32 = fs_err::read_to_string(&pids)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let left = alive(pid);
        if left && let Some(p) = Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, Signal::KILL);
        }
        assert!(!left, "the sleeper outlived its command");
    }
}
