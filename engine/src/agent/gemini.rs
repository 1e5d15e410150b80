//! Gemini CLI (`gemini`): AGENTS.md section 5.

use std::collections::VecDeque;

use serde_json::Value;

use super::{
    Adapter, AgentOutcome, AgentResult, Invocation, Output, OutputKind, SessionTotals,
    StreamParser, exit_error, has_code, names_usage_limit, one_line, push_tail, tool_summary,
};
use crate::mission::Runtime;

/// Exit codes that mean an auth failure: HTTP 401 mod 256, and "Invalid auth method selected".
const AUTH_EXITS: [i32; 2] = [145, 41];

pub struct Gemini;

impl Adapter for Gemini {
    fn runtime(&self) -> Runtime {
        Runtime::Gemini
    }

    fn binary(&self) -> &'static str {
        "gemini"
    }

    fn install_hint(&self) -> &'static str {
        "npm install -g @google/gemini-cli"
    }

    fn verified(&self) -> bool {
        true
    }

    fn resumable(&self) -> bool {
        true
    }

    fn pre_assigns_session(&self) -> bool {
        true
    }

    fn argv(&self, invocation: &Invocation<'_>) -> Vec<String> {
        let mut argv: Vec<String> = [
            "-p",
            invocation.prompt,
            "--output-format",
            "stream-json",
            "--approval-mode",
            "yolo",
            "--skip-trust",
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(session) = invocation.resume {
            argv.extend(["--resume".to_owned(), session.to_owned()]);
        } else if let Some(session) = invocation.new_session {
            argv.extend(["--session-id".to_owned(), session.to_owned()]);
        }
        if let Some(model) = invocation.model {
            argv.extend(["-m".to_owned(), model.to_owned()]);
        }
        argv.extend(invocation.extra_args.iter().cloned());
        argv
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
    stderr: VecDeque<String>,
}

impl StreamParser for GeminiParser {
    fn stdout_line(&mut self, line: &str) -> Vec<Output> {
        let Some(event) = serde_json::from_str::<Value>(line)
            .ok()
            .filter(Value::is_object)
        else {
            return Vec::new();
        };
        let session_id = event["session_id"].as_str().map(str::to_owned);
        if session_id.is_some() {
            self.session_id.clone_from(&session_id);
        }
        let (kind, summary) = match event["type"].as_str().unwrap_or("unknown") {
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
                    let (input, output) = tokens(&event);
                    (
                        OutputKind::Usage,
                        format!(
                            "done: {} in / {} out tokens",
                            input.unwrap_or(0),
                            output.unwrap_or(0)
                        ),
                    )
                } else {
                    (OutputKind::Error, one_line(&error_text(&event), 100))
                }
            }
            other => (OutputKind::Other, other.to_owned()),
        };
        vec![Output {
            kind,
            summary,
            raw: event,
            session_id,
        }]
    }

    fn ended(&self) -> bool {
        self.result.is_some()
    }

    fn stderr_line(&mut self, line: &str) {
        push_tail(&mut self.stderr, line);
    }

    fn finish(&mut self, exit_code: Option<i32>) -> AgentResult {
        let mut result = AgentResult {
            session_id: self.session_id.clone(),
            denial: self.denied,
            ..AgentResult::default()
        };
        let auth_exit = exit_code.is_some_and(|code| AUTH_EXITS.contains(&code));
        let Some(event) = &self.result else {
            result.outcome = Some(if auth_exit {
                AgentOutcome::AuthError
            } else {
                AgentOutcome::AgentError
            });
            result.error = Some(exit_error(&self.stderr, exit_code));
            return result;
        };
        (result.input_tokens, result.output_tokens) = tokens(event);
        if event["status"] == "success" {
            result.outcome = Some(AgentOutcome::Ok);
            result.final_message = Some(self.final_text.clone());
            return result;
        }
        let text = error_text(event);
        result.outcome = Some(
            if auth_exit
                || ["401", "403"].iter().any(|code| has_code(&text, code))
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
            },
        );
        result.error = Some(text);
        result
    }
}

fn error_text(event: &Value) -> String {
    event["error"]["message"].as_str().map_or_else(
        || format!("gemini ended with status {}", event["status"]),
        str::to_owned,
    )
}

fn tokens(event: &Value) -> (Option<u64>, Option<u64>) {
    let stats = &event["stats"];
    (
        stats["input_tokens"].as_u64(),
        stats["output_tokens"].as_u64(),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::agent::parse_all;

    macro_rules! sample {
        ($case:literal) => {
            crate::agent::parse_sample(&Gemini, $case, None)
        };
    }

    #[test]
    fn yolo_sample_is_ok_with_final_text() {
        let (outputs, result) = sample!("gemini-yolo");
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(
            result.session_id.as_deref(),
            Some("e1aef7d2-e925-44e4-aa1d-47e2e70911a9")
        );
        assert_eq!(
            result.final_message.as_deref(),
            Some("Created hello_gemini.txt.")
        );
        // Three model calls (a router call first): 300 / 60.
        assert_eq!(
            (result.input_tokens, result.output_tokens),
            (Some(300), Some(60))
        );
        assert_eq!(result.cost_usd, None);
        assert!(!result.denial);
        let tool = outputs.iter().find(|o| o.kind == OutputKind::Tool).unwrap();
        assert_eq!(tool.summary, "write_file hello_gemini.txt");
        assert_eq!(
            outputs[0].session_id.as_deref(),
            Some("e1aef7d2-e925-44e4-aa1d-47e2e70911a9")
        );
    }

    #[test]
    fn model_sample_is_ok_with_final_text() {
        let (_, result) = sample!("gemini-model");
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(
            result.session_id.as_deref(),
            Some("96bbb174-ed40-41b7-87a6-2e1eac187db1")
        );
        assert_eq!(
            result.final_message.as_deref(),
            Some("Created hello_gemini.txt.")
        );
        assert_eq!(
            (result.input_tokens, result.output_tokens),
            (Some(200), Some(40))
        );
        assert_eq!(result.cost_usd, None);
    }

    #[test]
    fn auth_sample_is_auth_error() {
        let (_, result) = sample!("gemini-401");
        assert_eq!(result.outcome, Some(AgentOutcome::AuthError));
        assert_eq!(
            result.session_id.as_deref(),
            Some("bc16971f-056b-43f6-95bd-d2beb745653c")
        );
        assert_eq!(result.final_message, None);
        assert!(result.error.unwrap().contains("UNAUTHENTICATED"));
    }

    #[test]
    fn unreachable_sample_is_unreachable() {
        let (_, result) = sample!("gemini-unreachable");
        assert_eq!(result.outcome, Some(AgentOutcome::Unreachable));
        assert_eq!(
            result.session_id.as_deref(),
            Some("8f91c923-72d5-4142-984c-aa42e48ffe41")
        );
        assert_eq!(result.final_message, None);
        assert_eq!(
            result.error.as_deref(),
            Some("[API Error: exception TypeError: fetch failed sending request]")
        );
    }

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
        let mut inv = Invocation {
            prompt: "do it",
            worktree: Path::new("/tmp/wt"),
            model: None,
            resume: None,
            new_session: Some("new-id"),
            extra_args: &extra,
        };
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
