//! End-to-end tests: the real `medley` binary on real files in temporary directories.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod agents;
mod approvals;
mod approvals_live;
mod bounds;
mod cache;
mod cli;
mod corpus;
mod daily;
mod example;
mod faithful;
mod fanout;
mod git_fidelity;
mod killed;
mod kimi;
mod layout;
mod merge;
mod missions;
mod pool;
mod processes;
mod report;
mod resume;
mod run;
mod secrets;
mod watch;

use medley_tests::{CommandOutput, TestEnv, workspace_root};

/// The binary under test (built from `medley_cli::main`, like the real one).
fn env() -> TestEnv {
    TestEnv::new(env!("CARGO_BIN_EXE_medley_e2e"))
}

/// Runs medley in the workspace root (for the shipped missions and the corpus).
fn in_repo(args: &[&str]) -> CommandOutput {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_medley_e2e"))
        .current_dir(workspace_root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("COLUMNS", "100")
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("the medley binary runs");
    CommandOutput::new(output, workspace_root())
}

/// Snapshots live in tests/snapshots.
macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $value);
        })
    };
}
pub(crate) use snapshot;
