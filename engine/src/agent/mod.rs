//! Agent runtimes: one adapter per CLI, behind one small trait. An adapter builds the argv for
//! a fresh run, a resume and a model, and parses the CLI's JSONL stream into live events and
//! one common result. Running the process belongs to the runner (`run::agent`).
//!
//! How each real CLI behaves, with sources: `shared/AGENTS.md`; captured output of the real
//! CLIs: `shared/samples/`, each parsed by its adapter in the tests.

use std::collections::VecDeque;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::mission::Runtime;

pub mod claude;
pub mod codex;
pub mod command;
pub mod cursor;
pub mod gemini;
pub mod kimi;
pub mod qwen;

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

/// One agent CLI.
pub trait Adapter: Send + Sync {
    fn runtime(&self) -> Runtime;
    /// The binary looked up on PATH.
    fn binary(&self) -> &'static str;
    /// How to install it, for the preflight error.
    fn install_hint(&self) -> &'static str;
    /// Whether the adapter was checked against the real CLI's captured output.
    fn verified(&self) -> bool;
    /// Whether the CLI can resume a session with a new prompt.
    fn resumable(&self) -> bool;
    /// Whether the CLI takes a pre-assigned session id (`Invocation::new_session`).
    fn pre_assigns_session(&self) -> bool {
        false
    }
    /// The arguments after the binary name.
    fn argv(&self, invocation: &Invocation<'_>) -> Vec<String>;
    /// Whether the prompt goes to stdin (then closed) rather than argv.
    fn prompt_on_stdin(&self) -> bool {
        false
    }
    /// A parser for one attempt's streams.
    fn parser(&self, previous: Option<SessionTotals>) -> Box<dyn StreamParser>;
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
    vec![
        Box::new(claude::Claude),
        Box::new(codex::Codex),
        Box::new(gemini::Gemini),
        Box::new(cursor::Cursor),
        Box::new(kimi::Kimi),
        Box::new(qwen::Qwen),
        Box::new(command::CommandAdapter::default()),
    ]
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

/// Shortens text to one line of at most `max` characters (whitespace runs become one space;
/// a cut ends with `…`). Reads only as much of `text` as it keeps.
pub fn one_line(text: &str, max: usize) -> String {
    fn cut(mut kept: String) -> String {
        kept.pop();
        kept.push('…');
        kept
    }
    let mut kept = String::with_capacity(max.min(text.len()) + 2);
    let mut count = 0;
    for word in text.split_whitespace() {
        if count > 0 {
            if count == max {
                return cut(kept);
            }
            kept.push(' ');
            count += 1;
        }
        let chars = if word.is_ascii() {
            word.len()
        } else {
            word.chars().count()
        };
        if count + chars <= max {
            kept.push_str(word);
            count += chars;
            continue;
        }
        for c in word.chars() {
            if count == max {
                return cut(kept);
            }
            kept.push(c);
            count += 1;
        }
    }
    kept
}

/// The outputs of one stream line: each summary with the line's JSON (moved into the last
/// one, cloned for the others).
fn outputs(
    lines: Vec<(OutputKind, String)>,
    raw: serde_json::Value,
    session_id: Option<String>,
) -> Vec<Output> {
    let mut raw = Some(raw);
    let count = lines.len();
    lines
        .into_iter()
        .enumerate()
        .map(|(n, (kind, summary))| Output {
            kind,
            summary,
            raw: if n + 1 == count {
                raw.take().unwrap_or_default()
            } else {
                raw.clone().unwrap_or_default()
            },
            session_id: session_id.clone(),
        })
        .collect()
}

// Private helpers shared by the adapters (child modules see them).

/// Keeps the last 20 non-blank lines of a stream (each cut at 1,000 bytes), for error texts.
fn push_tail(tail: &mut VecDeque<String>, line: &str) {
    let mut line = line.trim_end();
    if line.trim().is_empty() {
        return;
    }
    if line.len() > 1000 {
        let mut end = 1000;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line = &line[..end];
    }
    if tail.len() == 20 {
        tail.pop_front();
    }
    tail.push_back(line.to_owned());
}

/// The error text of an attempt that ended without a terminal event: how it ended, then the
/// tail of its stderr.
fn exit_error(tail: &VecDeque<String>, exit_code: Option<i32>) -> String {
    let how = match exit_code {
        Some(code) => format!("exited with code {code} without a result"),
        None => "was killed without a result".to_owned(),
    };
    if tail.is_empty() {
        how
    } else {
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        format!("{how}:\n{}", lines.join("\n"))
    }
}

/// Whether `text` holds the number `code` on its own (`401`, not a part of `:4010` or of
/// `49.401Z`).
fn has_code(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// Whether an error text names a usage, rate or quota limit (AGENTS.md section 10).
fn names_usage_limit(text: &str) -> bool {
    let lower = text.to_lowercase();
    [
        "usage limit",
        "rate limit",
        "rate_limit",
        "quota",
        "resource_exhausted",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
        || has_code(text, "429")
}

/// Classifies the failure text of a CLI whose error texts are not known (cursor, kimi).
fn guess_failure(text: &str) -> AgentOutcome {
    let lower = text.to_lowercase();
    let auth = [
        "unauthorized",
        "not logged in",
        "authenticat",
        "api key",
        "api_key",
        "login",
    ];
    let network = [
        "econnrefused",
        "enotfound",
        "fetch failed",
        "connection error",
        "connection refused",
        "network",
    ];
    if has_code(text, "401") || has_code(text, "403") || auth.iter().any(|n| lower.contains(n)) {
        AgentOutcome::AuthError
    } else if names_usage_limit(text) {
        AgentOutcome::UsageLimit
    } else if network.iter().any(|n| lower.contains(n)) {
        AgentOutcome::Unreachable
    } else {
        AgentOutcome::AgentError
    }
}

/// A tool call in one line: its name and its target, from its input (`Write hello.txt`,
/// `Bash: echo hi > x`). Paths are shown relative to `cwd` when under it.
fn tool_summary(name: &str, input: &serde_json::Value, cwd: Option<&str>) -> String {
    let text = |key: &&str| input.get(*key).and_then(serde_json::Value::as_str);
    let paths = [
        "file_path",
        "path",
        "filePath",
        "absolute_path",
        "notebook_path",
        "dir_path",
    ];
    let targets = ["pattern", "globPattern", "query", "url", "description"];
    let line = if let Some(command) = ["command", "cmd"].iter().find_map(text) {
        format!("{name}: {command}")
    } else if let Some(path) = paths.iter().find_map(text) {
        format!("{name} {}", short_path(path, cwd))
    } else if let Some(target) = targets.iter().find_map(text) {
        format!("{name} {target}")
    } else {
        name.to_owned()
    };
    one_line(&line, 100)
}

/// A path relative to `cwd` when under it, else an absolute path's file name.
fn short_path<'a>(path: &'a str, cwd: Option<&str>) -> &'a str {
    let relative = cwd.and_then(|cwd| path.strip_prefix(cwd.trim_end_matches('/')));
    if let Some(relative) = relative.and_then(|rest| rest.strip_prefix('/')) {
        return relative;
    }
    if path.starts_with('/') {
        Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(path)
    } else {
        path
    }
}

/// Parses a captured sample of the real CLI, `shared/samples/<case>.*`, with `adapter`.
#[cfg(test)]
pub(crate) fn parse_sample(
    adapter: &dyn Adapter,
    case: &str,
    previous: Option<SessionTotals>,
) -> (Vec<Output>, AgentResult) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/samples");
    let read = |ext: &str| {
        fs_err::read_to_string(format!("{dir}/{case}.{ext}")).unwrap_or_else(|e| panic!("{e}"))
    };
    let exit_code: i32 = read("exitcode").trim().parse().expect("an exit code");
    parse_all(
        adapter,
        &read("stdout.jsonl"),
        &read("stderr.txt"),
        Some(exit_code),
        previous,
    )
}

#[cfg(test)]
mod one_line_tests {
    use super::one_line;

    #[test]
    fn shortens_to_one_line() {
        assert_eq!(one_line("  a \n b\t c ", 10), "a b c");
        assert_eq!(one_line("abcdef", 6), "abcdef");
        assert_eq!(one_line("abcdefg", 6), "abcde…");
        assert_eq!(one_line("abc defg", 6), "abc d…");
        assert_eq!(one_line("abcdef gh", 6), "abcde…");
    }
}
