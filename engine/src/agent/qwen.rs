//! Qwen Code (`qwen`): AGENTS.md section 8.

use serde_json::Value;

use super::argv::Argv;
use super::failure::{Tail, has_auth_code, names_usage_limit};
use super::stream::{self, Line};
use super::summary::done;
use super::{
    Adapter, AgentOutcome, AgentResult, Description, Invocation, Output, OutputKind, PromptVia,
    SessionTotals, Sessions, StreamParser, one_line,
};
use crate::mission::Runtime;

/// What is constant about Qwen Code.
pub const DESCRIPTION: Description = Description {
    runtime: Runtime::Qwen,
    binary: "qwen",
    install_hint: "npm install -g @qwen-code/qwen-code",
    verified: true,
    tested_version: Some("0.24.4"),
    login_hint: "log in with `qwen`, or set `OPENAI_API_KEY` (with `OPENAI_BASE_URL` and `OPENAI_MODEL`) in your environment or the profile's `env`",
    sessions: Sessions::Reported,
    prompt: PromptVia::Argv,
};

pub struct Qwen;

impl Adapter for Qwen {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn argv(&self, invocation: &Invocation<'_>) -> Vec<String> {
        Argv::print_mode(invocation.prompt, &["--approval-mode", "yolo"])
            .flag("--resume", invocation.resume)
            .flag("-m", invocation.model)
            .args(invocation.extra_args)
            .build()
    }

    fn parser(&self, _previous: Option<SessionTotals>) -> Box<dyn StreamParser> {
        Box::new(QwenParser::default())
    }
}

#[derive(Default)]
struct QwenParser {
    session_id: Option<String>,
    /// The working directory from `init`, to shorten tool paths.
    cwd: Option<String>,
    /// The terminal `result` event.
    result: Option<Value>,
    /// The last assistant text, in case `result` has none.
    last_text: Option<String>,
    /// A tool result with `is_error`.
    denied: bool,
    stderr: Tail,
}

impl StreamParser for QwenParser {
    fn stdout_line(&mut self, line: &str) -> Vec<Output> {
        let Some(event) = stream::event(line) else {
            return Vec::new();
        };
        let session_id = stream::session_id(&event, &mut self.session_id);
        let mut lines: Vec<Line> = Vec::new();
        match stream::event_type(&event) {
            // `goal_state` notices, even without partial messages: nothing to show.
            "stream_event" => return Vec::new(),
            "system" => {
                if let Some(cwd) = event["cwd"].as_str() {
                    self.cwd = Some(cwd.to_owned());
                }
                lines.push((
                    OutputKind::Other,
                    match event["subtype"].as_str().unwrap_or("") {
                        "init" => format!(
                            "session started: model {}, approval mode {}",
                            event["model"].as_str().unwrap_or("?"),
                            event["permission_mode"].as_str().unwrap_or("?")
                        ),
                        other => format!("system {other}"),
                    },
                ));
            }
            "assistant" => {
                for block in stream::blocks(&event) {
                    if block["type"] == "text" {
                        self.last_text = Some(block["text"].as_str().unwrap_or("").to_owned());
                    }
                    lines.push(stream::block_line(block, self.cwd.as_deref(), |text| {
                        if text.starts_with("[API Error") {
                            OutputKind::Error
                        } else {
                            OutputKind::Message
                        }
                    }));
                }
            }
            "user" => {
                for tool_line in stream::tool_results(&event) {
                    if tool_line.0 == OutputKind::Error {
                        self.denied = true;
                    }
                    lines.push(tool_line);
                }
            }
            "result" => {
                self.result = Some(event.clone());
                lines.push(if failed(&event) {
                    (OutputKind::Error, one_line(&error_text(&event), 100))
                } else {
                    let (input, output) = stream::tokens(&event["usage"]);
                    (OutputKind::Usage, done(input, output))
                });
            }
            other => lines.push((OutputKind::Other, other.to_owned())),
        }
        stream::outputs_or_type(lines, event, session_id)
    }

    fn ended(&self) -> bool {
        self.result.is_some()
    }

    fn stderr_line(&mut self, line: &str) {
        self.stderr.push(line);
    }

    fn finish(&mut self, exit_code: Option<i32>) -> AgentResult {
        let mut result = AgentResult::of_session(self.session_id.clone(), self.denied);
        let Some(event) = &self.result else {
            return result.failed(AgentOutcome::AgentError, self.stderr.exit_error(exit_code));
        };
        stream::result_session(event, &mut result);
        (result.input_tokens, result.output_tokens) = stream::tokens(&event["usage"]);
        if !failed(event) {
            let message = event["result"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| self.last_text.clone());
            return result.succeeded(message);
        }
        let text = error_text(event);
        let outcome = if has_auth_code(&text) {
            AgentOutcome::AuthError
        } else if text.contains("Connection error") || text.contains("ECONNREFUSED") {
            AgentOutcome::Unreachable
        } else if names_usage_limit(&text) {
            AgentOutcome::UsageLimit
        } else {
            AgentOutcome::AgentError
        };
        result.failed(outcome, text)
    }
}

fn failed(event: &Value) -> bool {
    event["is_error"] == true || event["subtype"] != "success"
}

/// The CLI's own error text: `error.message`, else `result`, else the subtype.
fn error_text(event: &Value) -> String {
    event["error"]["message"]
        .as_str()
        .or_else(|| event["result"].as_str())
        .map_or_else(
            || {
                format!(
                    "qwen failed: {}",
                    event["subtype"].as_str().unwrap_or("error")
                )
            },
            str::to_owned,
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::argv::test_invocation;
    use crate::agent::parse_all;

    #[test]
    fn failed_tool_result_is_a_denial() {
        let stdout = r#"{"type":"user","session_id":"q1","message":{"content":[{"type":"tool_result","tool_use_id":"c1","is_error":true,"content":"File path must be absolute"}]}}
{"type":"result","subtype":"success","is_error":false,"result":"Done.","usage":{"input_tokens":1,"output_tokens":1},"permission_denials":[]}"#;
        let (outputs, result) = parse_all(&Qwen, stdout, "", Some(0), None);
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert!(result.denial);
        assert_eq!(outputs[0].kind, OutputKind::Error);
        assert_eq!(outputs[0].summary, "File path must be absolute");
    }

    #[test]
    fn junk_and_unknown_events_do_not_break_parsing() {
        let stdout = "warning: something\n{\"type\":\"novel\"}\n";
        let (outputs, result) = parse_all(&Qwen, stdout, "crash\n", Some(1), None);
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].kind, OutputKind::Other);
        assert_eq!(result.outcome, Some(AgentOutcome::AgentError));
        assert_eq!(
            result.error.as_deref(),
            Some("exited with code 1 without a result:\ncrash")
        );
    }

    #[test]
    fn argv_fresh_resume_model_and_extra_args() {
        let extra = vec!["--approval-mode".to_owned(), "auto-edit".to_owned()];
        let mut inv = test_invocation(Some("ignored"), &extra);
        assert_eq!(
            Qwen.argv(&inv),
            [
                "-p",
                "do it",
                "--output-format",
                "stream-json",
                "--approval-mode",
                "yolo",
                "--approval-mode",
                "auto-edit"
            ]
        );
        inv.resume = Some("old-id");
        inv.model = Some("qwen3-coder");
        assert_eq!(
            Qwen.argv(&inv)[6..],
            [
                "--resume",
                "old-id",
                "-m",
                "qwen3-coder",
                "--approval-mode",
                "auto-edit"
            ]
        );
    }
}
