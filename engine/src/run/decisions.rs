//! What a run knows of people's decisions on results that wait ([`Book`]), and the requests
//! it sends a person ([`ApprovalRequest`]) with their answers ([`Decision`]). Plain data:
//! `approval.rs` acts on it.

use std::collections::{HashMap, HashSet};

use git2::Oid;
use tokio::sync::{mpsc, oneshot};

/// A result that waits for a person, as the CLI asks about it.
#[derive(Debug)]
pub struct ApprovalRequest {
    /// The step (`None`: the mission's final result).
    pub step: Option<String>,
    /// The mission's `approve` text.
    pub message: String,
    pub commit: String,
    /// The files it changed against its base.
    pub files: Vec<String>,
    /// The gate it passed (its command), if it has one.
    pub gate: Option<String>,
    /// Its change against its base, as a unified diff.
    pub diff: String,
    /// Where the person's decision goes (dropped: it stays waiting).
    pub reply: oneshot::Sender<Decision>,
}

/// A person's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve,
    /// Rejected, with the reason.
    Reject(String),
    /// Left waiting: the run ends as `waiting` once nothing else can run.
    Leave,
}

/// Where a run sends its approval requests (a prompt), when someone is there to ask.
pub type Asker = mpsc::UnboundedSender<ApprovalRequest>;

/// What the run knows of decisions, by step index.
#[derive(Debug, Default)]
pub(crate) struct Book {
    pub(super) approved: HashSet<usize>,
    /// Rejected (`on_reject = "fail"`): who, and why.
    pub(super) refused: HashMap<usize, (String, String)>,
    /// The bases of steps rejected before a resume (their `step_finished` names it).
    pub(super) refused_bases: HashMap<usize, Oid>,
    /// Rejected with `on_reject = "retry"`: the rejected result and the reason.
    pub(super) retry: HashMap<usize, (Oid, String)>,
    /// Steps that wait now.
    pub(super) waiting: HashSet<usize>,
    /// The final result: approved (`Some(None)`) or rejected (`Some(Some(reason))`).
    pub(super) final_: Option<Option<String>>,
}

impl Book {
    /// Step `i` was approved before (a resume).
    pub(crate) fn approve(&mut self, i: usize) {
        self.approved.insert(i);
    }

    /// Step `i` was rejected by `by` for `reason` before (a resume): it fails at the start.
    pub(crate) fn refuse(&mut self, i: usize, by: String, reason: String, base: Oid) {
        self.refused.insert(i, (by, reason));
        self.refused_bases.insert(i, base);
    }

    /// Step `i` was rejected with `on_reject = "retry"`: it runs again on top of `commit`.
    pub(crate) fn retry(&mut self, i: usize, commit: Oid, reason: String) {
        self.retry.insert(i, (commit, reason));
    }

    /// The final result was approved (`None`) or rejected (the reason) before.
    pub(crate) fn decide_final(&mut self, rejected: Option<String>) {
        self.final_ = Some(rejected);
    }
}
