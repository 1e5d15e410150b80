use std::fmt::Write as _;

use clap::Args;
use medley_engine::run::preflight::agent_status;

use crate::{CliError, Context, exit, print_data};

/// List the agent CLIs: found, version, path, verified
#[derive(Debug, Args)]
#[command(
    long_about = "List each agent runtime: whether its CLI is on PATH, its version and path, and \
        whether medley's adapter was verified against the real CLI's captured output (cursor and \
        kimi were not: their adapters follow the CLIs' documentation only).",
    after_help = "Example:\n  medley agents"
)]
pub struct AgentsArgs {}

pub fn cmd_agents(_ctx: &Context, _args: AgentsArgs) -> Result<u8, CliError> {
    let mut out = format!(
        "{:<8}  {:<13}  {:<5}  {:<10}  {:<8}  path\n",
        "runtime", "binary", "found", "version", "verified"
    );
    for agent in agent_status() {
        let _ = writeln!(
            out,
            "{:<8}  {:<13}  {:<5}  {:<10}  {:<8}  {}",
            agent.runtime.name(),
            agent.binary,
            if agent.path.is_some() { "yes" } else { "no" },
            agent.version.as_deref().unwrap_or("-"),
            if agent.verified { "yes" } else { "no" },
            agent
                .path
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
    }
    out.push_str("command   (any program)  -      -           yes       a profile's `program`\n");
    print_data(&out)?;
    Ok(exit::SUCCESS)
}
