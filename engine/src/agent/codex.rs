//! Codex CLI (`codex exec --json`): AGENTS.md section 4.

use std::path::Path;

use serde_json::Value;

use super::argv::Argv;
use super::failure::{Tail, has_auth_code, names_usage_limit};
use super::stream;
use super::summary::done;
use super::{
    Adapter, AgentOutcome, AgentResult, Description, Invocation, Output, OutputKind, PromptVia,
    SessionTotals, Sessions, StreamParser, one_line,
};
use crate::mission::Runtime;

/// What is constant about Codex CLI.
pub const DESCRIPTION: Description = Description {
    runtime: Runtime::Codex,
    binary: "codex",
    install_hint: "npm install -g @openai/codex",
    verified: true,
    tested_version: Some("0.169.0"),
    login_hint: "log in with `codex login`, or set `CODEX_API_KEY` (or your provider's key variable) in your environment or the profile's `env`",
    sessions: Sessions::Reported,
    prompt: PromptVia::Argv,
};

/// stderr when the read-only sandbox refused a write.
const READ_ONLY: &str = "blocked by read-only sandbox";
/// An `error` event's message while codex waits for the network.
const WAITING: &str = "Reconnecting... waiting for network";

pub struct Codex;

impl Adapter for Codex {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn argv(&self, invocation: &Invocation<'_>) -> Vec<String> {
        Argv::new(&["exec", "--json", "--sandbox", "workspace-write", "-C"])
            .arg(invocation.worktree.display().to_string())
            .flag("-m", invocation.model)
            // Global flags go before `resume`.
            .args(invocation.extra_args)
            .flag("resume", invocation.resume)
            .arg(invocation.prompt)
            .build()
    }

    fn parser(&self, previous: Option<SessionTotals>) -> Box<dyn StreamParser> {
        Box::new(CodexParser {
            previous,
            ..CodexParser::default()
        })
    }
}

/// How a turn ended.
enum Turn {
    /// `turn.completed`, with this attempt's tokens.
    Completed {
        input: Option<u64>,
        output: Option<u64>,
    },
    /// `turn.failed`, with its error text.
    Failed { text: String },
}

#[derive(Default)]
struct CodexParser {
    previous: Option<SessionTotals>,
    session_id: Option<String>,
    /// How the turn ended: the terminal `turn.completed` or `turn.failed` event.
    terminal: Option<Turn>,
    /// The last `agent_message` text.
    last_message: Option<String>,
    /// The last top-level `error` event's message.
    last_error: Option<String>,
    waiting: bool,
    denied: bool,
    stderr: Tail,
}

impl StreamParser for CodexParser {
    fn stdout_line(&mut self, line: &str) -> Vec<Output> {
        let Some(event) = stream::event(line) else {
            return Vec::new();
        };
        let mut session_id = None;
        let event_type = stream::event_type(&event);
        let (kind, summary) = match event_type {
            "thread.started" => {
                session_id = event["thread_id"].as_str().map(str::to_owned);
                self.session_id.clone_from(&session_id);
                (OutputKind::Other, "thread started".to_owned())
            }
            "turn.started" => (OutputKind::Other, "turn started".to_owned()),
            "error" => {
                let message = event["message"].as_str().unwrap_or("error");
                if message.starts_with(WAITING) {
                    self.waiting = true;
                }
                self.last_error = Some(message.to_owned());
                (OutputKind::Error, one_line(message, 100))
            }
            "item.started" | "item.updated" | "item.completed" => {
                // Progress: the network is back.
                self.waiting = false;
                self.item(&event["item"], event_type == "item.completed")
            }
            "turn.completed" => {
                let (input, output) = tokens(&event, self.previous);
                self.terminal = Some(Turn::Completed { input, output });
                (OutputKind::Usage, done(input, output))
            }
            "turn.failed" => {
                let text = failure_text(&event);
                let summary = one_line(&text, 100);
                self.terminal = Some(Turn::Failed { text });
                (OutputKind::Error, summary)
            }
            other => (OutputKind::Other, other.to_owned()),
        };
        stream::outputs(vec![(kind, summary)], event, session_id)
    }

