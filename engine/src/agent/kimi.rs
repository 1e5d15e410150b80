//! Kimi Code (`kimi`, npm `@moonshot-ai/kimi-code`): AGENTS.md section 7. Not checked against
//! the real CLI: the stream follows its source (OpenAI-style messages and `meta` lines; no
//! tokens, no cost).

use std::collections::VecDeque;

use serde_json::Value;

use super::{
    Adapter, AgentOutcome, AgentResult, Invocation, Output, OutputKind, SessionTotals,
    StreamParser, exit_error, guess_failure, one_line, push_tail, tool_summary,
};
use crate::mission::Runtime;

pub struct Kimi;

impl Adapter for Kimi {
    fn runtime(&self) -> Runtime {
        Runtime::Kimi
    }

    fn binary(&self) -> &'static str {
        "kimi"
    }

    fn install_hint(&self) -> &'static str {
        "npm install -g @moonshot-ai/kimi-code"
    }

    fn verified(&self) -> bool {
        false
    }

    fn resumable(&self) -> bool {
        true
    }

    fn argv(&self, invocation: &Invocation<'_>) -> Vec<String> {
        let mut argv: Vec<String> = ["-p", invocation.prompt, "--output-format", "stream-json"]
            .map(str::to_owned)
            .to_vec();
        if let Some(model) = invocation.model {
            argv.extend(["-m".to_owned(), model.to_owned()]);
        }
        if let Some(session) = invocation.resume {
            argv.extend(["-S".to_owned(), session.to_owned()]);
        }
        argv.extend(invocation.extra_args.iter().cloned());
        argv
    }

    fn parser(&self, _previous: Option<SessionTotals>) -> Box<dyn StreamParser> {
        Box::new(KimiParser::default())
    }
}

#[derive(Default)]
struct KimiParser {
    session_id: Option<String>,
    /// The terminal `session.resume_hint` line came.
    resume_hint: bool,
    /// The last assistant message without tool calls.
    final_text: Option<String>,
    /// The last `turn.step.retrying` error.
    last_retry: Option<String>,
    /// stderr, and stdout lines that are not JSON (errors may be plain text there).
    tail: VecDeque<String>,
}

impl StreamParser for KimiParser {
    fn stdout_line(&mut self, line: &str) -> Vec<Output> {
        let Some(event) = serde_json::from_str::<Value>(line)
            .ok()
            .filter(Value::is_object)
        else {
            push_tail(&mut self.tail, line);
            return Vec::new();
        };
        let mut session_id = None;
        let mut lines: Vec<(OutputKind, String)> = Vec::new();
        match (
            event["role"].as_str().unwrap_or(""),
            event["type"].as_str().unwrap_or(""),
        ) {
            ("meta", "system.version") => lines.push((
                OutputKind::Other,
                format!("kimi {}", event["version"].as_str().unwrap_or("?")),
            )),
            ("meta", "turn.step.retrying") => {
                let mut error = event["error_message"]
                    .as_str()
                    .unwrap_or("error")
                    .to_owned();
                if let Some(status) = event["status_code"].as_u64() {
                    error.push_str(&format!(" (status {status})"));
                }
                lines.push((
                    OutputKind::Error,
                    one_line(
                        &format!(
                            "retrying {}/{}: {error}",
                            event["next_attempt"], event["max_attempts"]
                        ),
                        100,
                    ),
                ));
                self.last_retry = Some(error);
            }
            ("meta", "session.resume_hint") => {
                session_id = event["session_id"].as_str().map(str::to_owned);
                self.session_id.clone_from(&session_id);
                self.resume_hint = true;
                lines.push((OutputKind::Other, "session saved".to_owned()));
            }
            ("assistant", _) => {
                let text = content_text(&event["content"]);
                let calls = event["tool_calls"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                if !text.is_empty() {
                    lines.push((OutputKind::Message, one_line(&text, 100)));
                }
                if calls.is_empty() {
                    self.final_text = Some(text);
                }
                for call in calls {
                    let function = &call["function"];
                    let arguments = function["arguments"]
                        .as_str()
                        .and_then(|text| serde_json::from_str::<Value>(text).ok())
                        .unwrap_or(Value::Null);
                    lines.push((
                        OutputKind::Tool,
                        tool_summary(
                            function["name"].as_str().unwrap_or("tool"),
                            &arguments,
                            None,
                        ),
                    ));
                }
            }
            ("tool", _) => lines.push((
                OutputKind::Other,
                one_line(&content_text(&event["content"]), 100),
            )),
            (role, kind) => {
                let name = format!("{role} {kind}");
                let name = name.trim();
                lines.push((
                    OutputKind::Other,
                    if name.is_empty() { "unknown" } else { name }.to_owned(),
                ));
            }
        }
        if lines.is_empty() {
            lines.push((OutputKind::Other, "assistant".to_owned()));
        }
        super::outputs(lines, event, session_id)
    }

    fn ended(&self) -> bool {
        self.resume_hint
    }

    fn stderr_line(&mut self, line: &str) {
        push_tail(&mut self.tail, line);
    }

    fn finish(&mut self, exit_code: Option<i32>) -> AgentResult {
        let mut result = AgentResult {
            session_id: self.session_id.clone(),
            ..AgentResult::default()
        };
        if exit_code == Some(0) && self.resume_hint {
            result.outcome = Some(AgentOutcome::Ok);
            result.final_message = Some(self.final_text.clone().unwrap_or_default());
            return result;
        }
        let mut error = exit_error(&self.tail, exit_code);
        if let Some(retry) = &self.last_retry {
            error.push_str(&format!("\nlast retry: {retry}"));
        }
        result.outcome = Some(guess_failure(&error));
        result.error = Some(error);
        result
    }
}

/// A message's content: a string, or text parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::agent::parse_all;

