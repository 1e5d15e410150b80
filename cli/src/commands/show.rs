//! `medley show`: each step of a run (outcome, attempts, duration, commit, errors).

use std::fmt::Write as _;
use std::time::Duration;

use clap::Args;
use medley_engine::event::{ErrorKind, Outcome};

use crate::style::human_duration;

use super::{load, money, repo};
use crate::report::skip_reason;
use crate::{CliError, Context, exit, print_data};

/// Show each step of a run: outcome, attempts, duration, commit
#[derive(Debug, Args)]
#[command(
    long_about = "Show each step of a run: its outcome, attempts, duration and commit, why it \
        was skipped, or what failed.\n\nRUN is a run id, the start of one, or `last`.",
    after_help = "Example:\n  medley show last"
)]
pub struct ShowArgs {
    /// A run id, the start of one, or `last`
    pub run: String,
}

pub fn cmd_show(ctx: &Context, args: ShowArgs) -> Result<u8, CliError> {
    let repo = repo(ctx)?;
    let run = load(&repo, &args.run)?;
    let mut out = format!("run {}\n", run.id);
    let _ = writeln!(out, "mission   {} ({})", run.mission, run.mission_path);
    let _ = writeln!(out, "started   {}", run.started);
    let _ = writeln!(out, "base      {}", run.base);
    let _ = writeln!(
        out,
        "outcome   {}{}",
        run.status(),
        run.reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    if let Some(d) = run.duration_ms {
        let _ = writeln!(
            out,
            "duration  {}",
            human_duration(Duration::from_millis(d))
        );
    }
    if let Some(branch) = &run.result_branch {
        let _ = writeln!(out, "result    branch {branch}");
    }
    let _ = writeln!(
        out,
        "tokens    {} in, {} out{}; cost {}{}",
        run.tokens.input,
        run.tokens.output,
        if run.uncounted_steps > 0 {
            format!(
                " (unknown for {} step{})",
                run.uncounted_steps,
                if run.uncounted_steps == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        },
        money(&run),
        if run.unpriced_steps > 0 {
            format!(
                " (unknown for {} step{})",
                run.unpriced_steps,
                if run.unpriced_steps == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        }
    );
    let width = run.steps.keys().map(String::len).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "\n{:<width$}  {:<9}  {:>8}  {:>8}  {:<10}  {:<8}  {:>13}  {:>9}",
        "step", "outcome", "attempts", "time", "commit", "agent", "tokens in/out", "cost"
    );
    for (id, step) in &run.steps {
        let outcome = step.outcome.map_or(
            if run.live { "running" } else { "unfinished" },
            Outcome::name,
        );
        let (tokens, cost) = match &step.agent {
            Some(_) => (
                crate::report::tokens(step.tokens),
                step.cost_usd
                    .map_or("unknown".to_owned(), |c| format!("${c:.4}")),
            ),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "{id:<width$}  {outcome:<9}  {:>8}  {:>8}  {:<10}  {:<8}  {tokens:>13}  {cost:>9}",
            step.attempts,
            step.duration_ms
                .map_or("-".to_owned(), |d| human_duration(Duration::from_millis(d))),
            step.commit
                .as_deref()
                .map_or("", |c| c.get(..10).unwrap_or(c)),
            step.agent.as_deref().unwrap_or(""),
        );
        if let Some(reason) = &step.skipped {
            let _ = writeln!(out, "{:width$}  skipped: {}", "", skip_reason(reason));
        }
        if let Some(error) = &step.error {
            for line in error.message.lines().take(12) {
                let _ = writeln!(out, "{:width$}  {line}", "");
            }
            if error.kind == ErrorKind::Gate
                && let Some(output) = &step.gate_output
            {
                let lines: Vec<&str> = output.lines().collect();
                for line in &lines[lines.len().saturating_sub(12)..] {
                    let _ = writeln!(out, "{:width$}  | {line}", "");
                }
            }
            if step.outcome == Some(Outcome::Failed)
                && let Some(worktree) = &step.worktree
            {
                let _ = writeln!(out, "{:width$}  worktree kept at {worktree}", "");
            }
        }
    }
    print_data(&out)?;
    Ok(exit::SUCCESS)
}
