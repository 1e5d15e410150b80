//! One module per command: its clap args and its `cmd_*` function.

pub mod agents;
pub mod apply;
pub mod approve;
pub mod clean;
pub mod completions;
pub mod graph;
pub mod init;
pub mod logs;
pub mod missions;
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

use crate::{CliError, Context};

/// Finds, loads and compiles the mission a command names.
pub fn load_plan(
    ctx: &Context,
    arg: Option<&str>,
    options: &PlanOptions,
) -> Result<Plan, CliError> {
    let path = crate::missions::resolve(&ctx.cwd, arg).map_err(CliError::invalid)?;
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

/// The run RUN names (`last` when it names none).
pub(crate) fn load(repo: &Repo, arg: Option<&str>) -> Result<RunInfo, CliError> {
    let id = history::resolve(&repo.git_dir, arg.unwrap_or("last")).map_err(CliError::invalid)?;
    history::load(&repo.git_dir, &id).map_err(CliError::failed)
}

/// Whether any agent worked in the run (a run without one has no tokens or dollars to show).
pub(crate) fn has_agents(run: &RunInfo) -> bool {
    run.steps.values().any(|s| s.agent.is_some())
        || run.tokens.input + run.tokens.output > 0
        || run.unpriced_steps > 0
        || run.uncounted_steps > 0
        || run.cost_usd.is_some()
}

/// A run's tokens and cost for a listing: blank without agents, "unknown" for what is not known.
pub(crate) fn usage(run: &RunInfo) -> (String, String) {
    if !has_agents(run) {
        return (String::new(), String::new());
    }
    (
        crate::report::run_tokens(run.tokens, run.uncounted_steps),
        crate::report::run_cost(run.cost_usd, run.unpriced_steps),
    )
}

/// A run as JSON data (`runs`, `show`): its journal's summary, its status and its short id.
pub(crate) fn run_json(run: &RunInfo, short: &str, with_steps: bool) -> serde_json::Value {
    let mut value = serde_json::to_value(run).expect("a run summary serialises to JSON");
    if let Some(object) = value.as_object_mut() {
        object.insert("short_id".into(), short.into());
        object.insert("status".into(), run.status().into());
        object.insert("waiting".into(), run.waiting().into());
        if !with_steps {
            object.remove("steps");
        }
    }
    value
}

/// What was decided on `run` and waits for a resume, in a line: `plan approved, not
/// continued: `medley resume RUN``; `None` when nothing was decided since the run stopped.
pub(crate) fn decided_text(run: &RunInfo, short: &str) -> Option<String> {
    if run.live || run.decided.is_empty() {
        return None;
    }
    let named: Vec<String> = run
        .decided
        .iter()
        .map(|step| format!("{step} {}", decided_word(run, step)))
        .collect();
    Some(format!(
        "{}, not continued: `medley resume {short}`",
        named.join(", ")
    ))
}

/// `approved` or `rejected`: how `step` (`@result`: the final result) of `run` was decided.
pub(crate) fn decided_word(run: &RunInfo, step: &str) -> &'static str {
    let approval = match run.steps.get(step) {
        Some(s) => s.approval.as_ref(),
        None => run.approval.as_ref(),
    };
    match approval {
        Some(medley_engine::history::Approval::Refused { .. }) => "rejected",
        _ => "approved",
    }
}

/// Prints one JSON document on stdout.
pub(crate) fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).expect("a JSON value serialises");
    crate::print_data(&(text + "\n"))
}

/// Refuses `--output json` for a command that has no data to print.
pub(crate) fn no_json(ctx: &Context, command: &str) -> Result<(), CliError> {
    if ctx.output == crate::output::OutputFormat::Json {
        return Err(CliError::invalid(NoJson(command.to_owned())));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("`medley {0}` has no JSON output: it prints no data, only what it did")]
#[diagnostic(help("run it without `--output json`"))]
pub(crate) struct NoJson(String);
