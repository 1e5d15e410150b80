//! Gates: a step's gate in its worktree after each attempt, and the mission's gate on the
//! merged result in a worktree of its own.

use std::path::Path;
use std::sync::Arc;

use git2::Oid;

use super::context::render_shell;
use super::output::{FAILURE_BYTES, FAILURE_LINES, TAIL_BYTES, TAIL_LINES, describe, tail};
use super::state::{Scope, Shared};

use crate::event::Body;
use crate::plan::TemplateRef;
use crate::process::{self, Exit};

pub(crate) enum GateResult {
    Passed,
    /// The gate failed: a message for the user, and what a retry prompt tells the agent.
    Failed {
        message: String,
        command: String,
        exit_code: Option<i32>,
        output: String,
    },
    Cancelled,
}

/// Runs a gate in `worktree`; `scope` is the mission for the mission's gate.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    scope: Scope,
    gate: &TemplateRef,
    worktree: &Path,
    logs: &Path,
    attempt: u32,
    base: Oid,
) -> GateResult {
    let step_id = scope.step().map(|i| shared.plan.steps[i].id.clone());
    run_as(shared, scope, step_id, gate, worktree, logs, attempt, base).await
}

/// Runs a gate whose events name `step_id` (`None`: the mission's gate; `_final`: the final
/// merge's `merge.gate`, which has the mission's scope).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_as(
    shared: &Arc<Shared>,
    scope: Scope,
    step_id: Option<String>,
    gate: &TemplateRef,
    worktree: &Path,
    logs: &Path,
    attempt: u32,
    base: Oid,
) -> GateResult {
    let shell = match render_shell(shared, scope, gate, attempt, base).await {
        Ok(c) => c,
        Err(e) => {
            let message = format!("cannot render the gate: {e}");
            return GateResult::Failed {
                message: message.clone(),
                command: gate.source.clone(),
                exit_code: None,
                output: message,
            };
        }
    };
    let command = shell.display.clone();
    shared.emitter.emit(Body::GateStarted {
        step: step_id.clone(),
        attempt,
        command: command.clone(),
    });
    let log = logs.join(format!("gate.{attempt}.log"));
    let step = step_id.as_deref().unwrap_or("");
    let spec = shared.shell_spec(shell, step, worktree, attempt, &log);
    let timeout = scope
        .step()
        .map_or(std::time::Duration::from_secs(30 * 60), |i| {
            shared.plan.steps[i].timeout
        });
    let mut cancel = match scope {
        Scope::Step(i) => shared.stops.step_stop(i),
        Scope::Mission => shared.stops.run_stop(),
    };
    let exit = process::run(&spec, timeout, &mut cancel, shared.grace).await;
    let output_tail = tail(&log, TAIL_LINES, TAIL_BYTES);
    let exit = match exit {
        Ok(exit) => exit,
        Err(e) => {
            shared.emitter.emit(Body::GateFinished {
                step: step_id,
                attempt,
                exit_code: None,
                passed: false,
                output_tail: e.to_string(),
            });
            let message = format!("the gate `{command}` could not start: {e}");
            return GateResult::Failed {
                message: message.clone(),
                command,
                exit_code: None,
                output: message,
            };
        }
    };
    shared.emitter.emit(Body::GateFinished {
        step: step_id,
        attempt,
        exit_code: exit.code(),
        passed: exit.success(),
        output_tail: output_tail.clone(),
    });
    match exit {
        Exit::Code(0) => GateResult::Passed,
        Exit::Cancelled => GateResult::Cancelled,
        other => {
            // The output is kept once, in `gate_finished`; the message names the gate.
            let message = format!("the gate `{command}` {}", describe(other));
            let output = tail(&log, FAILURE_LINES, FAILURE_BYTES);
            GateResult::Failed {
                message,
                command,
                exit_code: other.code(),
                output,
            }
        }
    }
}

/// Runs the mission's gate on the merged result, in a worktree of its own.
pub(crate) async fn mission(
    shared: &Arc<Shared>,
    gate: &TemplateRef,
    merged: Oid,
) -> Result<bool, String> {
    let logs = shared.run_dir.join("logs").join("_final");
    fs_err::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let held = super::worktree::acquire(shared, "_final", merged, shared.plan.fresh_worktrees)
        .await
        .map_err(|e| e.to_string())?;
    let result = run(shared, Scope::Mission, gate, held.path(), &logs, 1, merged).await;
    let _ = held.release(shared).await;
    Ok(matches!(result, GateResult::Passed))
}
