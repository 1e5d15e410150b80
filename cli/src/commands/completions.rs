//! `medley completions` and `medley man`: shell completions and a man page, generated from the
//! same clap definitions as the command line itself.

use clap::{Args, ValueEnum};

use crate::{CliError, Context, exit};

/// Print a shell completion script
#[derive(Debug, Args)]
#[command(
    long_about = "Print the completion script for SHELL on stdout, generated from medley's own \
        argument definitions (so it always matches this binary).",
    after_help = "Examples:\n  medley completions bash > ~/.local/share/bash-completion/completions/medley\n  \
        medley completions zsh > ~/.zfunc/_medley\n  \
        medley completions fish > ~/.config/fish/completions/medley.fish"
)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
    Elvish,
}

pub fn cmd_completions(ctx: &Context, args: CompletionsArgs) -> Result<u8, CliError> {
    super::no_json(ctx, "completions")?;
    use clap_complete::Shell as S;
    let shell = match args.shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
        Shell::Powershell => S::PowerShell,
        Shell::Elvish => S::Elvish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut crate::command(), "medley", &mut out);
    crate::print_data(&String::from_utf8_lossy(&out))?;
    Ok(exit::SUCCESS)
}

/// Print medley's man page (roff)
#[derive(Debug, Args)]
#[command(
    long_about = "Print the man page medley(1) on stdout, in roff, generated from medley's own \
        argument definitions: its options, its commands and their short help, and the exit \
        codes (`medley COMMAND --help` has each command's own options).",
    after_help = "Examples:\n  medley man | man -l -\n  medley man > ~/.local/share/man/man1/medley.1"
)]
pub struct ManArgs {}

pub fn cmd_man(ctx: &Context, _args: ManArgs) -> Result<u8, CliError> {
    super::no_json(ctx, "man")?;
    let mut out = Vec::new();
    clap_mangen::Man::new(crate::command())
        .render(&mut out)
        .map_err(|e| CliError::failed(crate::IoError(e)))?;
    crate::print_data(&String::from_utf8_lossy(&out))?;
    Ok(exit::SUCCESS)
}
