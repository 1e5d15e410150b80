//! Gemini CLI (`gemini`): AGENTS.md section 5.

use serde_json::Value;

use super::argv::Argv;
use super::failure::{Tail, has_auth_code, names_usage_limit};
use super::stream;
use super::summary::{done, tool_summary};
use super::{
    Adapter, AgentOutcome, AgentResult, Description, Invocation, Output, OutputKind, PromptVia,
    SessionTotals, Sessions, StreamParser, one_line,
};
use crate::mission::Runtime;

/// What is constant about Gemini CLI.
pub const DESCRIPTION: Description = Description {
    runtime: Runtime::Gemini,
    binary: "gemini",
    install_hint: "npm install -g @google/gemini-cli",
    verified: true,
    tested_version: Some("0.61.0"),
    login_hint: "log in with `gemini`, or set `GEMINI_API_KEY` in your environment or the profile's `env`",
    sessions: Sessions::PreAssigned,
    prompt: PromptVia::Argv,
};

/// Exit codes that mean an auth failure: HTTP 401 mod 256, and "Invalid auth method selected".
const AUTH_EXITS: [i32; 2] = [145, 41];

pub struct Gemini;

impl Adapter for Gemini {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn argv(&self, invocation: &Invocation<'_>) -> Vec<String> {
        let flags = ["--approval-mode", "yolo", "--skip-trust"];
        Argv::print_mode(invocation.prompt, &flags)
            .resume_or_assign(invocation)
            .flag("-m", invocation.model)
            .args(invocation.extra_args)
            .build()
    }

    fn parser(&self, _previous: Option<SessionTotals>) -> Box<dyn StreamParser> {
        Box::new(GeminiParser::default())
    }
}

#[derive(Default)]
struct GeminiParser {
    session_id: Option<String>,
    /// The terminal `result` event.
    result: Option<Value>,
    /// Assistant text since the last tool result.
    final_text: String,
    /// A tool result whose status is not `success`.
    denied: bool,
    stderr: Tail,
}

impl StreamParser for GeminiParser {
    fn stdout_line(&mut self, line: &str) -> Vec<Output> {
        let Some(event) = stream::event(line) else {
            return Vec::new();
        };
        let session_id = stream::session_id(&event, &mut self.session_id);
        let (kind, summary) = match stream::event_type(&event) {
            "init" => (
                OutputKind::Other,
                format!(
                    "session started: model {}",
                    event["model"].as_str().unwrap_or("?")
                ),
            ),
            "message" => {
                let content = event["content"].as_str().unwrap_or("");
                if event["role"] == "assistant" {
                    self.final_text.push_str(content);
                    (OutputKind::Message, one_line(content, 100))
                } else {
                    (
                        OutputKind::Other,
                        one_line(&format!("user: {content}"), 100),
                    )
                }
            }
            "tool_use" => (
                OutputKind::Tool,
                tool_summary(
                    event["tool_name"].as_str().unwrap_or("tool"),
                    &event["parameters"],
                    None,
                ),
            ),
            "tool_result" => {
                self.final_text.clear();
                let status = event["status"].as_str().unwrap_or("");
                if status == "success" {
                    (OutputKind::Other, "tool succeeded".to_owned())
                } else {
                    self.denied = true;
                    let message = event["error"]["message"].as_str().unwrap_or(status);
                    (
                        OutputKind::Error,
                        one_line(&format!("tool failed: {message}"), 100),
                    )
                }
            }
            "error" => (
                OutputKind::Error,
                one_line(event["message"].as_str().unwrap_or("error"), 100),
            ),
            "result" => {
                self.result = Some(event.clone());
                if event["status"] == "success" {
                    let (input, output) = stream::tokens(&event["stats"]);
                    (OutputKind::Usage, done(input, output))
                } else {
                    (OutputKind::Error, one_line(&error_text(&event), 100))
                }
            }
            other => (OutputKind::Other, other.to_owned()),
        };
        stream::outputs(vec![(kind, summary)], event, session_id)
    }

    fn ended(&self) -> bool {
        self.result.is_some()
    }

    fn stderr_line(&mut self, line: &str) {
        self.stderr.push(line);
    }

