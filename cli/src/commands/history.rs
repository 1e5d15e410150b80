//! `runs`, `show`, `logs`, `apply` and `clean`: what the journals on disk say.

use std::fmt::Write as _;
use std::time::Duration;

use clap::Args;
use medley_engine::event::{ErrorKind, Outcome};
use medley_engine::git::Repo;
use medley_engine::history::{self, RunInfo};
use medley_engine::run::worktrees_root;

use crate::style::human_duration;

use crate::report::skip_reason;
use crate::{CliError, Context, exit, print_data};

fn repo(ctx: &Context) -> Result<Repo, CliError> {
    Repo::discover(&ctx.cwd).map_err(CliError::invalid)
}

fn load(repo: &Repo, arg: &str) -> Result<RunInfo, CliError> {
    let id = history::resolve(&repo.git_dir, arg).map_err(CliError::invalid)?;
    history::load(&repo.git_dir, &id).map_err(CliError::failed)
}

/// A run's cost: the known part, and "unknown" for what is not known.
fn money(run: &RunInfo) -> String {
    match (run.cost_usd, run.unpriced_steps) {
        (Some(c), 0) => format!("${c:.4}"),
        (Some(c), _) => format!("${c:.4}+?"),
        (None, 0) if run.tokens.input + run.tokens.output == 0 => "-".to_owned(),
        (None, _) => "unknown".to_owned(),
    }
}

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

/// Print the logs of a run, or of one of its steps
#[derive(Debug, Args)]
#[command(
    long_about = "Print the logs of a run's steps: setup, each attempt's stdout and stderr, and \
        each gate's output, in the order they were written.",
    after_help = "Examples:\n  medley logs last\n  medley logs last greet.en"
)]
pub struct LogsArgs {
    /// A run id, the start of one, or `last`
    pub run: String,
    /// Only this step's logs
    pub step: Option<String>,
}

pub fn cmd_logs(ctx: &Context, args: LogsArgs) -> Result<u8, CliError> {
    let repo = repo(ctx)?;
    let run = load(&repo, &args.run)?;
    let steps: Vec<String> = match &args.step {
        Some(step) if run.steps.contains_key(step) || step == "_final" => vec![step.clone()],
        Some(step) => {
            return Err(CliError::invalid(history::HistoryError::NoStep {
                run: run.id.clone(),
                step: step.clone(),
                passed: run
                    .steps
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }));
        }
        None => run
            .steps
            .keys()
            .cloned()
            .chain(["_final".to_owned()])
            .collect(),
    };
    // Each file is copied to stdout as it is read: a huge log is never held in memory.
    let mut out = std::io::stdout().lock();
    match write_logs(&mut out, &repo, &run.id, &steps) {
        Ok(()) => Ok(exit::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::SUCCESS),
        Err(e) => Err(CliError::failed(crate::IoError(e))),
    }
}

/// Writes each step's log files to `out`, each under a `==> step: file <==` heading.
fn write_logs(
    out: &mut impl std::io::Write,
    repo: &Repo,
    run: &str,
    steps: &[String],
) -> std::io::Result<()> {
    use std::io::Read as _;
    for step in steps {
        for file in history::log_files(&repo.git_dir, run, step) {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let who = if step == "_final" {
                "mission gate"
            } else {
                step.as_str()
            };
            let Ok(mut reader) = fs_err::File::open(&file) else {
                continue;
            };
            let mut buf = vec![0u8; 64 * 1024];
            let mut last = None;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if last.is_none() {
                    writeln!(out, "==> {who}: {name} <==")?;
                }
                out.write_all(&buf[..n])?;
                last = Some(buf[n - 1]);
            }
            match last {
                None => writeln!(out, "==> {who}: {name} (empty) <==")?,
                Some(b'\n') => {}
                Some(_) => writeln!(out)?,
            }
        }
    }
    out.flush()
}

/// Apply a run's change to the working tree, uncommitted
#[derive(Debug, Args)]
#[command(
    long_about = "Apply a run's change (its result, or one step's with --step) against the run's \
        base to the working tree, as uncommitted changes. HEAD and the index are not touched. \
        Refuses, naming them, when a file it would change differs from the run's base.",
    after_help = "Examples:\n  medley apply last\n  medley apply last --step greet.en"
)]
pub struct ApplyArgs {
    /// A run id, the start of one, or `last`
    pub run: String,
    /// Apply this step's result instead of the run's
    #[arg(long, value_name = "ID")]
    pub step: Option<String>,
}

