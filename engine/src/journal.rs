//! Run state on disk, under the repository's git dir: `medley/runs/<run-id>/` holds
//! `events.jsonl` (the journal, append-only), `logs/<step>/`, `prompts/` and `lock`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::event::{Body, Event};

/// Where runs are kept: `<git dir>/medley/runs`.
pub fn runs_dir(git_dir: &Path) -> PathBuf {
    git_dir.join("medley").join("runs")
}

/// The journal being written by a live run.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: fs_err::File,
}

impl Journal {
    /// Opens (or creates) a journal for appending. A torn last line, left by a killed run, is
    /// cut off first, so that a torn line can only ever be the last one.
    pub fn create(path: &Path) -> std::io::Result<Journal> {
        let mut file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        if let Some(whole) = whole_lines_len(&mut file)? {
            file.file().set_len(whole)?;
        }
        Ok(Journal {
            path: path.to_owned(),
            file,
        })
    }

    /// Appends one event as a line; step and run boundaries are flushed to disk.
    pub fn append(&mut self, event: &Event) -> std::io::Result<()> {
        self.append_all(std::slice::from_ref(event))
    }

    /// Appends events as lines, in order, then flushes them to disk once if any is a step or
    /// run boundary (a group commit: events that queued up while the disk was busy cost one
    /// flush, not one each).
    pub fn append_all(&mut self, events: &[Event]) -> std::io::Result<()> {
        let mut lines = Vec::new();
        let mut boundary = false;
        for event in events {
            serde_json::to_writer(&mut lines, event).map_err(std::io::Error::other)?;
            lines.push(b'\n');
            boundary |= matches!(
                event.body,
                Body::StepFinished { .. }
                    | Body::StepSkipped { .. }
                    | Body::RunStarted { .. }
                    | Body::RunFinished { .. }
                    | Body::ApprovalRequested { .. }
                    | Body::ApprovalGiven { .. }
                    | Body::ApprovalRefused { .. }
            );
        }
        self.file.write_all(&lines)?;
        if boundary {
            self.file.file().sync_data()?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// When the file ends in a torn line (no newline after it), the length of its whole lines.
/// Reads backwards from the end, a block at a time.
fn whole_lines_len(file: &mut fs_err::File) -> std::io::Result<Option<u64>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let len = file.metadata()?.len();
    let mut end = len;
    let mut block = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..n])?;
        if end == len && block[n - 1] == b'\n' {
            return Ok(None);
        }
        if let Some(at) = block[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(Some(start + at as u64 + 1));
        }
        end = start;
    }
    Ok((len > 0).then_some(0))
}

/// Reads a journal. A torn last line (a run killed mid-write) is skipped, and so are events of
/// types a newer medley wrote; any other line that is not an event is an error that names it.
pub fn read(path: &Path) -> std::io::Result<Vec<Event>> {
    let text = fs_err::read_to_string(path)?;
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let count = text.lines().count();
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        match serde_json::from_str::<Event>(line) {
            Ok(event) => events.push(event),
            Err(_) if torn_tail && n + 1 == count => {}
            Err(e) => {
                // A line of a newer medley: an event (`v`, `type`, `run`) this one cannot read.
                let newer = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .is_some_and(|v| v.get("type").is_some() && v.get("run").is_some());
                if !newer {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: line {} is not an event: {e}", path.display(), n + 1),
                    ));
                }
            }
        }
    }
    Ok(events)
}

/// Reads a journal like [`read`], leaving out the events whose `type` is in `skip` without
/// parsing them or holding their lines in memory (an agent's raw output, for listings that do
/// not show it).
pub fn read_without(path: &Path, skip: &[&str]) -> std::io::Result<Vec<Event>> {
    use std::io::BufRead as _;
    /// The `type` comes after `v`, `ts` and `run`: within this many bytes of a line's start.
    const HEAD: usize = 256;
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, fs_err::File::open(path)?);
    let mut events = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut decided = false;
    let mut end_line = |line: &mut Vec<u8>, skipping: &mut bool, decided: &mut bool| {
        if !*skipping && let Ok(event) = serde_json::from_slice::<Event>(line) {
            events.push(event);
        }
        line.clear();
        *skipping = false;
        *decided = false;
    };
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            end_line(&mut line, &mut skipping, &mut decided);
            break;
        }
        let (chunk, ended) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        let used = chunk.len() + usize::from(ended);
        if !skipping {
            line.extend_from_slice(chunk);
            if !decided && (line.len() >= HEAD || ended) {
                decided = true;
                if type_of(&line[..line.len().min(HEAD)]).is_some_and(|t| skip.contains(&t)) {
                    skipping = true;
                    line.clear();
                }
            }
        }
        reader.consume(used);
        if ended {
            end_line(&mut line, &mut skipping, &mut decided);
        }
    }
    Ok(events)
}

