//! The engine's one output stream: typed events (format v1). The journal, `--output json` and
//! every reporter read these same values. Fields are added, never renamed.

use serde::{Deserialize, Serialize};

/// The name the final merge's agent attempts go by in events (`step_started`, ...) and in
/// `merge_resolved`: not a valid step id, so no step has it.
pub const FINAL_MERGE: &str = "_final";

/// One event: `v`, `ts`, `run`, then `type` and its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub v: u32,
    /// RFC 3339, UTC.
    pub ts: String,
    pub run: String,
    #[serde(flatten)]
    pub body: Body,
}

impl Event {
    pub fn new(run: &str, body: Body) -> Event {
        Event {
            v: 1,
            ts: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            run: run.to_owned(),
            body,
        }
    }

    /// The step this event is about, if any.
    pub fn step(&self) -> Option<&str> {
        match &self.body {
            Body::StepReady { step, .. }
            | Body::StepStarted { step, .. }
            | Body::AgentOutput { step, .. }
            | Body::StepCommitted { step, .. }
            | Body::AttemptFailed { step, .. }
            | Body::AgentSwitched { step, .. }
            | Body::StepFinished { step, .. }
            | Body::StepSkipped { step, .. }
            | Body::StepKept { step, .. }
            | Body::StepsExpanded { step, .. }
            | Body::MergeResolved { step, .. } => Some(step),
            Body::GateStarted { step, .. }
            | Body::GateFinished { step, .. }
            | Body::Warning { step, .. }
            | Body::MergeConflict { step, .. }
            | Body::ApprovalRequested { step, .. }
            | Body::ApprovalGiven { step, .. }
            | Body::ApprovalRefused { step, .. } => step.as_deref(),
            Body::RunStarted { .. } | Body::RunFinished { .. } => None,
        }
    }
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

impl Tokens {
    /// Adds `more` to `sum`: unknown (`None`) only while nothing known was added.
    pub fn add(sum: &mut Option<Tokens>, more: Option<Tokens>) {
        if let Some(more) = more {
            let sum = sum.get_or_insert_default();
            sum.input += more.input;
            sum.output += more.output;
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Cached,
    Failed,
    Skipped,
    Cancelled,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Cached => "cached",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// Passed or reused: its result can be built on.
    pub fn ok(self) -> bool {
        matches!(self, Outcome::Passed | Outcome::Cached)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Passed,
    Failed,
    Cancelled,
    /// Nothing more could run: a step's result (or the mission's) waits for a person's
    /// decision (`medley approve` / `medley reject`).
    Waiting,
}

impl RunOutcome {
    pub fn name(self) -> &'static str {
        match self {
            RunOutcome::Passed => "passed",
            RunOutcome::Failed => "failed",
            RunOutcome::Cancelled => "cancelled",
            RunOutcome::Waiting => "waiting",
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// The gate exited non-zero.
    Gate,
    /// A command step's command exited non-zero.
    Command,
    AgentError,
    Auth,
    UsageLimit,
    Unreachable,
    Denied,
    Timeout,
    /// A merge agent's attempt left conflict markers in a file.
    Unresolved,
}

/// What went wrong with a failed step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    pub kind: ErrorKind,
    pub message: String,
    /// For a merge conflict: the files both sides changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
    /// For a merge conflict: the steps whose changes collide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<String>>,
}

impl StepError {
    /// An error with no files or steps to name.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> StepError {
        StepError {
            kind,
            message: message.into(),
            files: None,
            steps: None,
        }
    }
}

/// The kind of a step's error (`step_finished.error.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The results of its needs conflict.
    MergeConflict,
    /// Its needs' results could not be merged.
    Merge,
    Setup,
    Gate,
    Command,
    Timeout,
    /// Its worktree could not be made or readied.
    Worktree,
    /// A template could not be rendered, or its `if` evaluated.
    Template,
    /// medley could not write the run's state (refs, logs, prompts).
    State,
    Cancelled,
    Budget,
    /// Its attempt's tree could not be committed.
    Commit,
    /// Its agent profile is missing.
    Agent,
    /// Its agent's CLI is not installed.
    AgentMissing,
    AgentError,
    Auth,
    UsageLimit,
    Unreachable,
    Denied,
    /// A bug in medley (a task that panicked).
    Internal,
    /// A person refused its result (`medley reject`); the message is their reason.
    Rejected,
    /// Its matrix, read from an upstream step's file, could not be made (bad content).
    Matrix,
    /// A kind a newer medley wrote.
    #[serde(other)]
    Other,
}

impl From<FailReason> for ErrorKind {
    fn from(reason: FailReason) -> ErrorKind {
        match reason {
            FailReason::Gate => ErrorKind::Gate,
            FailReason::Command => ErrorKind::Command,
            FailReason::AgentError => ErrorKind::AgentError,
            FailReason::Auth => ErrorKind::Auth,
            FailReason::UsageLimit => ErrorKind::UsageLimit,
            FailReason::Unreachable => ErrorKind::Unreachable,
            FailReason::Denied => ErrorKind::Denied,
            FailReason::Timeout => ErrorKind::Timeout,
            FailReason::Unresolved => ErrorKind::MergeConflict,
        }
    }
}

/// One side of a resolved conflict: its commit, its tree and the steps that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeSide {
    pub commit: String,
    pub tree: String,
    pub steps: Vec<String>,
}

/// Why a step was skipped.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SkipReason {
    /// A need did not pass; `rejected`: the reason a person gave for refusing its result.
    Need {
        need: String,
        need_outcome: Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rejected: Option<String>,
    },
    /// Its `if` expression was false.
    If {
        #[serde(rename = "if")]
        expression: String,
    },
}