    fn ended(&self) -> bool {
        self.terminal.is_some()
    }

    fn stderr_line(&mut self, line: &str) {
        if line.contains(READ_ONLY) {
            self.denied = true;
        }
        self.stderr.push(line);
    }

    fn waiting_for_network(&self) -> bool {
        self.waiting
    }

    fn finish(&mut self, exit_code: Option<i32>) -> AgentResult {
        let mut result = AgentResult::of_session(self.session_id.clone(), self.denied);
        let Some(turn) = &self.terminal else {
            if self.waiting {
                return result.failed(AgentOutcome::Unreachable, self.last_error.clone());
            }
            let mut error = self.stderr.exit_error(exit_code);
            if let Some(last) = &self.last_error {
                error = format!("{last}\n{error}");
            }
            return result.failed(AgentOutcome::AgentError, error);
        };
        let text = match turn {
            Turn::Completed { input, output } => {
                (result.input_tokens, result.output_tokens) = (*input, *output);
                return result.succeeded(self.last_message.clone());
            }
            Turn::Failed { text } => text.clone(),
        };
        let context = format!("{text}\n{}", self.last_error.as_deref().unwrap_or(""));
        let outcome = if has_auth_code(&context)
            || context.contains("Unauthorized")
            || context.contains("Missing environment variable")
        {
            AgentOutcome::AuthError
        } else if names_usage_limit(&context) {
            AgentOutcome::UsageLimit
        } else if self.waiting {
            AgentOutcome::Unreachable
        } else {
            AgentOutcome::AgentError
        };
        result.failed(outcome, text)
    }
}

impl CodexParser {
    /// One `item.*` event's line.
    fn item(&mut self, item: &Value, completed: bool) -> (OutputKind, String) {
        let (kind, summary) = self.item_line(item, completed);
        if kind == OutputKind::Tool
            && matches!(item["status"].as_str(), Some("failed" | "declined"))
        {
            return (
                OutputKind::Error,
                one_line(&format!("{summary} (failed)"), 100),
            );
        }
        (kind, summary)
    }

    fn item_line(&mut self, item: &Value, completed: bool) -> (OutputKind, String) {
        let text = item["text"].as_str().unwrap_or("");
        match item["type"].as_str().unwrap_or("") {
            "agent_message" => {
                if completed {
                    self.last_message = Some(text.to_owned());
                }
                (OutputKind::Message, one_line(text, 100))
            }
            "reasoning" => (
                OutputKind::Other,
                one_line(&format!("thinking: {text}"), 100),
            ),
            "file_change" => {
                let changes: Vec<String> = item["changes"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|change| {
                        let path = change["path"].as_str().unwrap_or("?");
                        let name = Path::new(path)
                            .file_name()
                            .and_then(|name| name.to_str())
                            .unwrap_or(path);
                        format!("{name} ({})", change["kind"].as_str().unwrap_or("update"))
                    })
                    .collect();
                (
                    OutputKind::Tool,
                    one_line(&format!("apply_patch {}", changes.join(", ")), 100),
                )
            }
            "command_execution" => {
                let output = item["aggregated_output"].as_str().unwrap_or("");
                if output.contains("Read-only file system") {
                    self.denied = true;
                }
                let mut summary = format!(
                    "shell: {}",
                    shell_script(item["command"].as_str().unwrap_or(""))
                );
                if let Some(code) = item["exit_code"].as_i64().filter(|_| completed) {
                    summary.push_str(&format!(" (exit {code})"));
                }
                (OutputKind::Tool, one_line(&summary, 100))
            }
            "mcp_tool_call" => (
                OutputKind::Tool,
                format!(
                    "{}.{}",
                    item["server"].as_str().unwrap_or("mcp"),
                    item["tool"].as_str().unwrap_or("tool")
                ),
            ),
            "web_search" => (
                OutputKind::Tool,
                one_line(
                    &format!("web_search {}", item["query"].as_str().unwrap_or("")),
                    100,
                ),
            ),
            "error" => (
                OutputKind::Error,
                one_line(item["message"].as_str().unwrap_or("error"), 100),
            ),
            other => (OutputKind::Other, other.to_owned()),
        }
    }
}

