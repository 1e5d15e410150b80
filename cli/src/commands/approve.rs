//! `medley approve` and `medley reject`: a person's decision on results that wait, recorded in
//! the run's journal (who, when), then the run continued as `resume` does. A live run (at its
//! prompt, or still running other steps) takes the decision itself and goes on.

use clap::Args;
use medley_engine::history::{self, Verdict};

use crate::{CliError, Context, exit, style};

/// Approve results that wait for a person, and continue the run
#[derive(Debug, Args)]
#[command(
    long_about = "Approve results that wait for a person (steps with `approve`, or `@result`: \
        the mission's final result), then continue the run as `medley resume` does: the steps \
        that need them start. A run still live (at its prompt in another terminal, or running \
        other steps) takes the decision itself and goes on; this command then ends. The decision is kept in the run's journal, with who (your git \
        user) and when, and with the cached result: a rerun with the same cache key does not \
        ask again. Approving a result twice does nothing.",
    after_help = "Examples:\n  medley approve plan\n  medley approve plan review --run last --no-continue"
)]
pub struct ApproveArgs {
    /// The steps whose results to approve (`@result`: the mission's final result)
    #[arg(required = true, value_name = "STEP")]
    pub steps: Vec<String>,
    /// The run: `last`, `last~N`, or an id or its start (default: the newest run that waits)
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// Only record the decision; `medley resume RUN` continues later (a live run goes on anyway)
    #[arg(long)]
    pub no_continue: bool,
}

/// Reject results that wait for a person, saying why, and continue the run
#[derive(Debug, Args)]
#[command(
    long_about = "Reject results that wait for a person, saying why, then continue the run as \
        `medley resume` does. A rejected step counts as failed: the steps that need it are \
        skipped (reason: rejected, with your text). With `on_reject = \"retry\"` the step's \
        agent runs again on top of its rejected result, and hears your reason (its \
        `retry_prompt`, with `failure.kind` = `rejected` and `failure.output` = the reason).",
    after_help = "Example:\n  medley reject plan --why \"split the parser in two steps, not four\""
)]
pub struct RejectArgs {
    /// The steps whose results to reject (`@result`: the mission's final result)
    #[arg(required = true, value_name = "STEP")]
    pub steps: Vec<String>,
    /// Why: kept in the journal, shown to the steps skipped, heard by a retry
    #[arg(long, value_name = "TEXT", required = true)]
    pub why: String,
    /// The run: `last`, `last~N`, or an id or its start (default: the newest run that waits)
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// Only record the decision; `medley resume RUN` continues later (a live run goes on anyway)
    #[arg(long)]
    pub no_continue: bool,
}

pub fn cmd_approve(ctx: &Context, args: ApproveArgs) -> Result<u8, CliError> {
    decide(
        ctx,
        &args.steps,
        args.run.as_deref(),
        Verdict::Approve,
        args.no_continue,
    )
}

pub fn cmd_reject(ctx: &Context, args: RejectArgs) -> Result<u8, CliError> {
    let why = args.why.trim();
    if why.is_empty() {
        return Err(CliError::invalid(EmptyReason));
    }
    decide(
        ctx,
        &args.steps,
        args.run.as_deref(),
        Verdict::Reject(why.to_owned()),
        args.no_continue,
    )
}

fn decide(
    ctx: &Context,
    steps: &[String],
    run: Option<&str>,
    verdict: Verdict,
    no_continue: bool,
) -> Result<u8, CliError> {
    let repo = super::repo(ctx)?;
    let id = match run {
        Some(run) => history::resolve(&repo.git_dir, run).map_err(CliError::invalid)?,
        None => history::newest_waiting(&repo.git_dir).map_err(CliError::invalid)?,
    };
    let info = history::load(&repo.git_dir, &id).map_err(CliError::failed)?;
    let by = history::who(&repo);
    let decided = history::decide(&repo, &info, steps, &verdict, &by).map_err(|e| match e {
        history::DecideError::NotWaiting { .. } | history::DecideError::NoneWaiting => {
            CliError::invalid(e)
        }
        e => CliError::failed(e),
    })?;
    let short = history::short_id(&repo.git_dir, &id);
    for step in &decided.already {
        ctx.status(&format!(
            "`{step}` is already approved in run `{short}`: nothing to do"
        ));
    }
    let done = match verdict {
        Verdict::Approve => style::green("approved", ctx.color),
        Verdict::Reject(_) => style::red("rejected", ctx.color),
    };
    for step in &decided.recorded {
        ctx.status(&format!("{done} `{step}` in run `{short}` (by {by})"));
    }
    if decided.recorded.is_empty() {
        return Ok(exit::SUCCESS);
    }
    if decided.live {
        ctx.status(&format!(
            "run `{short}` is live: it took the decision and goes on (`medley show {short}` says how it stands)"
        ));
        return Ok(exit::SUCCESS);
    }
    if no_continue {
        ctx.status(&format!("`medley resume {short}` continues the run"));
        return Ok(exit::SUCCESS);
    }
    super::run::resume_run(ctx, &id, false)
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("`--why` is empty")]
#[diagnostic(help(
    "say what should change, e.g. `--why \"keep the public API as it is\"`: the reason is kept, and a retry hears it"
))]
struct EmptyReason;
