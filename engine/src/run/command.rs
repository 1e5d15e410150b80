//! A command step's work: its `run` rendered and run in the worktree, its stdout handed on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::Oid;
use tokio::sync::watch;

use super::attempt::{Failure, Verdict, Work};
use super::output::{self, TAIL_BYTES, TAIL_LINES};
use super::state::{Scope, Shared};

use crate::event::{ErrorKind, FailReason, StepError};
use crate::plan::TemplateRef;
use crate::process::{self, Exit};

/// The `run` of command step `i`.
pub(crate) struct CommandWork<'a> {
    pub shared: &'a Arc<Shared>,
    pub i: usize,
    pub run: &'a TemplateRef,
    pub base: Oid,
    pub logs: PathBuf,
    /// The last attempt's command (its first line names it) and its logs.
    pub last: Option<(String, PathBuf, PathBuf)>,
}

impl Work for CommandWork<'_> {
    const SPENDS: bool = false;

    fn agent(&self) -> Option<(&str, &str)> {
        None
    }

    fn label(&self) -> String {
        String::new()
    }

    async fn begin(&mut self, _: u32, _: Option<&Failure>) -> Result<(), StepError> {
        Ok(())
    }

    async fn run(
        &mut self,
        attempt: u32,
        worktree: &Path,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Exit, StepError> {
        let shared = self.shared;
        let step = &shared.plan.steps[self.i];
        let shell =
            super::context::render_shell(shared, Scope::Step(self.i), self.run, attempt, self.base)
                .await
                .map_err(|e| {
                    StepError::new(ErrorKind::Template, format!("cannot render `run`: {e}"))
                })?;
        let out_path = self.logs.join(format!("run.{attempt}.out"));
        let err_path = self.logs.join(format!("run.{attempt}.err"));
        let command = shell.display.clone();
        let mut spec = shared.shell_spec(shell, &step.id, worktree, attempt, &out_path);
        spec.stderr = err_path.clone();
        let exit = process::run(&spec, step.timeout, cancel, shared.grace)
            .await
            .map_err(|e| StepError::new(ErrorKind::Command, e.to_string()))?;
        self.last = Some((command, out_path, err_path));
        Ok(exit)
    }

    fn judge(&mut self, exit: Exit, _: usize) -> Verdict {
        let step = &self.shared.plan.steps[self.i];
        let Some((command, out_path, err_path)) = &self.last else {
            return Verdict::Done {
                output: String::new(),
            };
        };
        let output = output::bounded_output(out_path);
        if exit.success() {
            return Verdict::Done { output };
        }
        let reason = if exit == Exit::TimedOut {
            FailReason::Timeout
        } else {
            FailReason::Command
        };
        let first = command.lines().next().unwrap_or("");
        let mut message = match exit {
            Exit::TimedOut => format!(
                "`{first}` ran past its timeout of {} and was stopped",
                crate::plan::duration_text::format(step.timeout)
            ),
            Exit::Code(127) => {
                format!("`{first}` exited with 127: a program it runs was not found")
            }
            other => format!("`{first}` {}", output::describe(other)),
        };
        let stderr = output::tail(err_path, TAIL_LINES, TAIL_BYTES);
        if !stderr.is_empty() {
            message.push_str(&format!(":\n{stderr}"));
        }
        Verdict::Failed {
            reason,
            message,
            retry: None,
            final_: false,
            output,
        }
    }
}
