//! medley's engine: load a mission file, compile it into a plan, run it.
//!
//! The engine never prints, colours or exits: it returns typed errors (miette diagnostics for
//! anything the user wrote) and plain data the CLI renders.

pub mod agent;
pub mod cache;
pub mod event;
pub mod git;
pub mod history;
pub mod journal;
pub mod leftovers;
pub mod mission;
pub mod plan;
pub mod process;
pub mod run;
pub mod schema;
pub mod secrets;
pub mod watch;

#[cfg(test)]
mod fuzz;
