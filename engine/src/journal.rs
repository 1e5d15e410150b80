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
    /// ended first, so the next event starts a line of its own (readers skip the torn one).
    pub fn create(path: &Path) -> std::io::Result<Journal> {
        let mut file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let torn = last_byte(&mut file)?.is_some_and(|b| b != b'\n');
        if torn {
            file.write_all(b"\n")?;
        }
        Ok(Journal {
            path: path.to_owned(),
            file,
        })
    }

    /// Appends one event as a line; step and run boundaries are flushed to disk.
    pub fn append(&mut self, event: &Event) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        if matches!(
            event.body,
            Body::StepFinished { .. }
                | Body::StepSkipped { .. }
                | Body::RunStarted { .. }
                | Body::RunFinished { .. }
        ) {
            self.file.file().sync_data()?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The last byte of a file, read by itself.
fn last_byte(file: &mut fs_err::File) -> std::io::Result<Option<u8>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(None);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut byte = [0u8];
    file.read_exact(&mut byte)?;
    Ok(Some(byte[0]))
}

/// Reads a journal. A torn last line (a run killed mid-write) is ignored; so are lines a newer
/// medley wrote that this one cannot read.
pub fn read(path: &Path) -> std::io::Result<Vec<Event>> {
    let text = fs_err::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
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

impl RunLock {
    /// Takes the lock, or `None` if a live process holds it.
    pub fn try_take(path: &Path) -> std::io::Result<Option<RunLock>> {
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?
            .into_parts()
            .0;
        match file.try_lock() {
            Ok(()) => Ok(Some(RunLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Whether a live process holds the run's lock.
pub fn is_live(run_dir: &Path) -> bool {
    matches!(RunLock::try_take(&run_dir.join("lock")), Ok(None))
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
            text.contains(r#""type":"gate_finished","step":null"#),
            "{text}"
        );
    }

    #[test]
    fn a_lock_is_held_while_its_owner_lives() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::try_take(&dir.path().join("lock")).unwrap();
        assert!(lock.is_some());
        assert!(is_live(dir.path()));
        drop(lock);
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