pub fn cmd_apply(ctx: &Context, args: ApplyArgs) -> Result<u8, CliError> {
    let repo = repo(ctx)?;
    let run = load(&repo, &args.run)?;
    let files = history::apply(&repo, &run, args.step.as_deref()).map_err(|e| match e {
        history::HistoryError::Git(_) | history::HistoryError::Io { .. } => CliError::failed(e),
        _ => CliError::invalid(e),
    })?;
    let what = args
        .step
        .as_deref()
        .map_or("result".to_owned(), |s| format!("step `{s}`"));
    if files.is_empty() {
        ctx.status(&format!("run {}: the {what} changes nothing", run.id));
    } else {
        ctx.status(&format!(
            "applied the {what} of run {} to the working tree ({} file{}): {}",
            run.id,
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            files.join(", ")
        ));
    }
    Ok(exit::SUCCESS)
}

/// Remove what ended runs left: worktrees, and with --runs old records
#[derive(Debug, Args)]
#[command(
    long_about = "Remove the worktrees of ended runs and whatever killed runs left, and free the \
        pooled worktrees failed steps kept for a look; say how much disk the pool of warm \
        worktrees holds. With --pool, also remove that pool (the next run starts cold). With \
        --cache, also empty the step cache. With --runs, also remove the records, refs and result branches of runs that are not their mission's \
        newest; a result branch never applied is kept unless --force. Live runs are never touched. \
        Running it twice is safe.",
    after_help = "Examples:\n  medley clean\n  medley clean --runs\n  medley clean --pool"
)]
pub struct CleanArgs {
    /// Also remove old runs' records, refs and result branches
    #[arg(long)]
    pub runs: bool,
    /// With --runs, remove result branches that were never applied too
    #[arg(long, requires = "runs")]
    pub force: bool,
    /// Also empty the step cache
    #[arg(long)]
    pub cache: bool,
    /// Also remove the pool of warm worktrees (their build caches go with them)
    #[arg(long)]
    pub pool: bool,
}

pub fn cmd_clean(ctx: &Context, args: CleanArgs) -> Result<u8, CliError> {
    let repo = repo(ctx)?;
    let worktrees = worktrees_root(None, &repo).map_err(CliError::failed)?;
    let cleaned = history::clean(
        &repo,
        &worktrees,
        args.runs,
        args.force,
        args.pool,
        ctx.settings.grace,
    )
    .map_err(CliError::failed)?;
    let mut said = false;
    for (run, step) in &cleaned.released_slots {
        ctx.status(&format!(
            "released the worktree step {step} of run {run} kept for a look"
        ));
        said = true;
    }
    if cleaned.removed_slots > 0 {
        ctx.status(&format!(
            "removed the pool of warm worktrees ({} worktree{})",
            cleaned.removed_slots,
            if cleaned.removed_slots == 1 { "" } else { "s" }
        ));
        said = true;
    }
    for run in &cleaned.worktrees {
        ctx.status(&format!("removed the worktrees of run {run}"));
        said = true;
    }
    for run in &cleaned.runs {
        ctx.status(&format!("removed run {run} (its record and refs)"));
        said = true;
    }
    for branch in &cleaned.branches {
        ctx.status(&format!("removed branch {branch}"));
        said = true;
    }
    for branch in &cleaned.kept_branches {
        ctx.status(&format!(
            "kept branch {branch}: it was never applied (`--force` removes it)"
        ));
        said = true;
    }
    if args.cache {
        let count = medley_engine::cache::clear(&repo).map_err(CliError::failed)?;
        if count > 0 {
            ctx.status(&format!(
                "emptied the cache ({count} result{})",
                if count == 1 { "" } else { "s" }
            ));
            said = true;
        }
    }
    if !said {
        ctx.status("nothing to clean");
    }
    if cleaned.pool_bytes > 0 {
        ctx.status(&format!(
            "the pool of warm worktrees holds {} (`medley clean --pool` removes it)",
            bytes(cleaned.pool_bytes)
        ));
    }
    Ok(exit::SUCCESS)
}

/// Continue a failed, cancelled or killed run
#[derive(Debug, Args)]
#[command(
    long_about = "Continue a failed, cancelled or killed run under the same id: the steps that \
        passed keep their results, the others run again, from the run's base and its mission as \
        it was when the run started. Works after a SIGKILL at any moment.",
    after_help = "Example:\n  medley resume last"
)]
pub struct ResumeArgs {
    /// A run id, the start of one, or `last`
    pub run: String,
    /// Run the remaining steps without reusing cached results
    #[arg(long)]
    pub no_cache: bool,
}

pub fn cmd_resume(ctx: &Context, args: ResumeArgs) -> Result<u8, CliError> {
    crate::commands::run::resume_run(ctx, &args.run, args.no_cache)
}

/// A size in bytes for people: `512 B`, `3.4 MB`, `1.2 GB`.
fn bytes(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}
