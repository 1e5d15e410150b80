//! Running a plan: a base snapshot, a worktree per step, commands and agents in their own
//! process groups, gates, results merged from step to step, a journal of events, and a result
//! branch.
//!
//! Where to look:
//! - [`start`]: `run()` — the run's directory, lock and journal, what dead runs left, then the
//!   schedule and the finish; [`resume`]: going on with a failed, cancelled or killed run.
//! - [`scheduler`]: which step starts when (needs, `if`, `max_parallel`, watch's steering);
//!   [`expand`]: a dynamic matrix's children added to the run when its upstream passes
//!   (the plan is [`versions`]: it grows as the run goes).
//! - [`step`]: one step from base to `step_finished`; [`cached`]: cache keys and reuse.
//! - [`attempt`]: the one attempt driver (setup, start, work, commit, judge, gate, retry),
//!   driving a [`command`] step's work or an [`agent`]'s; [`chain`]: an agent step's chain of
//!   agents, or a race.
//! - [`setup`] (`.worktreeinclude` and `setup`), [`gate`] (step and mission gates),
//!   [`worktree`] (pooled or fresh worktrees), [`output`] (log tails, bounded stdout).
//! - [`offload`]: blocking work off the runtime's workers, or on them when it is short.
//! - [`state`]: what every step task shares (records, stops, budget); [`context`]: the
//!   template context and rendering; [`emitter`]: events to the journal and the reporters.
//! - [`finish`]: merging the leaves, the mission's gate, the result branch.
//! - [`approval`]: results that wait for a person (`approve`): asked about, decided, acted
//!   on; [`decisions`]: what the run knows of decisions, and the requests a person answers.
//! - [`merge`]: merging results (a step's needs, the leaves), a conflict resolved by the
//!   `merge`'s agents; [`merge_prompt`]: what a merge agent is told; [`merge_cache`]:
//!   resolutions cached and reused.
//! - [`options`], [`error`]: the public types; [`preflight`]: the agents' CLIs, checked
//!   before a run; [`program`]: finding a profile's program.

mod agent;
mod approval;
mod attempt;
mod cached;
mod chain;
mod command;
mod context;
mod decisions;
mod emitter;
mod end;
mod error;
mod expand;
mod finish;
mod gate;
mod includes;
mod merge;
mod merge_cache;
mod merge_prompt;
mod offload;
mod options;
mod output;
pub mod preflight;
mod program;
mod resume;
mod scheduler;
mod setup;
mod start;
mod state;
mod step;
mod versions;
mod worktree;

pub use decisions::{ApprovalRequest, Asker, Decision};
pub use error::{ResumeError, RunError};
pub use options::{Control, RunOptions, RunRecord, RunSummary};
pub use program::{program_of, which};
pub use resume::resume;
pub use start::{checked, run, worktrees_root};

/// Runs blocking work (git, the disk) off the async runtime's workers, or on the worker when
/// that work has been short ([`offload`]).
pub(crate) use offload::blocking;