    /// A stream as Kimi Code's source writes it (hand-made: no captured sample).
    const STREAM: &str = r#"{"role":"meta","type":"system.version","version":"0.38.0"}
{"role":"assistant","content":"I'll create the file.","tool_calls":[{"type":"function","id":"tc_1","function":{"name":"WriteFile","arguments":"{\"path\":\"hello_kimi.txt\",\"content\":\"ok\"}"}}]}
{"role":"tool","tool_call_id":"tc_1","content":"Wrote hello_kimi.txt"}
{"role":"meta","type":"turn.step.retrying","failed_attempt":1,"next_attempt":2,"max_attempts":3,"delay_ms":500,"error_name":"APIError","error_message":"server overloaded","status_code":529}
{"role":"assistant","tool_calls":[{"type":"function","id":"tc_2","function":{"name":"Shell","arguments":"{\"command\":\"cat hello_kimi.txt\"}"}}]}
{"role":"tool","tool_call_id":"tc_2","content":"ok"}
{"role":"assistant","content":"Created hello_kimi.txt."}
{"role":"meta","type":"session.resume_hint","session_id":"k-42","command":"kimi -r k-42","content":"To resume this session: kimi -r k-42"}"#;

    #[test]
    fn documented_stream_is_ok_without_tokens_or_cost() {
        let (outputs, result) = parse_all(&Kimi, STREAM, "thinking...\n", Some(0), None);
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(result.session_id.as_deref(), Some("k-42"));
        assert_eq!(
            result.final_message.as_deref(),
            Some("Created hello_kimi.txt.")
        );
        assert_eq!((result.input_tokens, result.output_tokens), (None, None));
        assert_eq!(result.cost_usd, None);
        let tools: Vec<&str> = outputs
            .iter()
            .filter(|o| o.kind == OutputKind::Tool)
            .map(|o| o.summary.as_str())
            .collect();
        assert_eq!(
            tools,
            ["WriteFile hello_kimi.txt", "Shell: cat hello_kimi.txt"]
        );
        assert!(outputs.iter().any(|o| o.kind == OutputKind::Error));
        assert_eq!(outputs.last().unwrap().session_id.as_deref(), Some("k-42"));
    }

    #[test]
    fn no_resume_hint_or_nonzero_exit_fails() {
        let retry = r#"{"role":"meta","type":"turn.step.retrying","next_attempt":2,"max_attempts":2,"error_message":"Invalid Authentication","status_code":401}"#;
        let (_, result) = parse_all(&Kimi, retry, "", Some(1), None);
        assert_eq!(result.outcome, Some(AgentOutcome::AuthError));
        assert_eq!(result.final_message, None);
        let (_, result) = parse_all(
            &Kimi,
            "",
            "connect ECONNREFUSED 127.0.0.1:443\n",
            Some(1),
            None,
        );
        assert_eq!(result.outcome, Some(AgentOutcome::Unreachable));
        let (_, result) = parse_all(
            &Kimi,
            "{\"role\":\"assistant\",\"content\":\"hi\"}",
            "",
            Some(0),
            None,
        );
        assert_eq!(result.outcome, Some(AgentOutcome::AgentError));
        assert_eq!(
            result.error.as_deref(),
            Some("exited with code 0 without a result")
        );
    }

    #[test]
    fn junk_and_unknown_events_do_not_break_parsing() {
        let stdout =
            "Error: quota exceeded\n{\"role\":\"meta\",\"type\":\"brand.new\"}\n{\"odd\":1}";
        let (outputs, result) = parse_all(&Kimi, stdout, "", Some(1), None);
        assert_eq!(outputs.len(), 2);
        assert!(outputs.iter().all(|o| o.kind == OutputKind::Other));
        // Plain-text errors on stdout count.
        assert_eq!(result.outcome, Some(AgentOutcome::UsageLimit));
    }

    #[test]
    fn argv_fresh_resume_model_and_extra_args() {
        let extra = vec!["--thinking".to_owned()];
        let mut inv = Invocation {
            prompt: "do it",
            worktree: Path::new("/tmp/wt"),
            model: None,
            resume: None,
            new_session: Some("ignored"),
            extra_args: &extra,
        };
        assert_eq!(
            Kimi.argv(&inv),
            [
                "-p",
                "do it",
                "--output-format",
                "stream-json",
                "--thinking"
            ]
        );
        inv.resume = Some("k-42");
        inv.model = Some("kimi-k2");
        assert_eq!(
            Kimi.argv(&inv)[4..],
            ["-m", "kimi-k2", "-S", "k-42", "--thinking"]
        );
    }
}
