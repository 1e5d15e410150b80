//! Bounded views of what a process wrote: the tail of a log (for events, errors and retry
//! prompts), a command's stdout as `steps.<id>.output`, and an exit said in words.

use std::path::Path;

use crate::process::Exit;

/// Lines of a failure's output that a retry prompt sees.
pub(crate) const FAILURE_LINES: usize = 200;
/// Bytes of a failure's output that a retry prompt sees.
pub(crate) const FAILURE_BYTES: u64 = 16 * 1024;
/// Lines of a gate's output in its `gate_finished` event (and of stderr in an error).
pub(crate) const TAIL_LINES: usize = 20;
/// Bytes of a gate's output in its `gate_finished` event (and of stderr in an error).
pub(crate) const TAIL_BYTES: u64 = 4 * 1024;
/// Bytes of a command step's stdout kept as `steps.<id>.output`; the rest is in its log.
pub(crate) const OUTPUT_BYTES: u64 = 64 * 1024;

/// The last `lines` lines of a file, and no more than its last `bytes` bytes (a line cut there
/// starts with `…`). Only those bytes are read. Empty when unreadable.
pub(crate) fn tail(path: &Path, lines: usize, bytes: u64) -> String {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let Ok(mut file) = fs_err::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(bytes);
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.take(bytes).read_to_end(&mut buf).is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let kept = &all[all.len().saturating_sub(lines)..];
    let mut out = kept.join("\n");
    if from > 0 && kept.len() == all.len() {
        out.insert(0, '…');
    }
    out
}

/// A command step's stdout as `steps.<id>.output`: like `$(...)` in a shell, without its
/// trailing newlines; at most [`OUTPUT_BYTES`] of it (only those are read), and when cut, a
/// last line that says so and where the whole output is.
pub(crate) fn bounded_output(path: &Path) -> String {
    use std::io::Read as _;
    // Most steps print nothing: one look at the size then.
    let len = match fs_err::metadata(path) {
        Ok(meta) if meta.len() > 0 => meta.len(),
        _ => return String::new(),
    };
    let Ok(file) = fs_err::File::open(path) else {
        return String::new();
    };
    let mut buf = Vec::new();
    if file.take(OUTPUT_BYTES).read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let mut output = String::from_utf8_lossy(&buf)
        .trim_end_matches('\n')
        .to_owned();
    if len > OUTPUT_BYTES {
        output.push_str(&format!(
            "\n[medley: output cut at {OUTPUT_BYTES} of its {len} bytes; all of it is in {}]",
            path.display()
        ));
    }
    output
}

/// An exit in words: `exited with 1`, `was killed by signal 9`.
pub(crate) fn describe(exit: Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exited with {c}"),
        Exit::Signal(s) => format!("was killed by signal {s}"),
        Exit::TimedOut => "ran past its timeout".to_owned(),
        Exit::Cancelled => "was cancelled".to_owned(),
        Exit::Stopped => "was stopped".to_owned(),
    }
}
