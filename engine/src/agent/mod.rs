//! Agent runtimes: one adapter per CLI, behind one small trait. An adapter builds the argv for
//! a fresh run, a resume and a model, and parses the CLI's stream into live events and one
//! common result. Running the process belongs to the runner (`run::agent`).
//!
//! Where to look:
//! - this file: [`Description`] (what is constant about a CLI: binary, install hint, sessions,
//!   where the prompt goes), the [`Adapter`] and [`StreamParser`] traits (what differs in
//!   behaviour: argv, parsing, classifying the end), and [`adapter`], the registry;
//! - [`result`]: what an attempt produced ([`Output`] lines, [`AgentResult`], [`AgentOutcome`]);
//! - one file per CLI, each with its `DESCRIPTION`, argv and parser: [`claude`], [`codex`],
//!   [`gemini`], [`cursor`], [`kimi`] (also why a `kimi` cannot start), [`qwen`], and
//!   [`command`] (any program reading the prompt on stdin);
//! - what the adapters share: `argv` (medley's flags, then the profile's `args`), `stream` (a
//!   JSONL line as an event, content blocks, tokens, session ids), `summary` (one-line texts
//!   for the live view), `failure` (the stderr tail and the words that name an auth error, a
//!   limit or the network);
//! - `samples` (tests only): one table of every captured sample in `tests/samples/`, with
//!   the adapter that parses it and what it must yield.
//!
//! Dependencies: `crate::mission` (for [`Runtime`]) and nothing else of the engine; a test below
//! fails on any other path into the crate.
//!
//! How each real CLI behaves, with sources: `shared/AGENTS.md`; captured output of the real
//! CLIs: `tests/samples/`.

use std::path::Path;

use crate::mission::Runtime;

mod argv;
pub mod claude;
pub mod codex;
pub mod command;
pub mod cursor;
mod failure;
pub mod gemini;
pub mod kimi;
pub mod qwen;
pub mod result;
#[cfg(test)]
mod samples;
mod stream;
mod summary;

pub use result::{AgentOutcome, AgentResult, Output, OutputKind, SessionTotals};
pub use summary::one_line;

/// What is constant about one agent CLI. Each adapter module has one, as its `DESCRIPTION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Description {
    pub runtime: Runtime,
    /// The binary looked up on PATH (a `command` profile names its own program instead).
    pub binary: &'static str,
    /// How to install it, for the preflight error.
    pub install_hint: &'static str,
    /// Whether the adapter was checked against the real CLI's captured output.
    pub verified: bool,
    /// The version whose captured output it was checked against (`tests/samples/`).
    pub tested_version: Option<&'static str>,
    /// What the CLI needs to be logged in (AGENTS.md: credentials of each CLI).
    pub login_hint: &'static str,
    /// How the CLI names sessions, and so whether a retry can resume one.
    pub sessions: Sessions,
    /// Where the prompt goes.
    pub prompt: PromptVia,
}

/// How a CLI names its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sessions {
    /// No sessions: every attempt starts afresh.
    None,
    /// The CLI reports the id of the session it started; a retry resumes it.
    Reported,
    /// The CLI takes a fresh id medley chooses (`Invocation::new_session`); a retry resumes it.
    PreAssigned,
}

/// Where the prompt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptVia {
    /// In argv, where [`Adapter::argv`] puts it.
    Argv,
    /// On stdin, then closed.
    Stdin,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    pub prompt: &'a str,
    /// The worktree (also the cwd).
    pub worktree: &'a Path,
    pub model: Option<&'a str>,
    /// Resume this session with `prompt` as the next message.
    pub resume: Option<&'a str>,
    /// A fresh session id to pre-assign, for CLIs that take one (claude, gemini).
    pub new_session: Option<&'a str>,
    /// The profile's `args`: placed where the CLI takes its own flags, after medley's defaults
    /// so they win (for codex, before `resume`).
    pub extra_args: &'a [String],
}

/// One agent CLI: its constant facts, and what it does differently.
pub trait Adapter: Send + Sync {
    /// The adapter's constant facts (its module's `DESCRIPTION`).
    fn description(&self) -> &'static Description;
    /// The arguments after the binary name.
    fn argv(&self, invocation: &Invocation<'_>) -> Vec<String>;
    /// A parser for one attempt's streams.
    fn parser(&self, previous: Option<SessionTotals>) -> Box<dyn StreamParser>;
}

/// The description's facts, read through any adapter (what the runner and preflight ask).
impl<'a> dyn Adapter + 'a {
    pub fn runtime(&self) -> Runtime {
        self.description().runtime
    }

