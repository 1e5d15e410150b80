//! Qwen Code (`qwen`): AGENTS.md section 8.

use std::collections::VecDeque;

use serde_json::Value;

use super::{
    Adapter, AgentOutcome, AgentResult, Invocation, Output, OutputKind, SessionTotals,
    StreamParser, exit_error, has_code, names_usage_limit, one_line, push_tail, tool_summary,
};
use crate::mission::Runtime;

pub struct Qwen;

impl Adapter for Qwen {
    fn runtime(&self) -> Runtime {
        Runtime::Qwen
    }

    fn binary(&self) -> &'static str {
        "qwen"
    }

    fn install_hint(&self) -> &'static str {
        "npm install -g @qwen-code/qwen-code"
    }

    fn verified(&self) -> bool {
        true
    }

    fn resumable(&self) -> bool {
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
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(session) = invocation.resume {
            argv.extend(["--resume".to_owned(), session.to_owned()]);
        }
        if let Some(model) = invocation.model {
            argv.extend(["-m".to_owned(), model.to_owned()]);
        }
        argv.extend(invocation.extra_args.iter().cloned());
        argv
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
    stderr: VecDeque<String>,
}

impl StreamParser for QwenParser {
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
        let mut lines: Vec<(OutputKind, String)> = Vec::new();
        match event["type"].as_str().unwrap_or("unknown") {
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
                for block in blocks(&event) {
                    match block["type"].as_str().unwrap_or("") {
                        "text" => {
                            let text = block["text"].as_str().unwrap_or("");
                            self.last_text = Some(text.to_owned());
                            let kind = if text.starts_with("[API Error") {
                                OutputKind::Error
                            } else {
                                OutputKind::Message
                            };
                            lines.push((kind, one_line(text, 100)));
                        }
                        "tool_use" => lines.push((
                            OutputKind::Tool,
                            tool_summary(
                                block["name"].as_str().unwrap_or("tool"),
                                &block["input"],
                                self.cwd.as_deref(),
                            ),
                        )),
                        other => lines.push((OutputKind::Other, other.to_owned())),
                    }
                }
            }
            "user" => {
                for block in blocks(&event) {
                    if block["type"] != "tool_result" {
                        continue;
                    }
                    let text = one_line(&content_text(&block["content"]), 100);
                    if block["is_error"] == true {
                        self.denied = true;
                        lines.push((OutputKind::Error, text));
                    } else {
                        lines.push((OutputKind::Other, text));
                    }
                }
            }
            "result" => {
                self.result = Some(event.clone());
                lines.push(if failed(&event) {
                    (OutputKind::Error, one_line(&error_text(&event), 100))
                } else {
                    let (input, output) = tokens(&event);
                    (
                        OutputKind::Usage,
                        format!(
                            "done: {} in / {} out tokens",
                            input.unwrap_or(0),
                            output.unwrap_or(0)
                        ),
                    )
                });
            }
            other => lines.push((OutputKind::Other, other.to_owned())),
        }
        if lines.is_empty() {
            lines.push((
                OutputKind::Other,
                event["type"].as_str().unwrap_or("unknown").to_owned(),
            ));
        }
        super::outputs(lines, event, session_id)
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
        let Some(event) = &self.result else {
            result.outcome = Some(AgentOutcome::AgentError);
            result.error = Some(exit_error(&self.stderr, exit_code));
            return result;
        };
        if let Some(session) = event["session_id"].as_str() {
            result.session_id = Some(session.to_owned());
        }
        (result.input_tokens, result.output_tokens) = tokens(event);
        if event["permission_denials"]
            .as_array()
            .is_some_and(|denials| !denials.is_empty())
        {
            result.denial = true;
        }
        if !failed(event) {
            result.outcome = Some(AgentOutcome::Ok);
            result.final_message = event["result"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| self.last_text.clone());
            return result;
        }
        let text = error_text(event);
        result.outcome = Some(if has_code(&text, "401") || has_code(&text, "403") {
            AgentOutcome::AuthError
        } else if text.contains("Connection error") || text.contains("ECONNREFUSED") {
            AgentOutcome::Unreachable
        } else if names_usage_limit(&text) {
            AgentOutcome::UsageLimit
        } else {
            AgentOutcome::AgentError
        });
        result.error = Some(text);
        result
    }
}

/// The content blocks of an `assistant` or `user` event.
fn blocks(event: &Value) -> &[Value] {
    event["message"]["content"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A tool result's content: a string, or text blocks.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
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

fn tokens(event: &Value) -> (Option<u64>, Option<u64>) {
    let usage = &event["usage"];
    (
        usage["input_tokens"].as_u64(),
        usage["output_tokens"].as_u64(),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::agent::parse_all;

    macro_rules! sample {
        ($case:literal) => {
            crate::agent::parse_sample(&Qwen, $case, None)
        };
    }

    #[test]
    fn yolo_sample_is_ok() {
        let (outputs, result) = sample!("qwen-yolo");
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(
            result.session_id.as_deref(),
            Some("1fa1add8-d0cb-492a-aa8b-195d24eded93")
        );
        assert_eq!(
            result.final_message.as_deref(),
            Some("Created hello_qwen.txt.")
        );
        assert_eq!(
            (result.input_tokens, result.output_tokens),
            (Some(200), Some(40))
        );
        assert_eq!(result.cost_usd, None);
        assert!(!result.denial);
        let tool = outputs.iter().find(|o| o.kind == OutputKind::Tool).unwrap();
        assert_eq!(tool.summary, "write_file hello_qwen.txt");
        assert!(outputs.iter().all(|o| o.session_id.is_some()));
        assert!(outputs.iter().all(|o| o.raw["type"] != "stream_event"));
    }

    #[test]
    fn auth_sample_is_auth_error() {
        let (_, result) = sample!("qwen-401");
        assert_eq!(result.outcome, Some(AgentOutcome::AuthError));
        assert_eq!(
            result.session_id.as_deref(),
            Some("f1d1efa8-b24e-4739-82de-742b2acd65a2")
        );
        assert_eq!(result.final_message, None);
        assert_eq!(
            result.error.as_deref(),
            Some("[API Error: 401 Incorrect API key provided: dummy. (mockllm)]")
        );
    }

    #[test]
    fn unreachable_sample_is_unreachable() {
        let (outputs, result) = sample!("qwen-unreachable");
        assert_eq!(result.outcome, Some(AgentOutcome::Unreachable));
        assert_eq!(
            result.session_id.as_deref(),
            Some("f3cc8b3d-c396-492f-88b9-e76ece5aa180")
        );
        assert_eq!(result.final_message, None);
        assert!(outputs.iter().any(|o| o.kind == OutputKind::Error));
    }

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
        let mut inv = Invocation {
            prompt: "do it",
            worktree: Path::new("/tmp/wt"),
            model: None,
            resume: None,
            new_session: Some("ignored"),
            extra_args: &extra,
        };
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
