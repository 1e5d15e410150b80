use std::collections::BTreeMap;

use clap::Args;
use medley_engine::event::{Body, Outcome};
use medley_engine::plan::duration_text;
use medley_engine::run::RunOptions;
use medley_engine::watch::{Notice, WatchOptions};

use crate::report::Reporter;
use crate::{CliError, Context, exit, missions, style};

/// Run a mission, then again whenever files change
#[derive(Debug, Args)]
#[command(
    long_about = "Run a mission, then watch the working tree (honouring .gitignore) and the \
        mission file, and run it again on every change, from a fresh snapshot. Steps whose key \
        the change does not alter come from the cache. A change that arrives mid-run stops only \
        the running steps it can affect; the others run on and their results are reused. A \
        broken mission file shows its diagnostic and watch goes on. Ctrl-C stops it.",
    after_help = "Example:\n  medley watch refactor --debounce 200ms --clear"
)]
pub struct WatchArgs {
    /// A mission file or name (`missions/<name>.toml`); default: the only one in missions/
    pub mission: Option<String>,
    /// How long a burst of changes must settle before a run starts
    #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = parse_duration)]
    pub debounce: std::time::Duration,
    /// Clear the screen before each run
    #[arg(long)]
    pub clear: bool,
    /// Override a mission var (repeatable)
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = super::run::parse_set)]
    pub sets: Vec<(String, String)>,
    /// Give each step a brand-new worktree instead of a warm one from the pool
    #[arg(long)]
    pub fresh_worktrees: bool,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    duration_text::parse(text)
        .ok_or_else(|| format!("expected a duration such as `50ms` or `1s`, got `{text}`"))
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot start the async runtime")]
struct RuntimeError(#[source] std::io::Error);

pub fn cmd_watch(ctx: &Context, args: WatchArgs) -> Result<u8, CliError> {
    let path = missions::resolve(&ctx.cwd, args.mission.as_deref()).map_err(CliError::invalid)?;
    let options = WatchOptions {
        run: RunOptions {
            cwd: ctx.cwd.clone(),
            base: None,
            grace: ctx.settings.grace,
            network_wait: ctx.settings.network_wait,
            worktrees: None,
            no_cache: false,
            fresh_worktrees: args.fresh_worktrees,
            record: None,
            control: None,
            // Watch asks no one: a result that waits ends its run as `waiting`, and
            // `medley approve` goes on with it.
            approvals: None,
        },
        mission: path,
        sets: args.sets.clone(),
        debounce: args.debounce,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(RuntimeError(e)))?;
    let color = ctx.color;
    let output = ctx.output;
    let clear = args.clear;
    let quiet = ctx.quiet;
    runtime.block_on(async move {
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let (notices_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
        let (cancel, cancelled) = tokio::sync::watch::channel(false);
        let signals = crate::signals::forward_to(cancel);
        let watching = tokio::spawn(medley_engine::watch::watch(
            options, events_tx, notices_tx, cancelled,
        ));
        let mut reporter = Reporter::new(output, color, quiet, None);
        let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
        let mut events_open = true;
        let mut notices_open = true;
        while events_open || notices_open {
            tokio::select! {
                event = events.recv(), if events_open => match event {
                    Some(event) => {
                        if let Body::RunStarted { .. } = event.body {
                            outcomes.clear();
                        }
                        if let Body::StepFinished { step, outcome, .. } = &event.body {
                            outcomes.insert(step.clone(), *outcome);
                        }
                        reporter.event(&event);
                    }
                    None => events_open = false,
                },
                notice = notices.recv(), if notices_open => match notice {
                    Some(notice) => say(ctx, notice, &outcomes, clear, &mut reporter),
                    None => notices_open = false,
                },
            }
        }
        reporter.finish();
        signals.abort();
        match watching.await {
            Ok(Ok(())) => Ok(exit::INTERRUPTED),
            Ok(Err(e)) => Err(CliError::invalid(e)),
            Err(_) => Ok(exit::FAILED),
        }
    })
}

fn say(
    ctx: &Context,
    notice: Notice,
    outcomes: &BTreeMap<String, Outcome>,
    clear: bool,
    reporter: &mut Reporter,
) {
    let warn = |text: &str| style::yellow(text, ctx.color);
    match notice {
        Notice::Changed { files, mission } => {
            if clear {
                reporter.finish();
                ctx.status("\x1b[2J\x1b[H");
            }
            let mut what: Vec<String> = files.iter().take(10).map(|f| format!("`{f}`")).collect();
            if files.len() > 10 {
                what.push(format!("and {} more", files.len() - 10));
            }
            if mission {
                what.insert(0, "the mission file".to_owned());
            }
            ctx.status(&format!("{}: {}", warn("changed"), what.join(", ")));
        }
        Notice::Stopping { steps, keeping } => {
            if !steps.is_empty() {
                ctx.status(&format!(
                    "stopping {} (the change affects them)",
                    steps
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !keeping.is_empty() {
                ctx.status(&format!(
                    "{} run on: the change cannot alter their results",
                    keeping
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Notice::Invalid(errors) => {
            ctx.status(ctx.render_report(&miette::Report::new(*errors)).trim_end());
            ctx.status("watching for changes to the mission file (Ctrl-C to stop)");
        }
        Notice::Failed(error) => {
            ctx.status(ctx.render_report(&miette::Report::new(error)).trim_end())
        }
        Notice::Ended(summary) => {
            let pick = |wanted: Outcome| -> Vec<String> {
                outcomes
                    .iter()
                    .filter(|(_, o)| **o == wanted)
                    .map(|(s, _)| format!("`{s}`"))
                    .collect()
            };
            let (ran, cached) = (pick(Outcome::Passed), pick(Outcome::Cached));
            ctx.status(&format!(
                "ran: {}; from the cache: {}",
                if ran.is_empty() {
                    "none".to_owned()
                } else {
                    ran.join(", ")
                },
                if cached.is_empty() {
                    "none".to_owned()
                } else {
                    cached.join(", ")
                }
            ));
            ctx.status(&format!(
                "see what it did: {}",
                crate::report::report_line(&summary.run)
            ));
        }
        Notice::Waiting => ctx.status("watching for changes (Ctrl-C to stop)"),
    }
}