    /// The binary looked up on PATH.
    pub fn binary(&self) -> &'static str {
        self.description().binary
    }

    /// How to install it, for the preflight error.
    pub fn install_hint(&self) -> &'static str {
        self.description().install_hint
    }

    /// Whether the adapter was checked against the real CLI's captured output.
    pub fn verified(&self) -> bool {
        self.description().verified
    }

    /// Whether the CLI can resume a session with a new prompt.
    pub fn resumable(&self) -> bool {
        self.description().sessions != Sessions::None
    }

    /// Whether the CLI takes a pre-assigned session id (`Invocation::new_session`).
    pub fn pre_assigns_session(&self) -> bool {
        self.description().sessions == Sessions::PreAssigned
    }

    /// Whether the prompt goes to stdin (then closed) rather than argv.
    pub fn prompt_on_stdin(&self) -> bool {
        self.description().prompt == PromptVia::Stdin
    }
}

/// Reads one attempt's output as it arrives.
pub trait StreamParser: Send {
    /// One line of stdout (without its newline): the live outputs it yields. Non-JSON lines and
    /// unknown event types are tolerated (returned as `Other` or skipped), never an error.
    fn stdout_line(&mut self, line: &str) -> Vec<Output>;
    /// One line of stderr.
    fn stderr_line(&mut self, line: &str);
    /// Whether the CLI is stuck waiting for the network (codex: "Reconnecting... waiting for
    /// network"); the runner then ends the attempt after a bounded wait, as `unreachable`.
    fn waiting_for_network(&self) -> bool {
        false
    }
    /// Whether the terminal event has come: the CLI has said how the attempt ended. A CLI still
    /// running a few seconds later is stopped (Cursor and Kimi Code can hang after finishing).
    fn ended(&self) -> bool {
        false
    }
    /// The result, once the process has ended with `exit_code` (`None`: killed by a signal).
    fn finish(&mut self, exit_code: Option<i32>) -> AgentResult;
}

/// Every adapter.
pub fn adapters() -> Vec<Box<dyn Adapter>> {
    Runtime::ALL.into_iter().map(adapter).collect()
}

/// The adapter of a runtime (`command` needs its profile's program: see
/// [`command::CommandAdapter`]).
pub fn adapter(runtime: Runtime) -> Box<dyn Adapter> {
    match runtime {
        Runtime::Claude => Box::new(claude::Claude),
        Runtime::Codex => Box::new(codex::Codex),
        Runtime::Gemini => Box::new(gemini::Gemini),
        Runtime::Cursor => Box::new(cursor::Cursor),
        Runtime::Kimi => Box::new(kimi::Kimi),
        Runtime::Qwen => Box::new(qwen::Qwen),
        Runtime::Command => Box::new(command::CommandAdapter::default()),
    }
}

/// Parses a whole captured stream (for tests and benchmarks).
pub fn parse_all(
    adapter: &dyn Adapter,
    stdout: &str,
    stderr: &str,
    exit_code: Option<i32>,
    previous: Option<SessionTotals>,
) -> (Vec<Output>, AgentResult) {
    let mut parser = adapter.parser(previous);
    let mut outputs = Vec::new();
    for line in stdout.lines() {
        outputs.extend(parser.stdout_line(line));
    }
    for line in stderr.lines() {
        parser.stderr_line(line);
    }
    let result = parser.finish(exit_code);
    (outputs, result)
}

#[cfg(test)]
mod tests {
    /// The agent module depends on the mission model alone (for `Runtime`): never on the
    /// runner, the history or the journal, which depend on it.
    #[test]
    fn the_agent_module_uses_only_itself_and_the_mission_model() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/agent");
        // Spelled in two parts, so this test does not find itself.
        let needle = ["crate", "::"].concat();
        for entry in fs_err::read_dir(dir).unwrap_or_else(|e| panic!("{e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            let text = fs_err::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
            for (at, _) in text.match_indices(&needle) {
                let rest = &text[at + needle.len()..];
                assert!(
                    rest.starts_with("agent") || rest.starts_with("mission"),
                    "{}: uses `{needle}{}`",
                    path.display(),
                    rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                        .next()
                        .unwrap_or("")
                );
            }
        }
    }
}
