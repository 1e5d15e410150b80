//! Command-line arguments (clap derive).

use clap::{Args, Parser, Subcommand};

use crate::output::{ColorChoice, OutputFormat};

use crate::commands::{
    apply::ApplyArgs, clean::CleanArgs, logs::LogsArgs, runs::RunsArgs, show::ShowArgs,
};
use crate::commands::{
    graph::GraphArgs, init::InitArgs, run::RunArgs, schema::SchemaArgs, validate::ValidateArgs,
};

/// Run AI coding agents as a DAG of gated steps, each in its own git worktree
#[derive(Debug, Parser)]
#[command(
    name = "medley",
    bin_name = "medley",
    version,
    about,
    long_about = "Run AI coding agents as a DAG of gated steps, each in its own git worktree.\n\n\
        A mission file (TOML, in missions/) names the steps, the agent or command each one runs, \
        the test command that gates it, and what it needs from earlier steps.",
    after_help = "Exit codes: 0 all passed, 1 a step, gate or budget failed, 2 invalid mission or usage, 3 waiting for approval (`medley approve`), 130 interrupted.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// A live view, one line per event, or JSON on stdout (a run's events; a data command's data)
    #[arg(long, global = true, value_enum, help_heading = "Output")]
    pub output: Option<OutputFormat>,
    /// When to use colour (NO_COLOR turns it off)
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, help_heading = "Output")]
    pub color: ColorChoice,
    /// Show only failures, warnings and the run's end
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Output"
    )]
    pub quiet: bool,
    /// Also stream each step's output as it is written, prefixed by the step's id
    #[arg(short, long, global = true, help_heading = "Output")]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Run(RunArgs),
    Watch(crate::commands::watch::WatchArgs),

    Validate(ValidateArgs),
    Missions(crate::commands::missions::MissionsArgs),
    Graph(GraphArgs),
    Resume(crate::commands::resume::ResumeArgs),
    Approve(crate::commands::approve::ApproveArgs),
    Reject(crate::commands::approve::RejectArgs),
    Runs(RunsArgs),

    Show(ShowArgs),
    Logs(LogsArgs),
    Apply(ApplyArgs),
    Report(crate::commands::report::ReportArgs),
    Clean(CleanArgs),
    Agents(crate::commands::agents::AgentsArgs),

    Init(InitArgs),
    Schema(SchemaArgs),
    Completions(crate::commands::completions::CompletionsArgs),
    Man(crate::commands::completions::ManArgs),
}
