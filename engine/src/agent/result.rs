//! What one attempt of an agent CLI produced: the live [`Output`] lines as they arrive, and the
//! [`AgentResult`] once the process has ended (outcome, final message, session, tokens, cost,
//! the CLI's own error text). These values go into the journal: their JSON is a contract.

use serde::{Deserialize, Serialize};

/// How an agent attempt ended (AGENTS.md section 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentOutcome {
    Ok,
    AgentError,
    AuthError,
    UsageLimit,
    Unreachable,
    /// The CLI reported success but its writes were refused (decided by the runner from
    /// [`AgentResult::denial`] and an empty diff).
    Denied,
    Timeout,
}

/// What one attempt of an agent CLI produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentResult {
    /// `None` until `finish` decides.
    pub outcome: Option<AgentOutcome>,
    /// The agent's final message; `None` on failure.
    pub final_message: Option<String>,
    pub session_id: Option<String>,
    /// All prompt tokens of this attempt (cached included), when the CLI reports them.
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// The cost of this attempt in USD; `None` when the CLI reports none (never 0 for unknown).
    pub cost_usd: Option<f64>,
    /// The CLI's own error text on failure, so the user sees exactly what to fix.
    pub error: Option<String>,
    /// The CLI signalled that it was refused permission to write or run something
    /// (claude/qwen `permission_denials`, codex's read-only sandbox message, a failed gemini
    /// tool result). With an empty diff, the runner turns `Ok` into `Denied`.
    pub denial: bool,
}

impl AgentResult {
    /// A result that knows its session and whether a denial was seen; the outcome is still to
    /// decide.
    pub(super) fn of_session(session_id: Option<String>, denial: bool) -> AgentResult {
        AgentResult {
            session_id,
            denial,
            ..AgentResult::default()
        }
    }

    /// Ends as a success with the agent's final message.
    pub(super) fn succeeded(mut self, final_message: Option<String>) -> AgentResult {
        self.outcome = Some(AgentOutcome::Ok);
        self.final_message = final_message;
        self
    }

    /// Ends as `outcome`, a failure, with the CLI's own error text.
    pub(super) fn failed(
        mut self,
        outcome: AgentOutcome,
        error: impl Into<Option<String>>,
    ) -> AgentResult {
        self.outcome = Some(outcome);
        self.error = error.into();
        self
    }
}

/// What the CLI reported in earlier attempts of the same session, for CLIs whose totals after
/// a resume cover the whole session (claude's cost, codex's tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionTotals {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// Kinds of live output (the `kind` of an `agent_output` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    Message,
    Tool,
    Usage,
    Error,
    Other,
}

impl OutputKind {
    /// Its name in events (`agent_output.kind`).
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Message => "message",
            OutputKind::Tool => "tool",
            OutputKind::Usage => "usage",
            OutputKind::Error => "error",
            OutputKind::Other => "other",
        }
    }
}

/// One line of the CLI's stream, as the live view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub kind: OutputKind,
    /// One line: what the agent is doing (the tool and its target), or its words, shortened.
    pub summary: String,
    /// The CLI's JSON object, as it printed it.
    pub raw: serde_json::Value,
    /// The session id, when this line carries one.
    pub session_id: Option<String>,
}
