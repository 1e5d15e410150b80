//! `medley show`: each step of a run (outcome, attempts, duration, commit, errors).

use std::fmt::Write as _;
use std::time::Duration;

use clap::Args;
use medley_engine::event::{ErrorKind, Outcome};
use medley_engine::history::{Approval, RunInfo, short_id};

use crate::output::OutputFormat;
use crate::style::human_duration;

use super::{has_agents, load, print_json, repo, run_json, usage};
use crate::report::skip_reason;
use crate::{CliError, Context, exit, print_data};

/// Lines of a failure's output `show` prints without `--full`: the end, where the verdict is.
const TAIL: usize = 12;

/// Show each step of a run: outcome, attempts, duration, commit
#[derive(Debug, Args)]
#[command(
    long_about = "Show each step of a run: its outcome, attempts, duration and commit, why it \
        was skipped, or what failed, with the last lines of the output that made it fail and \
        the worktree kept for a look (--full: all the output the journal keeps, its last 20 \
        lines; `medley logs` has the rest).\n\n\
        RUN is `last` (the default), `last~N` (N runs before it), or a run id or the start of \
        one (`medley runs` shows the shortest prefix of each).\n\n\
        With --output json: one JSON object, the run (as `medley runs --output json` gives \
        it) with `steps`, an object of each step's `outcome`, `attempts`, `duration_ms`, \
        `commit`, `agent`, `tokens`, `cost_usd`, `skipped`, `error`, `gate_output`, `worktree`, \
        `kept`, `approval` (`state`: `waiting`, `given` or `refused`, with `message`, `since` or \
        `by` and `at`, and a refusal's `reason`); the run's own `approval` is its final \
        result's.",
    after_help = "Examples:\n  medley show\n  medley show last~1 --full"
)]
pub struct ShowArgs {
    /// `last` (the default), `last~N`, or a run id or the start of one
    pub run: Option<String>,
    /// Show all the failure output the journal keeps, not only its last lines
    #[arg(long)]
    pub full: bool,
}

pub fn cmd_show(ctx: &Context, args: ShowArgs) -> Result<u8, CliError> {
    let repo = repo(ctx)?;
    let run = load(&repo, args.run.as_deref())?;
    let short = short_id(&repo.git_dir, &run.id);
    if ctx.output == OutputFormat::Json {
        print_json(&run_json(&run, &short, true))?;
        return Ok(exit::SUCCESS);
    }
    print_data(&text(&run, &short, args.full))?;
    Ok(exit::SUCCESS)
}

/// Where a result stands with its person, in a line.
fn approval_line(approval: &Approval, short: &str, step: &str) -> String {
    match approval {
        Approval::Waiting { message, .. } => {
            format!("waiting for approval: {message} (`medley approve {step} --run {short}`)")
        }
        Approval::Given { by, at, .. } => format!("approved by {by} at {at}"),
        Approval::Refused { by, at, reason, .. } => {
            format!("rejected by {by} at {at}: {reason}")
        }
    }
}

fn text(run: &RunInfo, short: &str, full: bool) -> String {
    let mut out = format!("run {} ({short})\n", run.id);
    let _ = writeln!(out, "mission   {} ({})", run.mission, run.mission_path);
    let _ = writeln!(out, "started   {}", run.started);
    let _ = writeln!(out, "base      {}", run.base);
    // The reason the run stopped is stale once what waited was decided.
    let reason = match super::decided_text(run, short) {
        Some(decided) if run.decided_only() => Some(decided),
        _ => run.reason.clone(),
    };
    let _ = writeln!(
        out,
        "outcome   {}{}",
        run.status(),
        reason.map(|r| format!(": {r}")).unwrap_or_default()
    );
    if !run.decided_only()
        && let Some(decided) = super::decided_text(run, short)
    {
        let _ = writeln!(out, "decided   {decided}");
    }
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
    if let Some(approval) = &run.approval {
        let _ = writeln!(
            out,
            "result    {}",
            approval_line(approval, short, "@result")
        );
    }
    let agents = has_agents(run);
    if agents {
        let (tokens, cost) = usage(run);
        let unknown = |n: usize| match n {
            0 => String::new(),
            1 => " (unknown for 1 step)".to_owned(),
            n => format!(" (unknown for {n} steps)"),
        };
        let _ = writeln!(out, "tokens    {tokens}{}", unknown(run.uncounted_steps));
        let _ = writeln!(out, "cost      {cost}{}", unknown(run.unpriced_steps));
    }
    let width = run.steps.keys().map(String::len).max().unwrap_or(4).max(4);
    let mut head = format!(
        "\n{:<width$}  {:<10}  {:>8}  {:>8}  {:<10}",
        "step", "outcome", "attempts", "time", "commit"
    );
    if agents {
        let _ = write!(
            head,
            "  {:<8}  {:>13}  {:>9}",
            "agent", "tokens in/out", "cost"
        );
    }
    let _ = writeln!(out, "{}", head.trim_end());
    for (id, step) in &run.steps {
        let outcome = step.outcome.map_or(
            if run.live { "running" } else { "unfinished" },
            Outcome::name,
        );
        let mut line = format!(
            "{id:<width$}  {outcome:<10}  {:>8}  {:>8}  {:<10}",
            step.attempts,
            step.duration_ms
                .map_or("-".to_owned(), |d| human_duration(Duration::from_millis(d))),
            step.commit
                .as_deref()
                .map_or("", |c| c.get(..10).unwrap_or(c)),
        );
        if agents {
            let (tokens, cost) = match &step.agent {
                Some(_) => (
                    crate::report::tokens(step.tokens),
                    crate::report::cost(step.cost_usd),
                ),
                None => (String::new(), String::new()),
            };
            let _ = write!(
                line,
                "  {:<8}  {tokens:>13}  {cost:>9}",
                step.agent.as_deref().unwrap_or("")
            );
        }
        let _ = writeln!(out, "{}", line.trim_end());
        if let Some(reason) = &step.skipped {
            let _ = writeln!(out, "{:width$}  skipped: {}", "", skip_reason(reason));
        }
        if let Some(approval) = &step.approval {
            let _ = writeln!(out, "{:width$}  {}", "", approval_line(approval, short, id));
        }
        if let Some(error) = &step.error {
            let mut lines = error.message.lines();
            let first = lines.next().unwrap_or("").trim_end_matches(':');
            let _ = writeln!(out, "{:width$}  {first}", "");
            let rest: Vec<&str> = lines.collect();
            let output: Vec<&str> = match (&step.gate_output, error.kind) {
                (Some(gate), ErrorKind::Gate) => gate.lines().collect(),
                _ => rest,
            };
            let keep = if full { output.len() } else { TAIL };
            let from = output.len().saturating_sub(keep);
            if from > 0 {
                let _ = writeln!(
                    out,
                    "{:width$}  | … {from} line{} above (`--full` shows them)",
                    "",
                    if from == 1 { "" } else { "s" }
                );
            }
            for line in &output[from..] {
                let _ = writeln!(out, "{:width$}  | {line}", "");
            }
            if step.outcome == Some(Outcome::Failed) {
                let _ = writeln!(out, "{:width$}  whole log: `medley logs {short} {id}`", "");
                if let Some(worktree) = &step.worktree {
                    let _ = writeln!(out, "{:width$}  worktree kept at {worktree}", "");
                }
            }
        }
    }
    out
}
