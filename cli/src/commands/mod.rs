//! One module per command: its clap args and its `cmd_*` function.

pub mod agents;
pub mod apply;
pub mod clean;
pub mod graph;
pub mod init;
pub mod logs;
pub mod report;
pub mod resume;
pub mod run;
pub mod runs;
pub mod schema;
pub mod show;
pub mod validate;
pub mod watch;

use std::path::Path;

use medley_engine::git::Repo;
use medley_engine::history::{self, RunInfo};
use medley_engine::mission::{LoadError, Mission};
use medley_engine::plan::compile::CompileError;
use medley_engine::plan::{self, Plan, PlanOptions};

use crate::{CliError, Context, missions};

/// Finds, loads and compiles the mission a command names.
pub fn load_plan(
    ctx: &Context,
    arg: Option<&str>,
    options: &PlanOptions,
) -> Result<Plan, CliError> {
    let path = missions::resolve(&ctx.cwd, arg).map_err(CliError::invalid)?;
    compile_path(ctx, &path, options)
}

pub fn compile_path(ctx: &Context, path: &Path, options: &PlanOptions) -> Result<Plan, CliError> {
    let source = read_mission(ctx, path)?;
    compile_source(path, source, options)
}

/// The text of a mission file.
pub fn read_mission(ctx: &Context, path: &Path) -> Result<String, CliError> {
    fs_err::read_to_string(ctx.cwd.join(path)).map_err(|e| CliError::invalid(LoadError::Read(e)))
}

/// Compiles a mission from its text (read once: what runs is what is recorded).
pub fn compile_source(
    path: &Path,
    source: String,
    options: &PlanOptions,
) -> Result<Plan, CliError> {
    let mission = Mission::parse(path, source).map_err(CliError::invalid)?;
    plan::compile(&mission, options).map_err(|e| match e {
        CompileError::Mission(errors) => CliError::invalid(*errors),
        CompileError::Set(error) => CliError::invalid(error),
        CompileError::Only(error) => CliError::invalid(error),
    })
}

/// The repository the command runs in.
pub(crate) fn repo(ctx: &Context) -> Result<Repo, CliError> {
    Repo::discover(&ctx.cwd).map_err(CliError::invalid)
}

pub(crate) fn load(repo: &Repo, arg: &str) -> Result<RunInfo, CliError> {
    let id = history::resolve(&repo.git_dir, arg).map_err(CliError::invalid)?;
    history::load(&repo.git_dir, &id).map_err(CliError::failed)
}

/// A run's cost: the known part, and "unknown" for what is not known.
pub(crate) fn money(run: &RunInfo) -> String {
    match (run.cost_usd, run.unpriced_steps) {
        (Some(c), 0) => format!("${c:.4}"),
        (Some(c), _) => format!("${c:.4}+?"),
        (None, 0) if run.tokens.input + run.tokens.output == 0 => "-".to_owned(),
        (None, _) => "unknown".to_owned(),
    }
}
