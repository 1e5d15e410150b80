//! Cursor CLI (`cursor-agent`): AGENTS.md section 6. Not checked against the real CLI: the
//! stream follows Cursor's documentation (no tokens, no cost).

use serde_json::Value;

use super::argv::Argv;
use super::failure::{Tail, guess_failure};
use super::stream;
use super::summary::tool_summary;
use super::{
    Adapter, AgentResult, Description, Invocation, Output, OutputKind, PromptVia, SessionTotals,
    Sessions, StreamParser, one_line,
};
use crate::mission::Runtime;

/// What is constant about Cursor CLI.
pub const DESCRIPTION: Description = Description {
    runtime: Runtime::Cursor,
    binary: "cursor-agent",
    install_hint: "see https://cursor.com/cli",
    // Follows Cursor's documentation only: no captured sample.
    verified: false,
    tested_version: None,
    login_hint: "log in with `cursor-agent login`, or set `CURSOR_API_KEY` in your environment or the profile's `env`",
    sessions: Sessions::Reported,
    prompt: PromptVia::Argv,
};

pub struct Cursor;

impl Adapter for Cursor {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn argv(&self, invocation: &Invocation<'_>) -> Vec<String> {
        Argv::print_mode(invocation.prompt, &["--force", "--trust", "--workspace"])
            .arg(invocation.worktree.display().to_string())
            .flag("--model", invocation.model)
            .flag("--resume", invocation.resume)
            .args(invocation.extra_args)
            .build()
    }

    fn parser(&self, _previous: Option<SessionTotals>) -> Box<dyn StreamParser> {
        Box::new(CursorParser::default())
    }
}

#[derive(Default)]
struct CursorParser {
    session_id: Option<String>,
    cwd: Option<String>,
    /// The terminal `result` event.
    result: Option<Value>,
    /// The last assistant text, in case `result` has none.
    last_text: Option<String>,
    stderr: Tail,
}

