use std::fmt::Write as _;

use clap::Args;
use medley_engine::run::preflight::agent_status;

use crate::{CliError, Context, exit, print_data};

/// List the agent CLIs: found, version, path, verified
#[derive(Debug, Args)]
#[command(
    long_about = "List each agent runtime: whether its CLI is on PATH, its version and path, and \
        whether medley's adapter was verified against the real CLI's captured output (cursor was \
        not: its adapter follows the CLI's documentation only). An installed CLI that cannot run \
        (the legacy Python kimi-cli, a Node too old for Kimi Code) is shown with the reason.",
    after_help = "Example:\n  medley agents"
)]
pub struct AgentsArgs {}

pub fn cmd_agents(_ctx: &Context, _args: AgentsArgs) -> Result<u8, CliError> {
    let mut out = format!(
        "{:<8}  {:<13}  {:<5}  {:<10}  {:<8}  path\n",
        "runtime", "binary", "found", "version", "verified"
    );
    let mut problems = Vec::new();
    for agent in agent_status() {
        if let Some(problem) = &agent.problem {
            problems.push(format!("{}: cannot start: {problem}", agent.runtime.name()));
        }
        let _ = writeln!(
            out,
            "{:<8}  {:<13}  {:<5}  {:<10}  {:<8}  {}",
            agent.runtime.name(),
            agent.binary,
            if agent.path.is_some() { "yes" } else { "no" },
            agent
                .version
                .as_deref()
                .unwrap_or(if agent.problem.is_some() {
                    "unusable"
                } else {
                    "-"
                }),
            if agent.verified { "yes" } else { "no" },
            agent
                .path
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
    }
    out.push_str("command   (any program)  -      -           yes       a profile's `program`\n");
    for problem in problems {
        let _ = writeln!(out, "\n{problem}");
    }
    print_data(&out)?;
    Ok(exit::SUCCESS)
}