/// The event types and their fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    RunStarted {
        mission: String,
        mission_path: String,
        base: String,
        steps: usize,
    },
    StepReady {
        step: String,
        base: String,
    },
    StepStarted {
        step: String,
        attempt: u32,
        agent: Option<String>,
        runtime: Option<String>,
        worktree: String,
        /// A merge agent's attempt at a conflict between the step's needs (or, for `_final`,
        /// the leaves), before the step's own work: counted from 1 on its own.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        merge: bool,
    },
    AgentOutput {
        step: String,
        attempt: u32,
        agent: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        kind: String,
        summary: String,
        raw: serde_json::Value,
    },
    StepCommitted {
        step: String,
        attempt: u32,
        commit: String,
        files: usize,
    },
    GateStarted {
        step: Option<String>,
        attempt: u32,
        command: String,
    },
    GateFinished {
        step: Option<String>,
        attempt: u32,
        exit_code: Option<i32>,
        passed: bool,
        output_tail: String,
    },
    AttemptFailed {
        step: String,
        attempt: u32,
        agent: Option<String>,
        reason: FailReason,
        message: String,
    },
    AgentSwitched {
        step: String,
        from: String,
        to: String,
        reason: FailReason,
    },
    StepFinished {
        step: String,
        outcome: Outcome,
        commit: Option<String>,
        agent: Option<String>,
        attempts: u32,
        /// `null` when no call of the step reported tokens (a command step, or a CLI that
        /// reports none: kimi, cursor, command agents); else what was reported.
        tokens: Option<Tokens>,
        cost_usd: Option<f64>,
        duration_ms: u64,
        cached_from: Option<String>,
        error: Option<StepError>,
        /// What `steps.<id>.output` hands on (the agent's final message, the command's
        /// stdout); for a cached step, the output of the run that made it.
        #[serde(default)]
        output: String,
        /// For a cached step: what making the result cost, in the run that made it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cached_cost_usd: Option<f64>,
    },
    /// A resumed run's step that keeps its result from before the resume.
    StepKept {
        step: String,
        outcome: Outcome,
        commit: Option<String>,
    },
    StepSkipped {
        step: String,
        reason: SkipReason,
    },
    /// A matrix read from an upstream step was expanded: `step` (the declared step) now stands
    /// for `children`, made from the JSON list in `file` of `from`'s result.
    StepsExpanded {
        step: String,
        from: String,
        file: String,
        children: Vec<String>,
    },
    /// The results being merged for a step (`step`; `null`: the final merge of the leaves)
    /// conflict in `files`, between `steps`, and a merge agent is asked to resolve it.
    MergeConflict {
        step: Option<String>,
        files: Vec<String>,
        steps: Vec<String>,
    },
    /// A merge agent resolved a conflict: `commit` (a merge commit whose parents are both
    /// sides) is the step's base (`_final`: the run's result). Both sides are recorded.
    MergeResolved {
        step: String,
        commit: String,
        agent: String,
        attempts: u32,
        /// What the merge agents used on this conflict (`null`: no call reported tokens); it
        /// is in no step's `step_finished`.
        tokens: Option<Tokens>,
        cost_usd: Option<f64>,
        ours: MergeSide,
        theirs: MergeSide,
        /// The run whose cached resolution of this very conflict was reused (no agent ran:
        /// `attempts` 0, `tokens` and `cost_usd` null, `agent` the one that resolved it then);
        /// `null` when a merge agent resolved it in this run.
        #[serde(default)]
        cached_from: Option<String>,
    },
    /// Something the user should know that does not stop the run (e.g. a nested repository the
    /// snapshot holds as a gitlink, a result the cache could not keep, a CLI whose version could
    /// not be learnt). `step` is null for the run as a whole.
    Warning {
        step: Option<String>,
        message: String,
    },
    /// A step's result (or, with `step` null, the mission's final result) waits for a
    /// person's decision before anything builds on it.
    ApprovalRequested {
        step: Option<String>,
        /// The mission's `approve` text for the person.
        message: String,
        /// The result commit that waits (for the mission: the merged result).
        commit: Option<String>,
        /// How many files it changed against its base.
        files: usize,
    },
    /// A person approved it: `by` is their git identity (`Name <email>`).
    ApprovalGiven {
        step: Option<String>,
        by: String,
    },
    /// A person refused it, saying why; the step counts as failed (or runs again, with
    /// `on_reject = "retry"`).
    ApprovalRefused {
        step: Option<String>,
        by: String,
        reason: String,
    },
    RunFinished {
        outcome: RunOutcome,
        reason: Option<String>,
        result_branch: Option<String>,
        tokens: Tokens,
        cost_usd: f64,
        unpriced_steps: usize,
        /// Agent steps with calls whose tokens are not known (`tokens` is the known part).
        #[serde(default)]
        uncounted_steps: usize,
        duration_ms: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of an event's body, pinned, and read back to the same value.
    fn pinned(body: Body, json: &str) {
        let event = Event {
            v: 1,
            ts: "2026-01-01T00:00:00.000000Z".into(),
            run: "r1".into(),
            body,
        };
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(text, json);
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), event);
    }

    #[test]
    fn merge_events_are_pinned() {
        pinned(
            Body::MergeConflict {
                step: Some("join".into()),
                files: vec!["shared.txt".into()],
                steps: vec!["left".into(), "right".into()],
            },
            r#"{"v":1,"ts":"2026-01-01T00:00:00.000000Z","run":"r1","type":"merge_conflict","step":"join","files":["shared.txt"],"steps":["left","right"]}"#,
        );
        pinned(
            Body::MergeConflict {
                step: None,
                files: vec!["a".into()],
                steps: vec!["x".into(), "y".into()],
            },
            r#"{"v":1,"ts":"2026-01-01T00:00:00.000000Z","run":"r1","type":"merge_conflict","step":null,"files":["a"],"steps":["x","y"]}"#,
        );
        let side = |c: &str, t: &str, s: &str| MergeSide {
            commit: c.into(),
            tree: t.into(),
            steps: vec![s.into()],
        };
        pinned(
            Body::MergeResolved {
                step: "join".into(),
                commit: "c3".into(),
                agent: "claude".into(),
                attempts: 2,
                tokens: Some(Tokens {
                    input: 10,
                    output: 2,
                }),
                cost_usd: Some(0.5),
                ours: side("c1", "t1", "left"),
                theirs: side("c2", "t2", "right"),
                cached_from: None,
            },
            r#"{"v":1,"ts":"2026-01-01T00:00:00.000000Z","run":"r1","type":"merge_resolved","step":"join","commit":"c3","agent":"claude","attempts":2,"tokens":{"input":10,"output":2},"cost_usd":0.5,"ours":{"commit":"c1","tree":"t1","steps":["left"]},"theirs":{"commit":"c2","tree":"t2","steps":["right"]},"cached_from":null}"#,
        );
        pinned(
            Body::MergeResolved {
                step: "join".into(),
                commit: "c4".into(),
                agent: "claude".into(),
                attempts: 0,
                tokens: None,
                cost_usd: None,
                ours: side("c1", "t1", "left"),
                theirs: side("c2", "t2", "right"),
                cached_from: Some("r0".into()),
            },
            r#"{"v":1,"ts":"2026-01-01T00:00:00.000000Z","run":"r1","type":"merge_resolved","step":"join","commit":"c4","agent":"claude","attempts":0,"tokens":null,"cost_usd":null,"ours":{"commit":"c1","tree":"t1","steps":["left"]},"theirs":{"commit":"c2","tree":"t2","steps":["right"]},"cached_from":"r0"}"#,
        );
        // A journal written before `cached_from` existed reads as a resolution made then.
        let old = r#"{"v":1,"ts":"2026-01-01T00:00:00.000000Z","run":"r1","type":"merge_resolved","step":"join","commit":"c3","agent":"claude","attempts":2,"tokens":null,"cost_usd":null,"ours":{"commit":"c1","tree":"t1","steps":["left"]},"theirs":{"commit":"c2","tree":"t2","steps":["right"]}}"#;
        let old: Event = serde_json::from_str(old).unwrap();
        assert!(matches!(
            old.body,
            Body::MergeResolved {
                cached_from: None,
                ..
            }
        ));
        pinned(
            Body::AttemptFailed {
                step: "join".into(),
                attempt: 1,
                agent: Some("claude".into()),
                reason: FailReason::Unresolved,
                message: "conflict markers are left in `a`".into(),
            },
            r#"{"v":1,"ts":"2026-01-01T00:00:00.000000Z","run":"r1","type":"attempt_failed","step":"join","attempt":1,"agent":"claude","reason":"unresolved","message":"conflict markers are left in `a`"}"#,
        );
    }
}
