//! `medley runs`: the runs of this repository, oldest first.

use std::fmt::Write as _;
use std::time::Duration;

use clap::Args;
use medley_engine::history::{self};

use crate::style::human_duration;

use super::{money, repo};
use crate::{CliError, Context, exit, print_data};

/// List the runs of this repository
#[derive(Debug, Args)]
#[command(
    long_about = "List the runs of this repository, oldest first: id, mission, start, duration, \
        outcome, tokens and cost.",
    after_help = "Example:\n  medley runs"
)]
pub struct RunsArgs {}

pub fn cmd_runs(ctx: &Context, _args: RunsArgs) -> Result<u8, CliError> {
    let repo = repo(ctx)?;
    let runs = history::list(&repo.git_dir);
    if runs.is_empty() {
        ctx.status("no runs yet: start one with `medley run`");
        return Ok(exit::SUCCESS);
    }
    let mission_width = runs
        .iter()
        .map(|r| r.mission.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = format!(
        "{:<36}  {:<mission_width$}  {:<20}  {:>8}  {:<9}  {:>7}  {:>7}\n",
        "run", "mission", "started", "duration", "outcome", "tokens", "cost"
    );
    for run in &runs {
        let _ = writeln!(
            out,
            "{:<36}  {:<mission_width$}  {:<20}  {:>8}  {:<9}  {:>7}  {:>7}",
            run.id,
            run.mission,
            run.started
                .get(..19)
                .unwrap_or(&run.started)
                .replace('T', " "),
            run.duration_ms
                .map_or("-".to_owned(), |d| human_duration(Duration::from_millis(d))),
            run.status(),
            match (run.tokens.input + run.tokens.output, run.uncounted_steps) {
                (0, n) if n > 0 => "unknown".to_owned(),
                (sum, 0) => sum.to_string(),
                (sum, _) => format!("{sum}+?"),
            },
            money(run),
        );
    }
    print_data(&out)?;
    Ok(exit::SUCCESS)
}
