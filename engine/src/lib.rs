//! medley's engine: load a mission file, compile it into a plan, run it.
//!
//! The engine never prints, colours or exits: it returns typed errors (miette diagnostics for
//! anything the user wrote) and plain data the CLI renders.
//!
//! A map, in the order a run goes through it (dependencies run one way: `run` → `plan` →
//! `mission`; `run` → `git`, `agent`, `process`, `journal`, `cache`; nothing back up):
//! - [`mission`]: the file format's types, loading with spans, diagnostics.
//! - [`plan`]: a mission compiled into concrete steps in a DAG (ids, vars, agents, matrices,
//!   needs, template checks), and the templates and sh lexer that keep values out of commands.
//! - [`run`]: running a plan — scheduler, one attempt driver for commands and agents, gates,
//!   setup, the cache, resume, the finish (see its map).
//! - [`agent`]: one adapter per agent CLI (argv, stream parsing, outcomes), and their samples.
//! - [`git`]: snapshots, commits, merges, refs ([`git::refs`] names every ref), worktrees and
//!   the pool of warm worktrees.
//! - [`process`]: child processes in their own groups, stopped in stages, with their trees.
//! - [`event`] (the event types), [`journal`] (run state on disk), [`history`] (runs read
//!   back: list, show, apply, clean), [`leftovers`] (what dead runs left), [`cache`],
//!   [`secrets`], [`watch`], [`schema`]; `markdown` (fences for what medley writes).
//! - [`report`]: a run's report (HTML, Markdown, JUnit) from its journal, prompt archive,
//!   recorded mission and refs.
//!
//! For example, "the gate's output tail is cut wrong": `run/gate.rs` runs gates and
//! `run/output.rs` cuts tails.

pub mod agent;
pub mod cache;
pub mod event;
pub mod git;
pub mod history;
pub mod journal;
pub mod leftovers;
mod markdown;
pub mod mission;
pub mod plan;
pub mod process;
pub mod report;
pub mod run;
pub mod schema;
pub mod secrets;
pub mod watch;

#[cfg(test)]
mod fuzz;
