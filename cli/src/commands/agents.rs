//! `medley agents`: each agent CLI (found, version, path, verified), and the profiles of the
//! mission at hand.

use std::fmt::Write as _;

use clap::Args;
use medley_engine::mission::Runtime;
use medley_engine::plan::{Plan, PlanOptions};
use medley_engine::run::preflight::{AgentStatus, agent_status};
use medley_engine::run::{program_of, which};
use serde_json::json;

use crate::output::OutputFormat;
use crate::{CliError, Context, exit, print_data};

/// List the agent CLIs (found, version, path, verified) and the mission's profiles
#[derive(Debug, Args)]
#[command(
    long_about = "List each agent runtime: whether its CLI is on PATH, its version and path, and \
        whether medley's adapter was verified against the real CLI's captured output (cursor was \
        not: its adapter follows the CLI's documentation only). A CLI that is not installed says \
        how to install it; an installed CLI that cannot run (the legacy Python kimi-cli, a Node \
        too old for Kimi Code) is shown with the reason.\n\n\
        Then the agent profiles of MISSION (default: the only mission in missions/, if there is \
        one): each profile's runtime, model and the program it runs, and whether that program \
        is found.\n\n\
        With --output json: one JSON object, `runtimes` (each `runtime`, `binary`, `found`, \
        `version`, `path`, `verified`, `problem`, `install`) and `profiles` (each `name`, \
        `runtime`, `model`, `program`, `found`, `path`; empty without a mission).",
    after_help = "Examples:\n  medley agents\n  medley agents refactor --output json"
)]
pub struct AgentsArgs {
    /// A mission whose profiles to list too (default: the only one in missions/, if any)
    pub mission: Option<String>,
}

pub fn cmd_agents(ctx: &Context, args: AgentsArgs) -> Result<u8, CliError> {
    let runtimes = agent_status();
    // A named mission must compile; with none, the only mission's profiles are a bonus.
    let plan = match args.mission.as_deref() {
        Some(mission) => Some(super::load_plan(
            ctx,
            Some(mission),
            &PlanOptions::default(),
        )?),
        None => super::load_plan(ctx, None, &PlanOptions::default()).ok(),
    };
    if ctx.output == OutputFormat::Json {
        let runtimes: Vec<serde_json::Value> = runtimes
            .iter()
            .map(|a| {
                json!({
                    "runtime": a.runtime.name(),
                    "binary": a.binary,
                    "found": a.path.is_some(),
                    "version": a.version,
                    "path": a.path.as_ref().map(|p| p.display().to_string()),
                    "verified": a.verified,
                    "problem": a.problem,
                    "install": install_hint(a),
                })
            })
            .collect();
        let profiles: Vec<serde_json::Value> = plan
            .as_ref()
            .map(profiles)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "runtime": p.runtime,
                    "model": p.model,
                    "program": p.program,
                    "found": p.path.is_some(),
                    "path": p.path,
                })
            })
            .collect();
        super::print_json(&json!({ "runtimes": runtimes, "profiles": profiles }))?;
        return Ok(exit::SUCCESS);
    }
    let mut out = format!(
        "{:<8}  {:<13}  {:<5}  {:<10}  {:<8}  path\n",
        "runtime", "binary", "found", "version", "verified"
    );
    let mut notes = Vec::new();
    for agent in &runtimes {
        if let Some(problem) = &agent.problem {
            notes.push(format!("{}: cannot start: {problem}", agent.runtime.name()));
        }
        let where_ = match &agent.path {
            Some(p) => p.display().to_string(),
            None => format!("not installed: {}", install_hint(agent)),
        };
        let line = format!(
            "{:<8}  {:<13}  {:<5}  {:<10}  {:<8}  {where_}",
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
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out.push_str("command   (any program)  -      -           yes       a profile's `program`\n");
    for note in notes {
        let _ = writeln!(out, "\n{note}");
    }
    if let Some(plan) = &plan {
        let profiles = profiles(plan);
        if profiles.is_empty() {
            let _ = writeln!(out, "\nmission `{}` runs no agent", plan.mission);
        } else {
            let _ = writeln!(out, "\nprofiles of mission `{}`:", plan.mission);
            let width = profiles.iter().map(|p| p.name.len()).max().unwrap_or(4);
            for p in profiles {
                let found = match &p.path {
                    Some(path) => path.clone(),
                    None => format!("`{}` not found on PATH", p.program),
                };
                let line = format!(
                    "  {:<width$}  {:<8}  {:<14}  {found}",
                    p.name,
                    p.runtime,
                    p.model.as_deref().unwrap_or("-"),
                );
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
    }
    print_data(&out)?;
    Ok(exit::SUCCESS)
}

/// How to install a runtime's CLI.
fn install_hint(agent: &AgentStatus) -> &'static str {
    medley_engine::agent::adapter(agent.runtime).install_hint()
}

struct Profile {
    name: String,
    runtime: &'static str,
    model: Option<String>,
    program: String,
    path: Option<String>,
}

/// The profiles a mission's steps use, with the program each runs and where it is.
fn profiles(plan: &Plan) -> Vec<Profile> {
    plan.agents
        .values()
        .map(|spec| {
            let program = program_of(spec);
            Profile {
                name: spec.name.clone(),
                runtime: spec.runtime.name(),
                model: spec.model.clone(),
                path: (!program.is_empty())
                    .then(|| which(&program))
                    .flatten()
                    .map(|p| p.display().to_string()),
                program: if spec.runtime == Runtime::Command {
                    spec.program.clone().unwrap_or_default().join(" ")
                } else {
                    program
                },
            }
        })
        .collect()
}
