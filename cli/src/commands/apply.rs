//! `medley apply`: a run's change written to the working tree, uncommitted.

use clap::Args;
use medley_engine::history::{self};

use super::{load, repo};
use crate::{CliError, Context, exit};

/// Apply a run's change to the working tree, uncommitted
#[derive(Debug, Args)]
#[command(
    long_about = "Apply a run's change (its result, or one step's with --step) against the run's \
        base to the working tree, as uncommitted changes. HEAD and the index are not touched. \
        Refuses, naming them, when a file it would change differs from the run's base.\n\n\
        RUN is `last` (the default), `last~N`, or a run id or the start of one.",
    after_help = "Examples:\n  medley apply\n  medley apply last --step greet.en"
)]
pub struct ApplyArgs {
    /// `last` (the default), `last~N`, or a run id or the start of one
    pub run: Option<String>,
    /// Apply this step's result instead of the run's
    #[arg(long, value_name = "ID")]
    pub step: Option<String>,
}

pub fn cmd_apply(ctx: &Context, args: ApplyArgs) -> Result<u8, CliError> {
    let repo = repo(ctx)?;
    super::no_json(ctx, "apply")?;
    let run = load(&repo, args.run.as_deref())?;
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