    fn finish(&mut self, exit_code: Option<i32>) -> AgentResult {
        let mut result = AgentResult::of_session(self.session_id.clone(), self.denied);
        let auth_exit = exit_code.is_some_and(|code| AUTH_EXITS.contains(&code));
        let Some(event) = &self.result else {
            let outcome = if auth_exit {
                AgentOutcome::AuthError
            } else {
                AgentOutcome::AgentError
            };
            return result.failed(outcome, self.stderr.exit_error(exit_code));
        };
        (result.input_tokens, result.output_tokens) = stream::tokens(&event["stats"]);
        if event["status"] == "success" {
            return result.succeeded(Some(self.final_text.clone()));
        }
        let text = error_text(event);
        let outcome = if auth_exit
            || has_auth_code(&text)
            || text.contains("UNAUTHENTICATED")
            || text.contains("PERMISSION_DENIED")
        {
            AgentOutcome::AuthError
        } else if text.contains("fetch failed") {
            AgentOutcome::Unreachable
        } else if names_usage_limit(&text) {
            AgentOutcome::UsageLimit
        } else {
            AgentOutcome::AgentError
        };
        result.failed(outcome, text)
    }
}

fn error_text(event: &Value) -> String {
    event["error"]["message"].as_str().map_or_else(
        || format!("gemini ended with status {}", event["status"]),
        str::to_owned,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::argv::test_invocation;
    use crate::agent::parse_all;

    #[test]
    fn failed_tool_is_a_denial_and_text_after_it_is_final() {
        let stdout = r#"{"type":"init","session_id":"g1"}
{"type":"message","role":"assistant","content":"Let me try.","delta":true}
{"type":"tool_use","tool_name":"run_shell_command","tool_id":"t1","parameters":{"command":"touch x"}}
{"type":"tool_result","tool_id":"t1","status":"error","error":{"type":"denied","message":"not allowed"}}
{"type":"message","role":"assistant","content":"Could ","delta":true}
{"type":"message","role":"assistant","content":"not.","delta":true}
{"type":"result","status":"success","stats":{"input_tokens":10,"output_tokens":2}}"#;
        let (outputs, result) = parse_all(&Gemini, stdout, "", Some(0), None);
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert!(result.denial);
        assert_eq!(result.final_message.as_deref(), Some("Could not."));
        assert!(
            outputs
                .iter()
                .any(|o| o.summary == "run_shell_command: touch x")
        );
    }

    #[test]
    fn auth_exit_without_result_and_other_errors() {
        let (_, result) = parse_all(
            &Gemini,
            "",
            "Invalid auth method selected.\n",
            Some(41),
            None,
        );
        assert_eq!(result.outcome, Some(AgentOutcome::AuthError));
        let (_, result) = parse_all(&Gemini, "", "untrusted\n", Some(55), None);
        assert_eq!(result.outcome, Some(AgentOutcome::AgentError));
        let quota =
            r#"{"type":"result","status":"error","error":{"message":"RESOURCE_EXHAUSTED: quota"}}"#;
        let (_, result) = parse_all(&Gemini, quota, "", Some(1), None);
        assert_eq!(result.outcome, Some(AgentOutcome::UsageLimit));
    }

    #[test]
    fn junk_and_unknown_events_do_not_break_parsing() {
        let stdout = "[STARTUP] log line\n{\"type\":\"mystery\"}\n{\"type\":\"result\",\"status\":\"success\"}";
        let (outputs, result) = parse_all(&Gemini, stdout, "", Some(0), None);
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs[0].kind, OutputKind::Other);
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(result.input_tokens, None);
    }

    #[test]
    fn argv_fresh_resume_model_and_extra_args() {
        let extra = vec!["--approval-mode".to_owned(), "auto_edit".to_owned()];
        let mut inv = test_invocation(Some("new-id"), &extra);
        assert_eq!(
            Gemini.argv(&inv),
            [
                "-p",
                "do it",
                "--output-format",
                "stream-json",
                "--approval-mode",
                "yolo",
                "--skip-trust",
                "--session-id",
                "new-id",
                "--approval-mode",
                "auto_edit"
            ]
        );
        inv.resume = Some("old-id");
        inv.model = Some("gemini-2.5-pro");
        assert_eq!(
            Gemini.argv(&inv)[7..],
            [
                "--resume",
                "old-id",
                "-m",
                "gemini-2.5-pro",
                "--approval-mode",
                "auto_edit"
            ]
        );
    }
}
