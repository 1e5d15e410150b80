//! `report`: a run as one HTML page, a Markdown summary or JUnit XML.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use medley_engine::history;
use medley_engine::journal;
use medley_engine::report::{Format, Report};

use crate::{CliError, Context, exit, print_data};

/// Write a report of a run: HTML, Markdown or JUnit
#[derive(Debug, Args)]
#[command(
    long_about = "Write a report of a run, made from its journal, prompt archive and refs, so it \
        works for passed, failed, cancelled, killed and resumed runs alike.\n\n\
        html: one self-contained page (no script, no request of any kind) with the DAG, every \
        prompt, every attempt's agent messages and tool calls, every gate's output and every \
        step's diff. markdown: a summary for $GITHUB_STEP_SUMMARY or a PR comment (a table of \
        steps, the failures, the mermaid graph). junit: one test case per step, for CI test \
        reporters.\n\n\
        The report goes to stdout, or to FILE with -o. --open writes the HTML page (to FILE, or \
        to report.html in the run's directory) and opens it in the default browser.\n\n\
        RUN is a run id, the start of one, or `last` (the default).",
    after_help = "Examples:\n  medley report --open\n  medley report last --format markdown >> \"$GITHUB_STEP_SUMMARY\"\n  medley report last --format junit -o medley.xml"
)]
pub struct ReportArgs {
    /// A run id, the start of one, or `last`
    #[arg(default_value = "last")]
    pub run: String,
    /// What to write
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Write the report to FILE instead of stdout
    #[arg(short = 'o', long = "output-file", value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Open the HTML report in the default browser (`xdg-open`, or `open` on macOS)
    #[arg(long)]
    pub open: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Html,
    Markdown,
    Junit,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
enum ReportCliError {
    #[error("`--open` opens an HTML report, not {0}")]
    #[diagnostic(help("drop `--format`, or write the file with `-o FILE` and open it yourself"))]
    OpenNotHtml(&'static str),
    #[error("cannot write the report to `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the report with `{program}`")]
    #[diagnostic(help("open `{}` in your browser yourself", path.display()))]
    Open {
        program: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub fn cmd_report(ctx: &Context, args: ReportArgs) -> Result<u8, CliError> {
    let format = match args.format {
        ReportFormat::Html => Format::Html,
        ReportFormat::Markdown => Format::Markdown,
        ReportFormat::Junit => Format::Junit,
    };
    if args.open && format != Format::Html {
        return Err(CliError::invalid(ReportCliError::OpenNotHtml(
            match format {
                Format::Markdown => "markdown",
                _ => "junit",
            },
        )));
    }
    let repo = super::repo(ctx)?;
    let id = history::resolve(&repo.git_dir, &args.run).map_err(CliError::invalid)?;
    let report =
        Report::load(&repo, &id, crate::settings::mission_var).map_err(CliError::failed)?;
    let text = report.render(format);
    let file = match (&args.output_file, args.open) {
        (Some(file), _) => Some(ctx.cwd.join(file)),
        (None, true) => Some(
            journal::runs_dir(&repo.git_dir)
                .join(&id)
                .join("report.html"),
        ),
        (None, false) => None,
    };
    let Some(file) = file else {
        print_data(&text)?;
        return Ok(exit::SUCCESS);
    };
    fs_err::write(&file, &text).map_err(|source| {
        CliError::failed(ReportCliError::Write {
            path: file.clone(),
            source,
        })
    })?;
    ctx.status(&format!(
        "wrote the report of run {id} to {}",
        file.display()
    ));
    if args.open {
        open(&file).map_err(CliError::failed)?;
    }
    Ok(exit::SUCCESS)
}

/// Opens `path` with the desktop's opener (which returns once the browser has it).
fn open(path: &Path) -> Result<(), ReportCliError> {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let error = |source| ReportCliError::Open {
        program: program.to_owned(),
        path: path.to_owned(),
        source,
    };
    // The opener hands the file to the browser and returns.
    let status = std::process::Command::new(program)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(error)?;
    if status.success() {
        Ok(())
    } else {
        Err(error(std::io::Error::other(format!(
            "it exited with {status}"
        ))))
    }
}
