//! Child processes: each in its own process group, with a timeout, cancellable, and stopped in
//! stages (SIGINT, SIGTERM, SIGKILL) waiting for the whole group each time, so nothing a step
//! started (a background server, a shell's children) outlives it.

// Without /proc (macOS), only process groups are stopped: the /proc helpers go unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

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
    pub record: Option<Record>,
    /// Values masked as `***` in what is written to `stdout` and `stderr` (longest first).
    pub secrets: Vec<String>,
}

impl Spec {
    /// `sh -c COMMAND` in `cwd`, writing stdout and stderr to `log`.
    pub fn shell(command: &str, cwd: &Path, log: &Path) -> Spec {
        Spec {
            program: shell_program(),
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

/// Finds a program on PATH, as a shell would.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt as _;
            fs_err::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `sh` as PATH finds it, looked up once: every command, gate and setup runs it, and a
/// lookup by the kernel tries each PATH entry in turn.
fn shell_program() -> PathBuf {
    static SHELL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    SHELL
        .get_or_init(|| which("sh").unwrap_or_else(|| PathBuf::from("sh")))
        .clone()
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
    let (mut command, marker) = command_of(spec, out_stdio, err_stdio);
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
    if let Some(record) = &spec.record {
        record.append(&Started {
            pid: None,
            start: None,
            marker: marker.to_owned(),
        });
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
    if let Some(record) = &spec.record {
        record.append(&started);
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
    let (mut command, marker) = command_of(spec, Stdio::piped(), Stdio::piped());
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

/// The command that starts `spec` in a process group of its own, its output to `stdout` and
/// `stderr`, with git's variables scrubbed and a fresh marker (returned, and recorded before
/// the start).
fn command_of(spec: &Spec, stdout: Stdio, stderr: Stdio) -> (Command, String) {
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
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(false);
    for name in &spec.env_remove {
        command.env_remove(name);
    }
    crate::git::env::scrub_async(&mut command);
    let marker = new_marker();
    command.env(MARKER, &marker);
    record_marker(spec, &marker);
    (command, marker)
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

mod record;
mod tree;

use record::new_marker;
pub use record::{Record, Started, read_started, stop_recorded};
use tree::{Tree, start_of, stop_tree, tracker};
pub use tree::{become_subreaper, group_alive};

#[cfg(test)]
mod tests;