impl StreamParser for CursorParser {
    fn stdout_line(&mut self, line: &str) -> Vec<Output> {
        let Some(event) = stream::event(line) else {
            return Vec::new();
        };
        let session_id = stream::session_id(&event, &mut self.session_id);
        let (kind, summary) = match stream::event_type(&event) {
            "system" => {
                if let Some(cwd) = event["cwd"].as_str() {
                    self.cwd = Some(cwd.to_owned());
                }
                (
                    OutputKind::Other,
                    format!(
                        "session started: model {}",
                        event["model"].as_str().unwrap_or("?")
                    ),
                )
            }
            "user" => (OutputKind::Other, "prompt sent".to_owned()),
            // Thinking comes as many small deltas: nothing to show.
            "thinking" => return Vec::new(),
            "assistant" => {
                let text = message_text(&event);
                self.last_text = Some(text.clone());
                (OutputKind::Message, one_line(&text, 100))
            }
            "tool_call" => self.tool_call(&event),
            "result" => {
                self.result = Some(event.clone());
                if event["is_error"] == true {
                    (OutputKind::Error, one_line(&error_text(&event), 100))
                } else {
                    (OutputKind::Usage, "done".to_owned())
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
        let result = AgentResult::of_session(self.session_id.clone(), false);
        let Some(event) = &self.result else {
            let error = self.stderr.exit_error(exit_code);
            return result.failed(guess_failure(&error), error);
        };
        if event["is_error"] != true {
            let message = event["result"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| self.last_text.clone());
            return result.succeeded(message);
        }
        let text = error_text(event);
        result.failed(guess_failure(&text), text)
    }
}

impl CursorParser {
    /// `tool_call` `started`/`completed`: `tool_call.<kind>ToolCall {args, result}`, or
    /// `tool_call.function {name, arguments}`.
    fn tool_call(&self, event: &Value) -> (OutputKind, String) {
        let Some((key, call)) = event["tool_call"]
            .as_object()
            .and_then(|calls| calls.iter().next())
        else {
            return (OutputKind::Tool, "tool".to_owned());
        };
        let summary = if key == "function" {
            let arguments = call["arguments"]
                .as_str()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .unwrap_or_else(|| call["arguments"].clone());
            tool_summary(
                call["name"].as_str().unwrap_or("tool"),
                &arguments,
                self.cwd.as_deref(),
            )
        } else {
            let name = key.strip_suffix("ToolCall").unwrap_or(key);
            tool_summary(name, &call["args"], self.cwd.as_deref())
        };
        let result = &call["result"];
        if result.get("error").is_some() || result.get("rejected").is_some() {
            (
                OutputKind::Error,
                one_line(&format!("{summary} (failed)"), 100),
            )
        } else {
            (OutputKind::Tool, summary)
        }
    }
}

/// The text blocks of an `assistant` event.
fn message_text(event: &Value) -> String {
    stream::blocks(event)
        .iter()
        .filter_map(|block| block["text"].as_str())
        .collect::<Vec<_>>()
        .join("")
}

fn error_text(event: &Value) -> String {
    event["result"]
        .as_str()
        .or_else(|| event["error"].as_str())
        .map_or_else(
            || {
                format!(
                    "cursor-agent failed: {}",
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
    use crate::agent::{AgentOutcome, parse_all};

    /// A stream as Cursor's documentation shows it (hand-made: no captured sample).
    const STREAM: &str = r#"{"type":"system","subtype":"init","apiKeySource":"login","cwd":"/work/wt","session_id":"c-123","model":"Auto","permissionMode":"default"}
{"type":"user","message":{"role":"user","content":[{"type":"text","text":"Create hello.txt"}]},"session_id":"c-123"}
{"type":"thinking","subtype":"delta","text":"hm","session_id":"c-123"}
{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"I'll create it."}]},"session_id":"c-123","model_call_id":"m1"}
{"type":"tool_call","subtype":"started","call_id":"call_1","tool_call":{"writeToolCall":{"args":{"path":"/work/wt/hello.txt","fileText":"hi"}}},"session_id":"c-123"}
{"type":"tool_call","subtype":"completed","call_id":"call_1","tool_call":{"writeToolCall":{"args":{"path":"/work/wt/hello.txt","fileText":"hi"},"result":{"success":{}}}},"session_id":"c-123"}
{"type":"tool_call","subtype":"started","call_id":"call_2","tool_call":{"shellToolCall":{"args":{"command":"ls -la"}}},"session_id":"c-123"}
{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Created hello.txt."}]},"session_id":"c-123"}
{"type":"result","subtype":"success","duration_ms":4986,"is_error":false,"result":"I'll create it.Created hello.txt.","session_id":"c-123","request_id":"r1"}"#;

    #[test]
    fn documented_stream_is_ok_without_tokens_or_cost() {
        let (outputs, result) = parse_all(&Cursor, STREAM, "", Some(0), None);
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(result.session_id.as_deref(), Some("c-123"));
        assert_eq!(
            result.final_message.as_deref(),
            Some("I'll create it.Created hello.txt.")
        );
        assert_eq!((result.input_tokens, result.output_tokens), (None, None));
        assert_eq!(result.cost_usd, None);
        assert!(!result.denial);
        let tools: Vec<&str> = outputs
            .iter()
            .filter(|o| o.kind == OutputKind::Tool)
            .map(|o| o.summary.as_str())
            .collect();
        assert_eq!(
            tools,
            ["write hello.txt", "write hello.txt", "shell: ls -la"]
        );
        assert!(
            outputs
                .iter()
                .all(|o| o.session_id.as_deref() == Some("c-123"))
        );
    }

    #[test]
    fn error_result_and_missing_result_fail() {
        let stdout = r#"{"type":"result","subtype":"error","is_error":true,"result":"Usage limit reached","session_id":"c-1"}"#;
        let (_, result) = parse_all(&Cursor, stdout, "", Some(1), None);
        assert_eq!(result.outcome, Some(AgentOutcome::UsageLimit));
        assert_eq!(result.final_message, None);
        assert_eq!(result.error.as_deref(), Some("Usage limit reached"));
        let (_, result) = parse_all(
            &Cursor,
            "",
            "Error: not logged in. Run cursor-agent login\n",
            Some(1),
            None,
        );
        assert_eq!(result.outcome, Some(AgentOutcome::AuthError));
        let (_, result) = parse_all(
            &Cursor,
            "",
            "getaddrinfo ENOTFOUND api2.cursor.sh\n",
            Some(1),
            None,
        );
        assert_eq!(result.outcome, Some(AgentOutcome::Unreachable));
        // The stream may just stop: no result is a failure even on exit 0.
        let (_, result) = parse_all(&Cursor, "", "", Some(0), None);
        assert_eq!(result.outcome, Some(AgentOutcome::AgentError));
    }

    #[test]
    fn junk_and_unknown_events_do_not_break_parsing() {
        let stdout = "oops\n{\"type\":\"surprise\",\"session_id\":\"c-9\"}\n{\"type\":\"tool_call\",\"tool_call\":{\"function\":{\"name\":\"mcp_x\",\"arguments\":\"{\\\"path\\\":\\\"a.txt\\\"}\"}}}";
        let (outputs, result) = parse_all(&Cursor, stdout, "", None, None);
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs[0].kind, OutputKind::Other);
        assert_eq!(outputs[1].summary, "mcp_x a.txt");
        assert_eq!(result.session_id.as_deref(), Some("c-9"));
        assert_eq!(result.outcome, Some(AgentOutcome::AgentError));
        assert_eq!(result.error.as_deref(), Some("was killed without a result"));
    }

    #[test]
    fn argv_fresh_resume_model_and_extra_args() {
        let extra = vec!["--approve-mcps".to_owned()];
        let mut inv = test_invocation(Some("ignored"), &extra);
        assert_eq!(
            Cursor.argv(&inv),
            [
                "-p",
                "do it",
                "--output-format",
                "stream-json",
                "--force",
                "--trust",
                "--workspace",
                "/tmp/wt",
                "--approve-mcps"
            ]
        );
        inv.resume = Some("c-123");
        inv.model = Some("sonnet-4");
        assert_eq!(
            Cursor.argv(&inv)[8..],
            ["--model", "sonnet-4", "--resume", "c-123", "--approve-mcps"]
        );
    }
}
