//! Decisions brought to a live run from outside: `medley approve` / `medley reject` in a second
//! terminal drop a request in the run's `decisions/` directory (written to a temporary file,
//! then renamed), the live run (the journal's one writer) takes it by renaming it, records the
//! decision in its journal and acts on it, then answers with a reply file the second process
//! reads. Both sides are here: the file names and formats must agree.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Verdict;

/// The run's directory of requests and replies.
pub(crate) const DIR: &str = "decisions";
/// A request not yet taken.
const REQUEST: &str = "request";
/// A request the live run took (renamed: no one else takes it, nor removes it).
const TAKEN: &str = "taken";
/// The live run's answer.
const REPLY: &str = "reply";

/// A decision asked of the live run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Request {
    pub steps: Vec<String>,
    pub verdict: Verdict,
    /// Who decided (their git identity).
    pub by: String,
    /// The process that waits for the answer (0: unknown): a request whose sender is gone
    /// (interrupted while it waited) is dropped unread.
    #[serde(default)]
    pub pid: u32,
}

/// What the live run did with a request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Reply {
    /// The steps whose decision it recorded (and acts on).
    pub recorded: Vec<String>,
    /// The steps already approved.
    pub already: Vec<String>,
    /// The steps that do not wait (nothing was recorded then).
    pub not_waiting: Vec<String>,
    /// What waits in the run.
    pub waiting: Vec<String>,
    /// A request it could not read.
    pub error: Option<String>,
}

/// The requests in `run_dir` not yet taken, oldest first (a cheap look: nothing is taken).
pub(crate) fn pending(run_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs_err::read_dir(run_dir.join(DIR)) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == REQUEST))
        .collect();
    found.sort();
    found
}

/// Takes the request at `path` (the live run's side): `None` when it is gone or its sender is
/// (it gave up), else where it now lies and what it asks (or why it cannot be read).
pub(crate) fn take(path: &Path) -> Option<(PathBuf, Result<Request, String>)> {
    let taken = path.with_extension(TAKEN);
    fs_err::rename(path, &taken).ok()?;
    let request = fs_err::read_to_string(&taken)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str::<Request>(&text).map_err(|e| e.to_string()));
    if let Ok(request) = &request
        && gone(request.pid)
    {
        let _ = fs_err::remove_file(&taken);
        return None;
    }
    Some((taken, request))
}

/// Whether process `pid` has ended (0: not known, so not).
fn gone(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
}

/// Answers the request taken at `taken` with `reply`.
pub(crate) fn answer(taken: &Path, reply: &Reply) {
    let text = serde_json::to_string(reply).unwrap_or_default();
    let _ = write_atomically(&taken.with_extension(REPLY), &text);
    let _ = fs_err::remove_file(taken);
}

/// Writes `text` to `path` whole or not at all: a temporary file beside it, then a rename.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = path.with_file_name(format!(".{name}.tmp"));
    fs_err::write(&temp, text)?;
    fs_err::rename(&temp, path)
}

/// A request sent to a live run, from the second process's side.
pub(crate) struct Sent {
    request: PathBuf,
}

/// How a sent request stands.
pub(crate) enum Answer {
    /// The live run answered.
    Replied(Reply),
    /// Not answered yet.
    Pending,
    /// Withdrawn before the live run took it (the run ended, or the wait was given up).
    Withdrawn,
    /// The live run took it, but no answer came (it is gone).
    Lost,
}

impl Sent {
    /// Drops `request` in `run_dir`.
    pub(crate) fn send(run_dir: &Path, request: &Request) -> std::io::Result<Sent> {
        let dir = run_dir.join(DIR);
        fs_err::create_dir_all(&dir)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = dir.join(format!("{nanos:032}-{}.{REQUEST}", std::process::id()));
        let text = serde_json::to_string(request).map_err(std::io::Error::other)?;
        write_atomically(&path, &text)?;
        Ok(Sent { request: path })
    }

    /// The live run's answer, if it has come.
    pub(crate) fn answer(&self) -> Answer {
        let reply = self.request.with_extension(REPLY);
        match fs_err::read_to_string(&reply) {
            Ok(text) => {
                let _ = fs_err::remove_file(&reply);
                match serde_json::from_str(&text) {
                    Ok(reply) => Answer::Replied(reply),
                    Err(e) => Answer::Replied(Reply {
                        error: Some(format!("its reply cannot be read: {e}")),
                        ..Reply::default()
                    }),
                }
            }
            Err(_) => Answer::Pending,
        }
    }

    /// Withdraws the request, unless the live run has taken it: then its answer, if it came.
    pub(crate) fn withdraw(&self) -> Answer {
        match fs_err::remove_file(&self.request) {
            Ok(()) => Answer::Withdrawn,
            Err(_) => match self.answer() {
                Answer::Pending => Answer::Lost,
                answer => answer,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_taken_once_and_its_reply_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let request = Request {
            steps: vec!["plan".to_owned()],
            verdict: Verdict::Reject("too vague".to_owned()),
            by: "Ada".to_owned(),
            pid: std::process::id(),
        };
        let sent = Sent::send(dir.path(), &request).unwrap();
        assert!(matches!(sent.answer(), Answer::Pending));
        let found = pending(dir.path());
        assert_eq!(found.len(), 1);
        let (taken, read) = take(&found[0]).expect("taken");
        assert!(take(&found[0]).is_none(), "taken once");
        assert!(pending(dir.path()).is_empty());
        let read = read.unwrap();
        assert_eq!(read.verdict, request.verdict);
        assert_eq!(read.steps, request.steps);
        answer(
            &taken,
            &Reply {
                recorded: vec!["plan".to_owned()],
                ..Reply::default()
            },
        );
        match sent.answer() {
            Answer::Replied(reply) => assert_eq!(reply.recorded, ["plan"]),
            _ => panic!("no reply"),
        }
        assert!(matches!(sent.answer(), Answer::Pending));
        let left: Vec<_> = fs_err::read_dir(dir.path().join(DIR)).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_request_not_taken_is_withdrawn_and_one_taken_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let request = Request {
            steps: vec!["plan".to_owned()],
            verdict: Verdict::Approve,
            by: "Ada".to_owned(),
            pid: std::process::id(),
        };
        let sent = Sent::send(dir.path(), &request).unwrap();
        assert!(matches!(sent.withdraw(), Answer::Withdrawn));
        assert!(pending(dir.path()).is_empty());
        let sent = Sent::send(dir.path(), &request).unwrap();
        let _taken = take(&pending(dir.path())[0]).unwrap();
        assert!(matches!(sent.withdraw(), Answer::Lost));
    }

    #[test]
    fn a_request_whose_sender_is_gone_is_dropped_unread() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let request = Request {
            steps: vec!["plan".to_owned()],
            verdict: Verdict::Approve,
            by: "Ada".to_owned(),
            pid,
        };
        Sent::send(dir.path(), &request).unwrap();
        assert!(take(&pending(dir.path())[0]).is_none());
        let left: Vec<_> = fs_err::read_dir(dir.path().join(DIR)).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
