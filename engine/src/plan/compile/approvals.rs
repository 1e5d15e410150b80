//! Approval gates: a step's (or `[defaults]`') `approve` message and `on_reject`, and the
//! mission's own `approve` for its final result, checked with their spans.

use toml::Spanned;

use super::Compiler;
use super::declare::Decl;
use crate::mission::diagnostics::{ErrorKind, MissionError};
use crate::mission::model::{Defaults, OnReject, Step};

impl<'m> Compiler<'m> {
    /// Step `d`'s approval message (its own, else `[defaults]`') and what a rejection does.
    pub(super) fn approval(
        &mut self,
        d: &Decl<'m>,
        step: &Step,
        defaults: &Defaults,
    ) -> (Option<String>, OnReject) {
        let approve = step.approve.as_ref().or(defaults.approve.as_ref());
        let on_reject = step.on_reject.as_ref().or(defaults.on_reject.as_ref());
        if let Some(message) = approve {
            self.message(message, "approve");
        }
        if let Some(on_reject) = step.on_reject.as_ref()
            && approve.is_none()
        {
            self.push(
                MissionError::new(
                    ErrorKind::Value,
                    format!("step `{}` has `on_reject` but no `approve`", d.id),
                )
                .label(on_reject.span(), "no person is asked, so nothing is rejected")
                .help("add `approve = \"what the person should check\"` to the step, or remove `on_reject`"),
            );
        }
        let on_reject = on_reject.map_or(OnReject::Fail, |o| *o.get_ref());
        if on_reject == OnReject::Retry
            && approve.is_some()
            && step.run.is_some()
            && let Some(span) = step.on_reject.as_ref().map(Spanned::span)
        {
            self.push(
                MissionError::new(
                    ErrorKind::Value,
                    format!("step `{}` runs a command, which cannot hear a rejection", d.id),
                )
                .label(span, "only an agent step is retried with the reason")
                .help("remove `on_reject = \"retry\"` (a rejected command step fails), or make the step an agent step with a `prompt`"),
            );
        }
        let on_reject = if step.run.is_some() {
            OnReject::Fail
        } else {
            on_reject
        };
        (approve.map(|a| a.get_ref().trim().to_owned()), on_reject)
    }

    /// The mission's own `approve` (for its final result).
    pub(super) fn mission_approval(&mut self) -> Option<String> {
        let approve = self.file.approve.as_ref()?;
        self.message(approve, "approve");
        Some(approve.get_ref().trim().to_owned())
    }

    /// An `approve` message must say something to the person.
    fn message(&mut self, message: &Spanned<String>, key: &str) {
        if message.get_ref().trim().is_empty() {
            self.push(
                MissionError::new(ErrorKind::Value, format!("`{key}` has an empty message"))
                    .label(message.span(), "the person asked sees nothing here")
                    .help(format!(
                        "say what to check before approving, e.g. `{key} = \"Is the plan sound?\"`"
                    )),
            );
        }
    }
}
