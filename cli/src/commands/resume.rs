//! `medley resume`: a failed, cancelled or killed run continued under the same id.

use clap::Args;

use crate::{CliError, Context};

/// Continue a failed, cancelled, killed or waiting run
#[derive(Debug, Args)]
#[command(
    long_about = "Continue a failed, cancelled, killed or waiting run under the same id: the \
        steps that passed keep their results, the others run again, from the run's base and its \
        mission as it was when the run started; the decisions people made on results that wait \
        hold, and what still waits is asked about again (in the live view) or waits on. Works \
        after a SIGKILL at any moment.",
    after_help = "Example:\n  medley resume last"
)]
pub struct ResumeArgs {
    /// `last`, `last~N`, or a run id or the start of one (`medley runs` shows the shortest)
    pub run: String,
    /// Run the remaining steps without reusing cached results
    #[arg(long)]
    pub no_cache: bool,
}

pub fn cmd_resume(ctx: &Context, args: ResumeArgs) -> Result<u8, CliError> {
    crate::commands::run::resume_run(ctx, &args.run, args.no_cache)
}
