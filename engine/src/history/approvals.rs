//! Approvals as a run's journal tells them: which results wait for a person, which were
//! approved or rejected, by whom and when (`approval_requested`, `approval_given`,
//! `approval_refused`).

use serde::Serialize;

use super::RunInfo;
use crate::event::Body;

/// Where a result stands with its person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Approval {
    /// It waits for a decision (`since`: when it was asked for, RFC 3339).
    Waiting { message: String, since: String },
    Given {
        message: String,
        by: String,
        at: String,
    },
    Refused {
        message: String,
        by: String,
        at: String,
        reason: String,
    },
}

impl Approval {
    pub fn is_waiting(&self) -> bool {
        matches!(self, Approval::Waiting { .. })
    }

    fn message(&self) -> String {
        match self {
            Approval::Waiting { message, .. }
            | Approval::Given { message, .. }
            | Approval::Refused { message, .. } => message.clone(),
        }
    }
}

/// Keeps `info.decided` up to date with `body`: decisions made while no run acted on them are
/// the journal's last events (any other event means a run went on).
pub(super) fn track_decided(info: &mut RunInfo, body: &Body) {
    match body {
        Body::ApprovalGiven { step, .. } | Body::ApprovalRefused { step, .. } => {
            let step = step.as_deref().unwrap_or(crate::git::refs::FINAL_RESULT);
            if !info.decided.iter().any(|s| s == step) {
                info.decided.push(step.to_owned());
            }
        }
        _ => info.decided.clear(),
    }
}

/// Takes an approval event into the run's summary (other events are ignored).
pub(super) fn observe(info: &mut RunInfo, body: Body, ts: &str) {
    let (step, approval) = match body {
        Body::ApprovalRequested { step, message, .. } => (
            step,
            Approval::Waiting {
                message,
                since: ts.to_owned(),
            },
        ),
        Body::ApprovalGiven { step, by } => {
            let message = slot(info, step.as_deref()).map(|a| a.message());
            (
                step,
                Approval::Given {
                    message: message.unwrap_or_default(),
                    by,
                    at: ts.to_owned(),
                },
            )
        }
        Body::ApprovalRefused { step, by, reason } => {
            let message = slot(info, step.as_deref()).map(|a| a.message());
            (
                step,
                Approval::Refused {
                    message: message.unwrap_or_default(),
                    by,
                    at: ts.to_owned(),
                    reason,
                },
            )
        }
        _ => return,
    };
    match step {
        Some(step) => info.steps.entry(step).or_default().approval = Some(approval),
        None => info.approval = Some(approval),
    }
}

fn slot<'a>(info: &'a RunInfo, step: Option<&str>) -> Option<&'a Approval> {
    match step {
        Some(step) => info.steps.get(step)?.approval.as_ref(),
        None => info.approval.as_ref(),
    }
}

impl RunInfo {
    /// Nothing waits any more, but the decisions were not acted on (the run is not live):
    /// `medley resume` goes on.
    pub fn decided_only(&self) -> bool {
        !self.live && !self.decided.is_empty() && self.waiting().is_empty()
    }

    /// What waits for a person: step ids in plan order, then `@result` for the final result.
    pub fn waiting(&self) -> Vec<String> {
        let mut waiting: Vec<String> = self
            .steps
            .iter()
            .filter(|(_, s)| s.approval.as_ref().is_some_and(Approval::is_waiting))
            .map(|(id, _)| id.clone())
            .collect();
        if self.approval.as_ref().is_some_and(Approval::is_waiting) {
            waiting.push(crate::git::refs::FINAL_RESULT.to_owned());
        }
        waiting
    }
}
