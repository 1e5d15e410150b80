use std::fmt::Write as _;

use clap::Args;
use medley_engine::plan::{
    Action, Flavor, MergeSpec, Plan, PlanOptions, PlanStep, TemplateRef, duration_text, graph,
};

use medley_engine::event::RunOutcome;
use medley_engine::run::{RunOptions, RunRecord};

use crate::report::Reporter;

use crate::output::OutputFormat;
use crate::{CliError, Context, exit, print_data, style};

/// Run a mission
#[derive(Debug, Args)]
#[command(
    long_about = "Run a mission: compile it into a DAG of steps, run each step in its own git \
        worktree, gate it on its test command, and hand its committed result to the steps that \
        need it.\n\n\
        With --dry-run, print the plan (order, agents, rendered prompts and commands) and run nothing.",
    after_help = "Examples:\n  medley run hello --dry-run\n  medley run refactor --set module=src/lexer.rs --dry-run"
)]
pub struct RunArgs {
    /// A mission file or name (`missions/<name>.toml`); default: the only one in missions/
    pub mission: Option<String>,
    /// Override a mission var (repeatable)
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
    /// Run only STEP and the steps it needs (the mission's final gate is not run)
    #[arg(long, value_name = "STEP")]
    pub only: Option<String>,
    /// Steps running at once (default: the mission's `max_parallel`, else 4)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: Option<u32>,
    /// Start from this commit (a branch, tag or id) instead of a snapshot of the working tree
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// Run every step: reuse no cached result
    #[arg(long)]
    pub no_cache: bool,
    /// Give each step a brand-new worktree instead of a warm one from the pool
    #[arg(long)]
    pub fresh_worktrees: bool,
    /// Print the plan and run nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub fn parse_set(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!(
            "expected NAME=VALUE, e.g. `--set module=src/lexer.rs`, got `{text}`"
        )),
    }
}

pub fn cmd_run(ctx: &Context, args: RunArgs) -> Result<u8, CliError> {
    let options = PlanOptions {
        sets: args.sets.clone(),
        only: args.only.clone(),
        max_parallel: args.max_parallel.map(|n| n as usize),
    };
    let path =
        crate::missions::resolve(&ctx.cwd, args.mission.as_deref()).map_err(CliError::invalid)?;
    // Read once: the plan that runs and the mission recorded for `resume` are the same text.
    let source = super::read_mission(ctx, &path)?;
    let plan = super::compile_source(&path, source.clone(), &options)?;
    let record = RunRecord {
        mission_path: path.display().to_string(),
        mission_source: source,
        sets: options.sets,
        only: options.only,
        max_parallel: options.max_parallel,
        ..RunRecord::default()
    };
    if !args.dry_run {
        return run_plan(
            ctx,
            plan,
            args.base,
            args.no_cache,
            args.fresh_worktrees,
            record,
        );
    }
    // A profile's secret `env` values are masked in the printed plan too.
    let secrets = medley_engine::secrets::values(&plan, crate::settings::mission_var);
    let mask = |text: &str| medley_engine::secrets::mask(text, &secrets);
    if ctx.output == OutputFormat::Json {
        let json = serde_json::to_string_pretty(&plan).expect("a plan serialises to JSON");
        print_data(&mask(&(json + "\n")))?;
    } else {
        print_data(&mask(&dry_run_text(&plan, ctx.color)))?;
    }
    Ok(exit::SUCCESS)
}

/// Runs the plan for real, reporting its events, and maps its end to an exit code.
fn run_plan(
    ctx: &Context,
    plan: Plan,
    base: Option<String>,
    no_cache: bool,
    fresh_worktrees: bool,
    record: RunRecord,
) -> Result<u8, CliError> {
    let order = plan.steps.iter().map(|s| s.id.clone()).collect();
    let plan = medley_engine::run::preflight::check(plan).map_err(CliError::invalid)?;
    for warning in &plan.warnings {
        ctx.status(&format!(
            "{}: {warning}",
            style::yellow("warning", ctx.color)
        ));
    }
    let options = RunOptions {
        cwd: ctx.cwd.clone(),
        base,
        grace: ctx.settings.grace,
        network_wait: ctx.settings.network_wait,
        worktrees: None,
        no_cache,
        fresh_worktrees,
        record: Some(record),
        control: None,
        approvals: None,
    };
    drive(ctx, order, move |events, cancelled, approvals| {
        medley_engine::run::run(
            plan,
            RunOptions {
                approvals,
                ..options
            },
            events,
            cancelled,
        )
    })
}

