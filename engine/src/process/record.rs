//! The record of what a run started (`processes.jsonl` in its directory), and stopping what a
//! run that is no longer live left running.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Grace;
use super::tree::{Tree, stages};

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

/// A fresh marker value.
pub(super) fn new_marker() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A run's record of the processes it starts, kept open while the run lasts: a run appends
/// two lines for every process it starts.
#[derive(Debug, Clone)]
pub struct Record(std::sync::Arc<RecordFile>);

#[derive(Debug)]
struct RecordFile {
    path: PathBuf,
    file: std::sync::Mutex<Option<fs_err::File>>,
}

impl Record {
    /// The record at `path`, created at the first line appended.
    pub fn new(path: PathBuf) -> Record {
        Record(std::sync::Arc::new(RecordFile {
            path,
            file: std::sync::Mutex::new(None),
        }))
    }

    /// Removes the record (every process it names has ended); a line appended later starts
    /// it again.
    pub fn remove(&self) {
        let mut file = self.0.file.lock().unwrap_or_else(|e| e.into_inner());
        *file = None;
        let _ = fs_err::remove_file(&self.0.path);
    }

    /// Appends `started` (one JSON object a line).
    pub(super) fn append(&self, started: &Started) {
        use std::io::Write as _;
        let Ok(mut line) = serde_json::to_vec(started) else {
            return;
        };
        line.push(b'\n');
        let mut file = self.0.file.lock().unwrap_or_else(|e| e.into_inner());
        if file.is_none() {
            *file = fs_err::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.0.path)
                .ok();
        }
        if let Some(open) = file.as_mut()
            && open.write_all(&line).is_err()
        {
            // Opened again for the next line.
            *file = None;
        }
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
