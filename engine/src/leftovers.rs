//! What runs that are no longer live left behind: processes still running, and worktrees.

use std::path::Path;

use crate::git::Repo;
use crate::journal;
use crate::process::{self, Grace};

/// The file of a run's directory that records the processes it started.
pub const PROCESSES: &str = "processes.jsonl";

/// Stops, in stages, what a run that is no longer live left running (the processes recorded
/// in its directory, their groups and descendants), then forgets the record.
pub fn stop_dead_processes(run_dir: &Path, grace: Grace) {
    let path = run_dir.join(PROCESSES);
    if !path.exists() {
        return;
    }
    process::stop_recorded(&path, grace);
    let _ = fs_err::remove_file(&path);
}

/// Removes the worktrees of runs no live process holds (killed or ended runs), except `keep`,
/// after stopping what they left running. Returns the runs whose worktrees were removed.
pub fn prune_dead_runs(
    repo: &Repo,
    worktrees: &Path,
    keep: Option<&str>,
    grace: Grace,
) -> Vec<String> {
    let runs = journal::runs_dir(&repo.git_dir);
    let mut pruned = Vec::new();
    for run in journal::run_ids(&runs) {
        let dir = runs.join(&run);
        if Some(run.as_str()) != keep && dir.join(PROCESSES).exists() && !journal::is_live(&dir) {
            stop_dead_processes(&dir, grace);
        }
    }
    let Ok(entries) = fs_err::read_dir(worktrees) else {
        return pruned;
    };
    for entry in entries.flatten() {
        let run = entry.file_name().to_string_lossy().into_owned();
        // The pool of warm worktrees lives beside the runs' directories.
        if run == "pool" {
            continue;
        }
        if Some(run.as_str()) == keep || journal::is_live(&runs.join(&run)) {
            continue;
        }
        if fs_err::remove_dir_all(entry.path()).is_ok() {
            pruned.push(run);
        }
    }
    if !pruned.is_empty() {
        let _ = repo.prune_worktrees();
    }
    pruned
}