/// The script of a `/bin/bash -lc "<script>"` command, else the command itself.
fn shell_script(command: &str) -> String {
    match shlex::split(command).as_deref() {
        Some([shell, flag, script]) if shell.ends_with("sh") && (flag == "-lc" || flag == "-c") => {
            script.clone()
        }
        _ => command.to_owned(),
    }
}

fn failure_text(event: &Value) -> String {
    event["error"]["message"]
        .as_str()
        .unwrap_or("codex turn failed")
        .to_owned()
}

/// `usage` after a resume covers the whole thread: subtract what earlier attempts reported.
fn tokens(event: &Value, previous: Option<SessionTotals>) -> (Option<u64>, Option<u64>) {
    let previous = previous.unwrap_or_default();
    let (input, output) = stream::tokens(&event["usage"]);
    (
        input.map(|n| n.saturating_sub(previous.input_tokens)),
        output.map(|n| n.saturating_sub(previous.output_tokens)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::argv::test_invocation;
    use crate::agent::parse_all;

    #[test]
    fn missing_key_and_no_terminal_event() {
        let stdout = "{\"type\":\"error\",\"message\":\"Missing environment variable: `OPENAI_API_KEY`.\"}\n\
                      {\"type\":\"turn.failed\",\"error\":{\"message\":\"turn failed\"}}";
        let (_, result) = parse_all(&Codex, stdout, "", Some(1), None);
        assert_eq!(result.outcome, Some(AgentOutcome::AuthError));
        let (_, result) = parse_all(&Codex, "", "error: bad config\n", Some(1), None);
        assert_eq!(result.outcome, Some(AgentOutcome::AgentError));
        assert_eq!(
            result.error.as_deref(),
            Some("exited with code 1 without a result:\nerror: bad config")
        );
    }

    #[test]
    fn refused_shell_write_is_a_denial_and_an_error_line() {
        let stdout = r#"{"type":"item.completed","item":{"id":"item_0","type":"command_execution","command":"touch x","aggregated_output":"touch: cannot touch 'x': Read-only file system","exit_code":1,"status":"failed"}}
{"type":"turn.completed","usage":{"input_tokens":5,"output_tokens":1}}"#;
        let (outputs, result) = parse_all(&Codex, stdout, "", Some(0), None);
        assert_eq!(outputs[0].kind, OutputKind::Error);
        assert_eq!(outputs[0].summary, "shell: touch x (exit 1) (failed)");
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert!(result.denial);
    }

    #[test]
    fn junk_and_unknown_events_do_not_break_parsing() {
        let stdout = "garbage {\n{\"type\":\"thread.started\",\"thread_id\":\"t1\"}\n{\"type\":\"new.kind\"}\n\
                      {\"type\":\"item.completed\",\"item\":{\"type\":\"todo_list\"}}\n\
                      {\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}";
        let (outputs, result) = parse_all(&Codex, stdout, "", Some(0), None);
        assert_eq!(outputs.len(), 4);
        assert_eq!(outputs[1].kind, OutputKind::Other);
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(result.session_id.as_deref(), Some("t1"));
        assert_eq!(result.final_message, None);
    }

    #[test]
    fn argv_puts_extra_args_before_resume() {
        let extra = vec![
            "-c".to_owned(),
            "model_reasoning_effort=\"high\"".to_owned(),
        ];
        let mut inv = test_invocation(Some("ignored"), &extra);
        assert_eq!(
            Codex.argv(&inv),
            [
                "exec",
                "--json",
                "--sandbox",
                "workspace-write",
                "-C",
                "/tmp/wt",
                "-c",
                "model_reasoning_effort=\"high\"",
                "do it"
            ]
        );
        inv.model = Some("gpt-5");
        inv.resume = Some("thread-1");
        let argv = Codex.argv(&inv);
        assert_eq!(
            argv[6..],
            [
                "-m",
                "gpt-5",
                "-c",
                "model_reasoning_effort=\"high\"",
                "resume",
                "thread-1",
                "do it"
            ]
        );
        assert!(!argv.contains(&"--full-auto".to_owned()));
    }
}