/// The `type` of an event line, read from its first bytes.
fn type_of(head: &[u8]) -> Option<&str> {
    let key = b"\"type\":\"";
    let at = head.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &head[at..];
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// The run ids under `runs`, oldest first (UUIDv7 ids sort by time).
pub fn run_ids(runs: &Path) -> Vec<String> {
    let mut ids: Vec<String> = fs_err::read_dir(runs)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("events.jsonl").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// The `lock` of a run: held (an OS file lock) for as long as its process lives.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

/// How many times a starting run looks again while a probe holds its lock.
const PROBE_RETRIES: u32 = 1000;

impl RunLock {
    /// Takes the lock (exclusive), or `None` if a live run holds it. A probe ([`is_live`])
    /// holds a shared lock for a moment: taking the lock then waits for the probe to go, so
    /// `medley runs` at the moment a run starts never makes it fail.
    pub fn try_take(path: &Path) -> std::io::Result<Option<RunLock>> {
        let file = open_lock(path)?;
        for _ in 0..PROBE_RETRIES {
            match file.try_lock() {
                Ok(()) => return Ok(Some(RunLock { _file: file })),
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
                Err(std::fs::TryLockError::WouldBlock) => {}
            }
            // Held: by a live run (exclusive, so a shared lock is refused too), or by probes.
            let probe = open_lock(path)?;
            match probe.try_lock_shared() {
                Ok(()) => drop(probe),
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(None)
    }
}

fn open_lock(path: &Path) -> std::io::Result<std::fs::File> {
    Ok(fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?
        .into_parts()
        .0)
}

/// Whether a live run holds the run's lock. The probe takes a shared lock for a moment, which
/// a starting run waits out (see [`RunLock::try_take`]).
pub fn is_live(run_dir: &Path) -> bool {
    let Ok(file) = open_lock(&run_dir.join("lock")) else {
        return false;
    };
    matches!(
        file.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;

    #[test]
    fn events_round_trip_and_a_torn_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut journal = Journal::create(&path).unwrap();
        let events = vec![
            Event::new(
                "r1",
                Body::StepSkipped {
                    step: "b".into(),
                    reason: SkipReason::Need {
                        need: "a".into(),
                        need_outcome: Outcome::Failed,
                        rejected: None,
                    },
                },
            ),
            Event::new(
                "r1",
                Body::StepSkipped {
                    step: "c".into(),
                    reason: SkipReason::If {
                        expression: "false".into(),
                    },
                },
            ),
            Event::new(
                "r1",
                Body::GateFinished {
                    step: None,
                    attempt: 1,
                    exit_code: Some(1),
                    passed: false,
                    output_tail: "x".into(),
                },
            ),
            Event::new(
                "r1",
                Body::StepSkipped {
                    step: "d".into(),
                    reason: SkipReason::Need {
                        need: "a".into(),
                        need_outcome: Outcome::Failed,
                        rejected: Some("too vague".into()),
                    },
                },
            ),
            Event::new(
                "r1",
                Body::ApprovalRequested {
                    step: None,
                    message: "Ship it?".into(),
                    commit: Some("c0ffee".into()),
                    files: 2,
                },
            ),
            Event::new(
                "r1",
                Body::ApprovalRefused {
                    step: Some("a".into()),
                    by: "Ada <ada@example.com>".into(),
                    reason: "too vague".into(),
                },
            ),
        ];
        for e in &events {
            journal.append(e).unwrap();
        }
        let mut raw = fs_err::OpenOptions::new().append(true).open(&path).unwrap();
        raw.write_all(b"{\"v\":1,\"ts\":\"2026-").unwrap();
        assert_eq!(read(&path).unwrap(), events);
        let text = fs_err::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#""reason":{"need":"a","need_outcome":"failed"}"#),
            "{text}"
        );
        assert!(text.contains(r#""reason":{"if":"false"}"#), "{text}");
        assert!(
            text.contains(
                r#""reason":{"need":"a","need_outcome":"failed","rejected":"too vague"}"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#""type":"approval_refused","step":"a","by":"Ada <ada@example.com>","reason":"too vague""#),
            "{text}"
        );
        assert!(
            text.contains(r#""type":"gate_finished","step":null"#),
            "{text}"
        );
    }

    fn event(step: &str) -> Event {
        Event::new(
            "r1",
            Body::StepSkipped {
                step: step.into(),
                reason: SkipReason::If {
                    expression: "false".into(),
                },
            },
        )
    }

    #[test]
    fn a_corrupt_line_before_the_last_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let good = serde_json::to_string(&event("a")).unwrap();
        fs_err::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();
        let error = read(&path).unwrap_err();
        assert!(
            error.to_string().contains("line 2 is not an event"),
            "{error}"
        );
        // An event of a type a newer medley wrote is skipped.
        let newer =
            r#"{"v":1,"ts":"2026-01-01T00:00:00Z","run":"r1","type":"approval_given","step":"a"}"#;
        fs_err::write(&path, format!("{good}\n{newer}\n{good}\n")).unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
    }

    #[test]
    fn a_torn_line_is_cut_off_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let good = serde_json::to_string(&event("a")).unwrap();
        fs_err::write(&path, format!("{good}\n{{\"v\":1,\"ts\":\"20")).unwrap();
        let mut journal = Journal::create(&path).unwrap();
        journal.append(&event("b")).unwrap();
        let steps: Vec<String> = read(&path)
            .unwrap()
            .iter()
            .filter_map(|e| e.step().map(str::to_owned))
            .collect();
        assert_eq!(steps, ["a", "b"]);
        // A torn first (and only) line goes too.
        fs_err::write(&path, "{\"v\":1").unwrap();
        drop(Journal::create(&path).unwrap());
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn a_probe_never_makes_a_starting_run_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        // A probe (`medley runs`) holds its shared lock at the moment the run starts.
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap()
        };
        let probe = open();
        probe.try_lock_shared().unwrap();
        let starting = std::thread::spawn({
            let path = path.clone();
            move || RunLock::try_take(&path).unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(probe);
        let lock = starting.join().unwrap();
        assert!(
            lock.is_some(),
            "the run took its lock once the probe was gone"
        );
        assert!(is_live(dir.path()));
        // Probes see a live run, and do not get in each other's way.
        assert!(open().try_lock_shared().is_err());
        drop(lock);
        // A child another test thread forks at this moment shares the lock's open file until
        // it execs, so the release can take a moment to be seen.
        let released = (0..1000).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            !is_live(dir.path())
        });
        assert!(released);
    }

    #[test]
    fn a_lock_is_held_while_its_owner_lives() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::try_take(&dir.path().join("lock")).unwrap();
        assert!(lock.is_some());
        assert!(is_live(dir.path()));
        drop(lock);
        // A process another test is starting at this moment shares the lock's open file
        // until its exec closes it: the lock is free once that moment has passed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while is_live(dir.path()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!is_live(dir.path()));
    }

    #[test]
    fn a_listing_skips_raw_agent_output_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut journal = Journal::create(&path).unwrap();
        let skipped = Event::new(
            "r1",
            Body::StepSkipped {
                step: "b".into(),
                reason: SkipReason::If {
                    expression: "false".into(),
                },
            },
        );
        let raw = Event::new(
            "r1",
            Body::AgentOutput {
                step: "a".into(),
                attempt: 1,
                agent: "claude".into(),
                session_id: None,
                kind: "tool".into(),
                summary: "read".into(),
                raw: serde_json::json!({ "text": "x".repeat(300_000) }),
            },
        );
        journal.append(&skipped).unwrap();
        journal.append(&raw).unwrap();
        journal.append(&skipped).unwrap();
        assert_eq!(read(&path).unwrap().len(), 3);
        assert_eq!(
            read_without(&path, &["agent_output"]).unwrap(),
            vec![skipped.clone(), skipped]
        );
    }
}
