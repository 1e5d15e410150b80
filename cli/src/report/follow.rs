//! `-v`: each running step's output streamed as it is written, a line at a time, prefixed by
//! the step's id (as `docker compose up` does), read from the step's log files.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

/// Follows the log files of a run's steps.
pub struct Follow {
    git_dir: PathBuf,
    run: String,
    /// The steps being followed, each with how far each of its files was read, and the
    /// unfinished last line of each.
    steps: BTreeMap<String, HashMap<PathBuf, (u64, Vec<u8>)>>,
}

impl Follow {
    pub fn new(git_dir: PathBuf) -> Follow {
        Follow {
            git_dir,
            run: String::new(),
            steps: BTreeMap::new(),
        }
    }

    pub fn start_run(&mut self, run: &str) {
        self.run = run.to_owned();
        self.steps.clear();
    }

    pub fn start_step(&mut self, step: &str) {
        self.steps.entry(step.to_owned()).or_default();
    }

    /// The new whole lines of every followed step, prefixed by its id; with `end`, the step's
    /// unfinished last lines too, and it is no longer followed.
    pub fn poll(&mut self, only: Option<&str>, end: bool) -> Vec<String> {
        let mut lines = Vec::new();
        let ids: Vec<String> = match only {
            Some(step) => self.steps.contains_key(step).then(|| vec![step.to_owned()]),
            None => Some(self.steps.keys().cloned().collect()),
        }
        .unwrap_or_default();
        for id in ids {
            let files = medley_engine::history::log_files(&self.git_dir, &self.run, &id);
            let Some(read) = self.steps.get_mut(&id) else {
                continue;
            };
            let who = if id == "_final" { "mission gate" } else { &id };
            for file in files {
                // An agent's raw JSON stream is summed up by its events already.
                if file.extension().is_some_and(|e| e == "jsonl") {
                    continue;
                }
                let (offset, partial) = read.entry(file.clone()).or_default();
                let new = read_from(&file, offset);
                partial.extend_from_slice(&new);
                while let Some(at) = partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=at).collect();
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    lines.push(format!("{who} | {text}"));
                }
                if end && !partial.is_empty() {
                    lines.push(format!("{who} | {}", String::from_utf8_lossy(partial)));
                    partial.clear();
                }
            }
            if end {
                self.steps.remove(&id);
            }
        }
        lines
    }
}

/// What `path` holds past `offset` (at most 1 MiB at a time), moving `offset` on.
fn read_from(path: &Path, offset: &mut u64) -> Vec<u8> {
    let Ok(mut file) = fs_err::File::open(path) else {
        return Vec::new();
    };
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(*offset)).is_err()
        || file.by_ref().take(1 << 20).read_to_end(&mut buf).is_err()
    {
        return Vec::new();
    }
    *offset += buf.len() as u64;
    buf
}
