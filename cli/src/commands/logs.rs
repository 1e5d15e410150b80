//! `medley logs`: the logs of a run, or of one of its steps, and the prompts it sent.

use clap::Args;
use medley_engine::git::Repo;
use medley_engine::history::{self, RunInfo, Written, WrittenKind};

use super::{load, repo};
use crate::output::OutputFormat;
use crate::{CliError, Context, exit};

/// Print the logs of a run, or of one of its steps, and the prompts it sent
#[derive(Debug, Args)]
#[command(
    long_about = "Print the logs of a run's steps in the order they were written: each prompt \
        sent to an agent (with the path of the archive that keeps it verbatim; printed with the \
        run's secrets masked), setup's \
        output, each attempt's stdout and stderr (an agent's stream), and each gate's output. \
        `_final` is the mission gate.\n\n\
        RUN is `last` (the default), `last~N`, or a run id or the start of one. With one \
        argument that names no run but a step of the last run, that step's logs are shown \
        (`medley logs fix` is `medley logs last fix`).\n\n\
        With --output json: NDJSON, one object per file: `step`, `kind` (`prompt` or `log`), \
        `attempt`, `agent` (for a prompt), `path`, `text` (the file's content).",
    after_help = "Examples:\n  medley logs\n  medley logs fix\n  medley logs last~1 greet.en"
)]
pub struct LogsArgs {
    /// `last` (the default), `last~N`, or a run id or the start of one
    pub run: Option<String>,
    /// Only this step's logs (`_final`: the mission gate's)
    pub step: Option<String>,
}

pub fn cmd_logs(ctx: &Context, args: LogsArgs) -> Result<u8, CliError> {
    let repo = repo(ctx)?;
    let (run, step) = match (args.run.as_deref(), args.step) {
        // One argument: a run, or else a step of the last run.
        (Some(arg), None) => match load(&repo, Some(arg)) {
            Ok(run) => (run, None),
            Err(error) => match load(&repo, None) {
                Ok(last) if last.steps.contains_key(arg) || arg == "_final" => {
                    (last, Some(arg.to_owned()))
                }
                _ => return Err(error),
            },
        },
        (arg, step) => (load(&repo, arg)?, step),
    };
    let steps = steps_of(&run, step)?;
    // The archive keeps prompts as sent; what is printed masks the run's secrets, as its
    // logs (masked when written) do.
    let secrets = history::run_secrets(&repo.git_dir, &run.id, crate::settings::mission_var);
    let mut out = std::io::stdout().lock();
    let written = if ctx.output == OutputFormat::Json {
        write_json(&mut out, &repo, &run.id, &steps, &secrets)
    } else {
        write_logs(&mut out, &repo, &run.id, &steps, &secrets)
    };
    match written {
        Ok(()) => Ok(exit::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::SUCCESS),
        Err(e) => Err(CliError::failed(crate::IoError(e))),
    }
}

/// The steps whose logs are shown: `step`, or all of them and the mission gate.
fn steps_of(run: &RunInfo, step: Option<String>) -> Result<Vec<String>, CliError> {
    match step {
        Some(step) if run.steps.contains_key(&step) || step == "_final" => Ok(vec![step]),
        Some(step) => Err(CliError::invalid(history::HistoryError::NoStep {
            run: run.id.clone(),
            step,
            passed: run
                .steps
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
        })),
        None => Ok(run
            .steps
            .keys()
            .cloned()
            .chain(["_final".to_owned()])
            .collect()),
    }
}

fn heading(step: &str, file: &Written) -> String {
    let who = if step == "_final" {
        "mission gate"
    } else {
        step
    };
    match file.kind {
        WrittenKind::Prompt => format!(
            "{who}: prompt of attempt {} to `{}` ({})",
            file.attempt,
            file.agent.as_deref().unwrap_or(""),
            file.path.display()
        ),
        WrittenKind::Log => {
            let name = file
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // A merge agent's logs are in the step's `merge/`.
            let merge = file
                .path
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|d| d == "merge");
            if merge {
                format!("{who}: merge/{name}")
            } else {
                format!("{who}: {name}")
            }
        }
    }
}

/// Writes each step's files to `out`, each under a `==> step: file <==` heading. Each file is
/// copied as it is read: a huge log is never held in memory.
fn write_logs(
    out: &mut impl std::io::Write,
    repo: &Repo,
    run: &str,
    steps: &[String],
    secrets: &[String],
) -> std::io::Result<()> {
    use std::io::Read as _;
    for step in steps {
        for file in history::written_files(&repo.git_dir, run, step) {
            let head = heading(step, &file);
            if file.kind == WrittenKind::Prompt {
                let text = fs_err::read_to_string(&file.path).unwrap_or_default();
                let text = medley_engine::secrets::mask(&text, secrets);
                writeln!(out, "==> {head} <==")?;
                out.write_all(text.as_bytes())?;
                if !text.ends_with('\n') {
                    writeln!(out)?;
                }
                continue;
            }
            let Ok(mut reader) = fs_err::File::open(&file.path) else {
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
                    writeln!(out, "==> {head} <==")?;
                }
                out.write_all(&buf[..n])?;
                last = Some(buf[n - 1]);
            }
            match last {
                None => writeln!(out, "==> {head} (empty) <==")?,
                Some(b'\n') => {}
                Some(_) => writeln!(out)?,
            }
        }
    }
    out.flush()
}

/// Writes one JSON object per file (NDJSON).
fn write_json(
    out: &mut impl std::io::Write,
    repo: &Repo,
    run: &str,
    steps: &[String],
    secrets: &[String],
) -> std::io::Result<()> {
    for step in steps {
        for file in history::written_files(&repo.git_dir, run, step) {
            let Ok(bytes) = fs_err::read(&file.path) else {
                continue;
            };
            let mut value = serde_json::to_value(&file).map_err(std::io::Error::other)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("step".into(), step.as_str().into());
                object.insert(
                    "text".into(),
                    medley_engine::secrets::mask(&String::from_utf8_lossy(&bytes), secrets).into(),
                );
            }
            writeln!(out, "{value}")?;
        }
    }
    out.flush()
}