/// Continues a failed, cancelled or killed run.
pub fn resume_run(ctx: &Context, run: &str, no_cache: bool) -> Result<u8, CliError> {
    let options = RunOptions {
        cwd: ctx.cwd.clone(),
        base: None,
        grace: ctx.settings.grace,
        network_wait: ctx.settings.network_wait,
        worktrees: None,
        no_cache,
        fresh_worktrees: false,
        record: None,
        control: None,
        approvals: None,
    };
    let run = run.to_owned();
    drive(
        ctx,
        Vec::new(),
        move |events, cancelled, approvals| async move {
            let options = RunOptions {
                approvals,
                ..options
            };
            medley_engine::run::resume(&run, options, events, cancelled).await
        },
    )
}

/// Starts a run with `start`, reports its events as they come, stops it in stages on Ctrl-C
/// or SIGTERM, and maps how it ended to an exit code. In the live view, with a terminal to
/// read from, results that wait for a person are asked about there (`start` gets the asker).
/// `order`: the mission's steps, for the summary table (empty: the order they ended in).
fn drive<F, Fut>(ctx: &Context, order: Vec<String>, start: F) -> Result<u8, CliError>
where
    F: FnOnce(
        tokio::sync::mpsc::UnboundedSender<medley_engine::event::Event>,
        tokio::sync::watch::Receiver<bool>,
        Option<medley_engine::run::Asker>,
    ) -> Fut,
    Fut: std::future::Future<
            Output = Result<medley_engine::run::RunSummary, medley_engine::run::RunError>,
        >,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(RuntimeError(e)))?;
    let namer: Option<crate::report::Namer> = super::repo(ctx).ok().map(|repo| {
        let git_dir = repo.git_dir.clone();
        Box::new(move |id: &str| medley_engine::history::short_id(&git_dir, id))
            as crate::report::Namer
    });
    let git_dir = ctx
        .verbose
        .then(|| super::repo(ctx).ok().map(|r| r.git_dir))
        .flatten();
    let mut reporter = Reporter::new(ctx.output, ctx.color, ctx.quiet, namer)
        .follow(git_dir)
        .order(order);
    let interactive =
        ctx.output == OutputFormat::Tty && std::io::IsTerminal::is_terminal(&std::io::stdin());
    let pager = ctx.settings_pager();
    runtime.block_on(async move {
        let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
        let (cancel, cancelled) = tokio::sync::watch::channel(false);
        let (asker, mut asked) = if interactive {
            let (asker, asked) = tokio::sync::mpsc::unbounded_channel();
            (Some(asker), Some((asked, crate::report::Typed::start())))
        } else {
            (None, None)
        };
        let report = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tokio::select! {
                    // The event that a result waits comes before the question about it.
                    biased;
                    event = received.recv() => match event {
                        Some(event) => reporter.event(&event),
                        None => break,
                    },
                    Some(request) = async { asked.as_mut()?.0.recv().await }, if asked.is_some() => {
                        if let Some((_, typed)) = &asked {
                            tokio::task::block_in_place(|| {
                                reporter.ask(request, typed, pager.as_deref())
                            });
                        }
                    }
                    _ = tick.tick(), if reporter.follows() => reporter.tick(),
                }
            }
            reporter.finish();
        });
        let signals = crate::signals::forward_to(cancel);
        let result = start(events, cancelled, asker).await;
        let _ = report.await;
        signals.abort();
        match result {
            // The run's last lines (what next, the report) are the reporter's.
            Ok(summary) => Ok(match summary.outcome {
                RunOutcome::Passed => exit::SUCCESS,
                RunOutcome::Failed => exit::FAILED,
                RunOutcome::Cancelled => exit::INTERRUPTED,
                RunOutcome::Waiting => exit::WAITING,
            }),
            Err(e) if e.is_usage() => Err(CliError::invalid(e)),
            Err(e) => Err(CliError::failed(e)),
        }
    })
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot start the async runtime")]
struct RuntimeError(#[source] std::io::Error);

/// The plan as text: steps in order with their agents and rendered templates.
fn dry_run_text(plan: &Plan, color: bool) -> String {
    let mut out = String::new();
    let steps = plan.steps.len();
    let _ = writeln!(
        out,
        "{} ({}): {steps} step{}, at most {} at once",
        style::bold(&format!("mission `{}`", plan.mission), color),
        plan.path,
        if steps == 1 { "" } else { "s" },
        plan.max_parallel
    );
    if let Some(description) = &plan.description {
        let _ = writeln!(out, "{description}");
    }
    if let Some(setup) = &plan.setup {
        field(
            &mut out,
            "",
            "setup",
            plan,
            None,
            setup,
            Flavor::Shell,
            color,
        );
    }
    let width = steps.to_string().len();
    for (i, step) in plan.steps.iter().enumerate() {
        out.push('\n');
        let mut head = format!(
            "{:>width$}. {}  [{}]",
            i + 1,
            style::bold(&graph::shown_id(step), color),
            graph::runner(step)
        );
        if !step.needs.is_empty() {
            let _ = write!(head, "  needs {}", step.needs.join(", "));
        }
        let _ = writeln!(out, "{head}");
        if let Some(axis) = &step.dynamic {
            let _ = writeln!(
                out,
                "   matrix: one child per item of `{}` in the result of `{}` (at most {})",
                axis.file, axis.from, axis.max_children
            );
        }
        if let Some(expr) = &step.if_ {
            let _ = writeln!(out, "   if: {expr}");
        }
        match &step.action {
            Action::Agent { prompt, .. } => field(
                &mut out,
                "   ",
                "prompt",
                plan,
                Some(step),
                prompt,
                Flavor::Text,
                color,
            ),
            Action::Command { run } => field(
                &mut out,
                "   ",
                "run",
                plan,
                Some(step),
                run,
                Flavor::Shell,
                color,
            ),
        }
        if let Some(gate) = &step.gate {
            field(
                &mut out,
                "   ",
                "gate",
                plan,
                Some(step),
                gate,
                Flavor::Shell,
                color,
            );
        }
        if let Some(message) = &step.approve {
            let retry = match step.on_reject {
                medley_engine::mission::OnReject::Retry => " (a rejection runs it again)",
                medley_engine::mission::OnReject::Fail => "",
            };
            let _ = writeln!(out, "   approve: {message}{}", style::dim(retry, color));
        }
        if let Some(merge) = &step.merge {
            merge_lines(&mut out, "   ", "merge", plan, Some(step), merge, color);
        }
        let _ = writeln!(
            out,
            "   {}",
            style::dim(
                &format!(
                    "attempts {}, timeout {}{}",
                    step.attempts,
                    duration_text::format(step.timeout),
                    if step.cache { "" } else { ", not cached" }
                ),
                color
            )
        );
    }
    if let Some(gate) = &plan.gate {
        out.push('\n');
        field(
            &mut out,
            "",
            "final gate",
            plan,
            None,
            gate,
            Flavor::Shell,
            color,
        );
    }
    if let Some(message) = &plan.approve {
        let _ = writeln!(out, "\nfinal approval: {message}");
    }
    if let Some(merge) = &plan.merge {
        out.push('\n');
        merge_lines(&mut out, "", "final merge", plan, None, merge, color);
    }
    let _ = writeln!(out, "\ndry run: nothing was run");
    out
}

/// A `merge`'s agents, and its prompt and gate as they would be rendered.
fn merge_lines(
    out: &mut String,
    indent: &str,
    label: &str,
    plan: &Plan,
    step: Option<&PlanStep>,
    merge: &MergeSpec,
    color: bool,
) {
    let _ = writeln!(
        out,
        "{indent}{label}: a conflict goes to [{}]",
        merge.agents.join(", ")
    );
    if let Some(prompt) = &merge.prompt {
        let name = format!("{label} prompt");
        field(out, indent, &name, plan, step, prompt, Flavor::Text, color);
    }
    if let Some(gate) = &merge.gate {
        let name = format!("{label} gate");
        field(out, indent, &name, plan, step, gate, Flavor::Shell, color);
    }
}

#[allow(clippy::too_many_arguments)]
fn field(
    out: &mut String,
    indent: &str,
    name: &str,
    plan: &Plan,
    step: Option<&medley_engine::plan::PlanStep>,
    template: &TemplateRef,
    flavor: Flavor,
    color: bool,
) {
    let (text, note) = match plan.preview(step, template, flavor) {
        Some(text) => (text, ""),
        None => (template.source.clone(), " (rendered at run time)"),
    };
    let text = text.trim_end();
    let hang = " ".repeat(indent.len() + name.len() + 2);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let _ = writeln!(out, "{indent}{name}: {first}{}", style::dim(note, color));
    for line in lines {
        let _ = writeln!(out, "{hang}{line}");
    }
}
