//! `medley runs`: the runs of this repository, oldest first.

use std::fmt::Write as _;
use std::time::Duration;

use clap::Args;
use medley_engine::history::{self};

use crate::output::OutputFormat;
use crate::style::human_duration;

use super::{print_json, repo, run_json, usage};
use crate::{CliError, Context, exit, print_data};

/// List the runs of this repository
#[derive(Debug, Args)]
#[command(
    long_about = "List the runs of this repository, oldest first: id, mission, start, duration, \
        outcome, tokens and cost. The id shown is the shortest prefix that names the run: \
        type it (or `last`, `last~1`, ...) wherever a command takes RUN. Tokens and cost are \
        shown only for runs where an agent worked; \"unknown\" marks what no CLI reported.\n\n\
        With --output json: one JSON array, a run per object (`id`, `short_id`, `mission`, \
        `mission_path`, `started`, `base`, `status`, `outcome`, `reason`, `result_branch`, \
        `duration_ms`, `tokens`, `cost_usd`, `unpriced_steps`, `uncounted_steps`, `live`, \
        `waiting`: the steps whose results wait for a person, `@result` for the final result; \
        `decided`: those decided since the run stopped, not yet continued). The outcome \
        `decided` means nothing waits any more but no run went on: `medley resume RUN` does.\n\n\
        With --waiting: only what needs a person, one line per result that waits: the run, its \
        mission, the step and the mission's `approve` message; and one per result decided but \
        not continued (`approved, not continued: medley resume RUN`).",
    after_help = "Examples:\n  medley runs\n  medley runs --waiting\n  medley runs --output json"
)]
pub struct RunsArgs {
    /// Only the runs with results that wait for a person (`medley approve` them)
    #[arg(long)]
    pub waiting: bool,
}

pub fn cmd_runs(ctx: &Context, args: RunsArgs) -> Result<u8, CliError> {
    let repo = repo(ctx)?;
    let all = history::list(&repo.git_dir);
    let ids: Vec<String> = all.iter().map(|r| r.id.clone()).collect();
    let short = history::short_ids(&ids);
    let (runs, short): (Vec<_>, Vec<_>) = all
        .into_iter()
        .zip(short)
        .filter(|(run, _)| !args.waiting || needs_a_person(run))
        .unzip();
    if args.waiting && ctx.output != OutputFormat::Json {
        return waiting(ctx, &runs, &short);
    }
    if ctx.output == OutputFormat::Json {
        let all: Vec<serde_json::Value> = runs
            .iter()
            .zip(&short)
            .map(|(run, short)| run_json(run, short, false))
            .collect();
        print_json(&serde_json::Value::Array(all))?;
        return Ok(exit::SUCCESS);
    }
    if runs.is_empty() {
        ctx.status("no runs yet: start one with `medley run`");
        return Ok(exit::SUCCESS);
    }
    let id_width = short.iter().map(String::len).max().unwrap_or(3).max(3);
    let mission_width = runs
        .iter()
        .map(|r| r.mission.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let rows: Vec<(String, String)> = runs.iter().map(usage).collect();
    let tokens_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let cost_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let any_usage = tokens_width > 0;
    let mut out = format!(
        "{:<id_width$}  {:<mission_width$}  {:<19}  {:>8}  {:<9}",
        "run", "mission", "started", "duration", "outcome"
    );
    if any_usage {
        let _ = write!(
            out,
            "  {:>tokens_width$}  {:>cost_width$}",
            "tokens",
            "cost",
            tokens_width = tokens_width.max(6),
            cost_width = cost_width.max(4)
        );
    }
    let mut out = out.trim_end().to_owned();
    out.push('\n');
    for ((run, short), (tokens, cost)) in runs.iter().zip(&short).zip(&rows) {
        let mut line = format!(
            "{short:<id_width$}  {:<mission_width$}  {:<19}  {:>8}  {:<9}",
            run.mission,
            run.started
                .get(..19)
                .unwrap_or(&run.started)
                .replace('T', " "),
            run.duration_ms
                .map_or("-".to_owned(), |d| human_duration(Duration::from_millis(d))),
            run.status(),
        );
        if any_usage {
            let _ = write!(
                line,
                "  {tokens:>tokens_width$}  {cost:>cost_width$}",
                tokens_width = tokens_width.max(6),
                cost_width = cost_width.max(4)
            );
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    print_data(&out)?;
    Ok(exit::SUCCESS)
}

/// Whether `run` needs a person: a result waits for a decision, or decisions wait for a
/// `medley resume`.
fn needs_a_person(run: &history::RunInfo) -> bool {
    !run.waiting().is_empty() || (!run.live && !run.decided.is_empty())
}

/// `--waiting`: a line per result that waits, with the message for its person; a line per
/// result decided but not continued, with the command that goes on.
fn waiting(ctx: &Context, runs: &[history::RunInfo], short: &[String]) -> Result<u8, CliError> {
    if runs.is_empty() {
        ctx.status("nothing waits for a person");
        return Ok(exit::SUCCESS);
    }
    let mut rows = Vec::new();
    for (run, short) in runs.iter().zip(short) {
        for step in run.waiting() {
            let approval = match run.steps.get(&step) {
                Some(s) => s.approval.as_ref(),
                None => run.approval.as_ref(),
            };
            let message = match approval {
                Some(history::Approval::Waiting { message, .. }) => message.clone(),
                _ => String::new(),
            };
            rows.push((short.clone(), run.mission.clone(), step, message));
        }
        if run.live {
            continue;
        }
        for step in &run.decided {
            let message = format!(
                "{}, not continued: `medley resume {short}`",
                super::decided_word(run, step)
            );
            rows.push((short.clone(), run.mission.clone(), step.clone(), message));
        }
    }
    let width = |f: fn(&(String, String, String, String)) -> usize, min: usize| {
        rows.iter().map(f).max().unwrap_or(0).max(min)
    };
    let (w0, w1, w2) = (
        width(|r| r.0.len(), 3),
        width(|r| r.1.len(), 7),
        width(|r| r.2.len(), 4),
    );
    let mut out = format!(
        "{:<w0$}  {:<w1$}  {:<w2$}  message\n",
        "run", "mission", "step"
    );
    for (run, mission, step, message) in &rows {
        let line = format!("{run:<w0$}  {mission:<w1$}  {step:<w2$}  {message}");
        let _ = writeln!(out, "{}", line.trim_end());
    }
    print_data(&out)?;
    Ok(exit::SUCCESS)
}
