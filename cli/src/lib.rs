//! The `medley` command line: parse arguments, call the engine, render what comes back and pick
//! the exit code. It knows nothing of git or processes.

mod args;
mod commands;
pub mod exit;
mod missions;
mod output;
mod report;
mod settings;
mod signals;
mod style;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use medley_engine::mission::MissionErrors;
use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};

pub use args::Cli;
use args::Command;
use output::{ColorChoice, OutputFormat};
use settings::Settings;

/// An error on its way to the user, with the exit code it means.
pub struct CliError {
    pub report: miette::Report,
    pub code: u8,
}

impl CliError {
    /// Bad input: an invalid mission or usage (exit 2).
    pub fn invalid(error: impl Diagnostic + Send + Sync + 'static) -> Self {
        CliError {
            report: miette::Report::new(error),
            code: exit::INVALID,
        }
    }

    /// Something failed while doing what was asked (exit 1).
    pub fn failed(error: impl Diagnostic + Send + Sync + 'static) -> Self {
        CliError {
            report: miette::Report::new(error),
            code: exit::FAILED,
        }
    }
}

/// What every command gets: where it runs, and how output looks.
pub struct Context {
    pub cwd: PathBuf,
    pub color: bool,
    pub output: OutputFormat,
    pub width: usize,
    /// `-q`: only failures, warnings and the run's end.
    pub quiet: bool,
    /// `-v`: each step's output streamed as it is written.
    pub verbose: bool,
    /// What the environment sets (read once, at startup).
    pub settings: Settings,
}

impl Context {
    /// Renders a report as the user sees it on stderr. A mission's errors are shown one by
    /// one, each with its snippet of the file, then a one-line summary.
    pub fn render_report(&self, report: &miette::Report) -> String {
        let Some(errors) = report.downcast_ref::<MissionErrors>() else {
            return self.render(report.as_ref());
        };
        let mut out = String::new();
        for error in &errors.errors {
            let one =
                miette::Report::new(error.clone()).with_source_code(errors.source_code.clone());
            out.push_str(&self.render(one.as_ref()));
            out.push('\n');
        }
        out.push_str(&format!("{}: {errors}\n", style::red("error", self.color)));
        out
    }

    /// Renders a diagnostic (with its source snippets) as the user sees it on stderr.
    pub fn render(&self, diagnostic: &dyn Diagnostic) -> String {
        let theme = if self.color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let mut out = String::new();
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(self.width)
            .with_links(false);
        if handler.render_report(&mut out, diagnostic).is_err() {
            out = format!("error: {diagnostic}\n");
        }
        out
    }

    /// Writes a diagnostic to stderr.
    pub fn eprint(&self, diagnostic: &dyn Diagnostic) {
        let _ = write!(std::io::stderr().lock(), "{}", self.render(diagnostic));
    }

    /// The user's pager for a diff: `MEDLEY_PAGER`, else `PAGER` (`None`: `less -R`).
    pub fn settings_pager(&self) -> Option<String> {
        ["MEDLEY_PAGER", "PAGER"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Writes a line of progress or status to stderr.
    pub fn status(&self, line: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// Writes data to stdout; a closed pipe (`medley graph | head`) ends quietly.
pub fn print_data(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::failed(IoError(e))),
    }
}

#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("cannot write to stdout")]
pub(crate) struct IoError(#[source] pub(crate) std::io::Error);

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return exit::code(if e.use_stderr() {
                exit::INVALID
            } else {
                exit::SUCCESS
            });
        }
    };
    let stderr_tty = std::io::stderr().is_terminal();
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let color = match cli.global.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => stderr_tty && !no_color,
    };
    let output = cli
        .global
        .output
        .unwrap_or(if stderr_tty && std::env::var_os("CI").is_none() {
            OutputFormat::Tty
        } else {
            OutputFormat::Plain
        });
    // The live view is never drawn with -q or -v: they are line modes.
    let output = match output {
        OutputFormat::Tty if cli.global.quiet || cli.global.verbose => OutputFormat::Plain,
        other => other,
    };
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100);
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot read the current directory: {e}"
            );
            return exit::code(exit::FAILED);
        }
    };
    let ctx = Context {
        cwd,
        color,
        output,
        width,
        quiet: cli.global.quiet,
        verbose: cli.global.verbose,
        settings: Settings::from_env(),
    };
    let git_vars = medley_engine::git::env::locating_vars_set();
    if !git_vars.is_empty() {
        ctx.status(&format!(
            "{}: {} set: medley ignores {} and uses the repository of the current directory; \
             it never passes them to git or to steps",
            style::yellow("warning", color),
            git_vars.join(", "),
            if git_vars.len() == 1 { "it" } else { "them" },
        ));
    }
    let result = match cli.command {
        Command::Run(args) => commands::run::cmd_run(&ctx, args),
        Command::Watch(args) => commands::watch::cmd_watch(&ctx, args),

        Command::Validate(args) => commands::validate::cmd_validate(&ctx, args),
        Command::Missions(args) => commands::missions::cmd_missions(&ctx, args),
        Command::Graph(args) => commands::graph::cmd_graph(&ctx, args),
        Command::Resume(args) => commands::resume::cmd_resume(&ctx, args),
        Command::Approve(args) => commands::approve::cmd_approve(&ctx, args),
        Command::Reject(args) => commands::approve::cmd_reject(&ctx, args),
        Command::Runs(args) => commands::runs::cmd_runs(&ctx, args),

        Command::Show(args) => commands::show::cmd_show(&ctx, args),
        Command::Logs(args) => commands::logs::cmd_logs(&ctx, args),
        Command::Apply(args) => commands::apply::cmd_apply(&ctx, args),
        Command::Report(args) => commands::report::cmd_report(&ctx, args),
        Command::Clean(args) => commands::clean::cmd_clean(&ctx, args),
        Command::Agents(args) => commands::agents::cmd_agents(&ctx, args),

        Command::Init(args) => commands::init::cmd_init(&ctx, args),

        Command::Schema(args) => commands::schema::cmd_schema(&ctx, args),
        Command::Completions(args) => commands::completions::cmd_completions(&ctx, args),
        Command::Man(args) => commands::completions::cmd_man(&ctx, args),
    };
    match result {
        Ok(code) => exit::code(code),
        Err(error) => {
            let _ = write!(
                std::io::stderr().lock(),
                "{}",
                ctx.render_report(&error.report)
            );
            exit::code(error.code)
        }
    }
}

/// The clap command, for tests (`debug_assert`) and help output.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
