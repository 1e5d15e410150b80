//! What a run is asked to do: its options, the record kept so `resume` goes on as it was, the
//! steering of a live run (watch mode), and how it ended.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use crate::event::RunOutcome;
use crate::process::Grace;

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where the user ran medley (inside their repository).
    pub cwd: PathBuf,
    /// `--base REF`: start from this commit instead of a snapshot of the working tree.
    pub base: Option<String>,
    /// The stages of stopping a process group.
    pub grace: Grace,
    /// Where worktrees go (default: the user's cache dir, `medley/worktrees`).
    pub worktrees: Option<PathBuf>,
    /// `--no-cache`: run every step, reuse nothing.
    pub no_cache: bool,
    /// `--fresh-worktrees`: a brand-new worktree per step instead of a warm pool slot.
    pub fresh_worktrees: bool,
    /// How long an agent may wait for the network before its attempt ends as `unreachable`
    /// (codex retries for minutes when offline: AGENTS.md 2.9).
    pub network_wait: Duration,
    /// Steering from outside (watch mode): stop some steps, or stop starting new ones.
    pub control: Option<watch::Receiver<Control>>,
    /// What was asked, kept in the run's directory so `resume` compiles the same plan.
    pub record: Option<RunRecord>,
    /// Where results that wait for a person are asked about (the CLI's prompt); `None`: no one
    /// is there, and the run ends as `waiting` once nothing else can run.
    pub approvals: Option<super::decisions::Asker>,
}

/// Steering of a live run (watch mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Control {
    /// Start no new step; end once the running ones have ended.
    pub drain: bool,
    /// Steps to stop now (their work is no longer wanted).
    pub stop: Vec<String>,
}

/// What a run was asked to do: the mission as it was, and the options that shape its plan.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub mission_path: String,
    pub mission_source: String,
    pub sets: Vec<(String, String)>,
    pub only: Option<String>,
    pub max_parallel: Option<usize>,
    /// `--no-cache` (filled in by [`run`]).
    #[serde(default)]
    pub no_cache: bool,
    /// `--base REF`, as given (the base itself is pinned as `refs/medley/<run>/base`).
    #[serde(default)]
    pub base: Option<String>,
    /// The stages of a staged stop, in milliseconds: after SIGINT, after SIGTERM.
    #[serde(default)]
    pub grace_ms: Option<[u64; 2]>,
    /// Where the run's worktrees went, when not the default place.
    #[serde(default)]
    pub worktrees: Option<PathBuf>,
    /// `--fresh-worktrees`.
    #[serde(default)]
    pub fresh_worktrees: bool,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run: String,
    pub outcome: RunOutcome,
    pub reason: Option<String>,
    pub result_branch: Option<String>,
}
