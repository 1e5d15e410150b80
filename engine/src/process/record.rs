//! The record of what a run started (`processes.jsonl` in its directory), and stopping what a
//! run that is no longer live left running.

use std::path::Path;
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

/// Appends `started` to the record at `path` (one JSON object a line).
pub(super) fn record_started(path: &Path, started: &Started) {
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
