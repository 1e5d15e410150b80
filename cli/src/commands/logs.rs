//! `medley logs`: the logs of a run, or of one of its steps.

use clap::Args;
use medley_engine::git::Repo;
use medley_engine::history::{self};

use super::{load, repo};
use crate::{CliError, Context, exit};

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
