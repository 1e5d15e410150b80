//! Claude Code (`claude`): AGENTS.md section 3.

use std::collections::VecDeque;

use serde_json::Value;

use super::{
    Adapter, AgentOutcome, AgentResult, Invocation, Output, OutputKind, SessionTotals,
    StreamParser, exit_error, names_usage_limit, one_line, push_tail, tool_summary,
};
use crate::mission::Runtime;

/// What claude prints when bypass mode runs as root.
const ROOT_REFUSAL: &str =
    "--dangerously-skip-permissions cannot be used with root/sudo privileges";

pub struct Claude;

impl Adapter for Claude {
    fn runtime(&self) -> Runtime {
        Runtime::Claude
    }

    fn binary(&self) -> &'static str {
        "claude"
    }

    fn install_hint(&self) -> &'static str {
        "npm install -g @anthropic-ai/claude-code"
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
            "--verbose",
            "--permission-mode",
            "bypassPermissions",
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(session) = invocation.resume {
            argv.extend(["--resume".to_owned(), session.to_owned()]);
        } else if let Some(session) = invocation.new_session {
            argv.extend(["--session-id".to_owned(), session.to_owned()]);
        }
        if let Some(model) = invocation.model {
            argv.extend(["--model".to_owned(), model.to_owned()]);
        }
        argv.extend(invocation.extra_args.iter().cloned());
        argv
    }

    fn parser(&self, previous: Option<SessionTotals>) -> Box<dyn StreamParser> {
        Box::new(ClaudeParser {
            previous,
            ..ClaudeParser::default()
        })
    }
}

#[derive(Default)]
struct ClaudeParser {
    previous: Option<SessionTotals>,
    session_id: Option<String>,
    /// The working directory from `init`, to shorten tool paths.
    cwd: Option<String>,
    /// The terminal `result` event.
    result: Option<Value>,
    /// An assistant event with `error: "authentication_failed"`.
    auth_failed: bool,
    /// A `system`/`permission_denied` event.
    denied: bool,
    root_refusal: bool,
    stderr: VecDeque<String>,
}

impl StreamParser for ClaudeParser {
    fn stdout_line(&mut self, line: &str) -> Vec<Output> {
        let Some(event) = serde_json::from_str::<Value>(line)
            .ok()
            .filter(Value::is_object)
        else {
            return Vec::new();
        };
        let session_id = event
            .get("session_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if session_id.is_some() {
            self.session_id.clone_from(&session_id);
        }
        let mut lines: Vec<(OutputKind, String)> = Vec::new();
        match event["type"].as_str().unwrap_or("unknown") {
            "system" => lines.push(self.system(&event)),
            "assistant" => {
                let error = event.get("error").and_then(Value::as_str);
                if error == Some("authentication_failed") {
                    self.auth_failed = true;
                }
                for block in blocks(&event) {
                    lines.push(match block["type"].as_str().unwrap_or("") {
                        "text" => {
                            let kind = if error.is_some() {
                                OutputKind::Error
                            } else {
                                OutputKind::Message
                            };
                            (kind, one_line(block["text"].as_str().unwrap_or(""), 100))
                        }
                        "tool_use" => (
                            OutputKind::Tool,
                            tool_summary(
                                block["name"].as_str().unwrap_or("tool"),
                                &block["input"],
                                self.cwd.as_deref(),
                            ),
                        ),
                        other => (OutputKind::Other, other.to_owned()),
                    });
                }
            }
            "user" => {
                for block in blocks(&event) {
                    if block["type"] != "tool_result" {
                        continue;
                    }
                    let text = one_line(&content_text(&block["content"]), 100);
                    if block["is_error"] == true {
                        lines.push((OutputKind::Error, text));
                    } else {
                        lines.push((OutputKind::Other, text));
                    }
                }
            }
            "result" => {
                lines.push(result_line(&event, self.previous));
                self.result = Some(event.clone());
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
        if line.contains(ROOT_REFUSAL) {
            self.root_refusal = true;
        }
        push_tail(&mut self.stderr, line);
    }

    fn finish(&mut self, exit_code: Option<i32>) -> AgentResult {
        let mut result = AgentResult {
            session_id: self.session_id.clone(),
            denial: self.denied,
            ..AgentResult::default()
        };
        let Some(event) = &self.result else {
            if self.root_refusal {
                result.outcome = Some(AgentOutcome::AgentError);
                result.error = Some(format!(
                    "claude refuses `--permission-mode bypassPermissions` as root \
                     (`{ROOT_REFUSAL}`): set `IS_SANDBOX=1` in the profile's `env`, or use \
                     `--permission-mode acceptEdits` in `args`"
                ));
                return result;
            }
            let error = exit_error(&self.stderr, exit_code);
            result.outcome = Some(if self.auth_failed || error.contains("Not logged in") {
                AgentOutcome::AuthError
            } else {
                AgentOutcome::AgentError
            });
            result.error = Some(error);
            return result;
        };
        if let Some(session) = event["session_id"].as_str() {
            result.session_id = Some(session.to_owned());
        }
        (result.input_tokens, result.output_tokens) = tokens(event);
        result.cost_usd = cost(event, self.previous);
        if event["permission_denials"]
            .as_array()
            .is_some_and(|denials| !denials.is_empty())
        {
            result.denial = true;
        }
        if !failed(event) {
            result.outcome = Some(AgentOutcome::Ok);
            result.final_message = event["result"].as_str().map(str::to_owned);
            return result;
        }
        let text = error_text(event);
        let status = event["api_error_status"].as_u64();
        result.outcome = Some(
            if matches!(status, Some(401 | 403))
                || self.auth_failed
                || text.contains("Not logged in")
            {
                AgentOutcome::AuthError
            } else if event["api_error"] == "connection_failed" {
                AgentOutcome::Unreachable
            } else if status == Some(429)
                || names_usage_limit(&text)
                || names_usage_limit(event["api_error_type"].as_str().unwrap_or(""))
            {
                AgentOutcome::UsageLimit
            } else {
                AgentOutcome::AgentError
            },
        );
        result.error = Some(text);
        result
    }
}

impl ClaudeParser {
    fn system(&mut self, event: &Value) -> (OutputKind, String) {
        match event["subtype"].as_str().unwrap_or("") {
            "init" => {
                self.cwd = event["cwd"].as_str().map(str::to_owned);
                (
                    OutputKind::Other,
                    format!(
                        "session started: model {}, permission mode {}",
                        event["model"].as_str().unwrap_or("?"),
                        event["permissionMode"].as_str().unwrap_or("?")
                    ),
                )
            }
            "api_retry" => {
                let error = event["error"].as_str().unwrap_or("error");
                let why = match event["error_status"].as_u64() {
                    Some(status) => format!("{error} (HTTP {status})"),
                    None => format!("waiting for network ({error})"),
                };
                (
                    OutputKind::Error,
                    format!(
                        "API retry {}/{}: {why}",
                        event["attempt"], event["max_retries"]
                    ),
                )
            }
            "permission_denied" => {
                self.denied = true;
                (
                    OutputKind::Error,
                    format!(
                        "permission denied: {}",
                        event["tool_name"].as_str().unwrap_or("tool")
                    ),
                )
            }
            other => (OutputKind::Other, format!("system {other}")),
        }
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

/// `subtype` is "success" even on API errors: `is_error` decides.
fn failed(event: &Value) -> bool {
    event["is_error"] == true
        || event["subtype"]
            .as_str()
            .is_some_and(|s| s.starts_with("error"))
}

/// The CLI's own error text: `result`, else `errors[]`, else the subtype.
fn error_text(event: &Value) -> String {
    if let Some(text) = event["result"].as_str().filter(|text| !text.is_empty()) {
        return text.to_owned();
    }
    let errors: Vec<String> = event["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if errors.is_empty() {
        format!(
            "claude failed: {}",
            event["subtype"].as_str().unwrap_or("error")
        )
    } else {
        errors.join("; ")
    }
}

/// Tokens of this invocation: all prompt tokens (cached included) and output tokens.
fn tokens(event: &Value) -> (Option<u64>, Option<u64>) {
    let usage = &event["usage"];
    let input = usage["input_tokens"].as_u64().map(|input| {
        input
            + usage["cache_creation_input_tokens"].as_u64().unwrap_or(0)
            + usage["cache_read_input_tokens"].as_u64().unwrap_or(0)
    });
    (input, usage["output_tokens"].as_u64())
}

/// `total_cost_usd` covers the whole session: subtract what earlier attempts reported.
fn cost(event: &Value, previous: Option<SessionTotals>) -> Option<f64> {
    let total = event["total_cost_usd"].as_f64()?;
    let before = previous.map_or(0.0, |previous| previous.cost_usd);
    Some((total - before).max(0.0))
}

fn result_line(event: &Value, previous: Option<SessionTotals>) -> (OutputKind, String) {
    if failed(event) {
        return (OutputKind::Error, one_line(&error_text(event), 100));
    }
    let (input, output) = tokens(event);
    let mut summary = format!(
        "done: {} in / {} out tokens",
        input.unwrap_or(0),
        output.unwrap_or(0)
    );
    if let Some(cost) = cost(event, previous) {
        summary.push_str(&format!(", ${cost:.4}"));
    }
    (OutputKind::Usage, summary)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::agent::parse_all;

    macro_rules! sample {
        ($case:literal) => {
            crate::agent::parse_sample(&Claude, $case, None)
        };
        ($case:literal, $previous:expr) => {
            crate::agent::parse_sample(&Claude, $case, $previous)
        };
    }

    fn invocation<'a>(extra_args: &'a [String]) -> Invocation<'a> {
        Invocation {
            prompt: "do it",
            worktree: Path::new("/tmp/wt"),
            model: None,
            resume: None,
            new_session: None,
            extra_args,
        }
    }

    #[test]
    fn bypass_sample_is_ok_with_tokens_and_cost() {
        let (outputs, result) = sample!("claude-bypass", None);
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(
            result.session_id.as_deref(),
            Some("ab1bbae7-87b5-4d9f-b309-ec108fc37550")
        );
        assert!(
            result
                .final_message
                .unwrap()
                .starts_with("Created hello_claude.txt.")
        );
        assert_eq!(
            (result.input_tokens, result.output_tokens),
            (Some(200), Some(40))
        );
        assert!((result.cost_usd.unwrap() - 0.0016).abs() < 1e-9);
        assert!(!result.denial);
        assert_eq!(result.error, None);
        let tool = outputs.iter().find(|o| o.kind == OutputKind::Tool).unwrap();
        assert_eq!(tool.summary, "Write hello_claude.txt");
        assert!(outputs.iter().all(|o| o.session_id.is_some()));
        assert!(outputs.iter().any(|o| o.kind == OutputKind::Message));
        assert_eq!(outputs.last().unwrap().kind, OutputKind::Usage);
    }

    #[test]
    fn resume_sample_costs_only_this_invocation() {
        let previous = SessionTotals {
            input_tokens: 200,
            output_tokens: 40,
            cost_usd: 0.0016,
        };
        let (_, result) = sample!("claude-resume", Some(previous));
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(
            result.session_id.as_deref(),
            Some("ab1bbae7-87b5-4d9f-b309-ec108fc37550")
        );
        assert!(
            result
                .final_message
                .unwrap()
                .starts_with("Created second_claude.txt.")
        );
        assert_eq!(
            (result.input_tokens, result.output_tokens),
            (Some(200), Some(40))
        );
        assert!((result.cost_usd.unwrap() - 0.0016).abs() < 1e-9);
    }

    #[test]
    fn shell_sample_names_the_command() {
        let (outputs, result) = sample!("claude-shell", None);
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(
            result.session_id.as_deref(),
            Some("7e072f00-be70-42e0-83c0-da395fcea5a7")
        );
        assert_eq!(
            result.final_message.as_deref(),
            Some("Created hello_claude.txt. (tool said: (Bash completed with no output))")
        );
        let tool = outputs.iter().find(|o| o.kind == OutputKind::Tool).unwrap();
        assert!(
            tool.summary
                .starts_with("Bash: printf '%s\\n' medley-acceptance-ok > ")
        );
    }

    #[test]
    fn acceptedits_sample_is_ok() {
        let (_, result) = sample!("claude-acceptedits", None);
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(
            result.session_id.as_deref(),
            Some("a9302da1-81c3-419b-aa11-1040bb272438")
        );
        assert_eq!(
            (result.input_tokens, result.output_tokens),
            (Some(200), Some(40))
        );
        assert!(!result.denial);
    }

    #[test]
    fn json_sample_is_a_single_result() {
        let (outputs, result) = sample!("claude-json", None);
        assert_eq!(outputs.len(), 1);
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(
            result.session_id.as_deref(),
            Some("bc8e6d89-1d3b-4008-ad37-21de5df5fbf5")
        );
        assert!(
            result
                .final_message
                .unwrap()
                .starts_with("Created hello_claude.txt.")
        );
        assert_eq!(
            (result.input_tokens, result.output_tokens),
            (Some(200), Some(40))
        );
        assert!((result.cost_usd.unwrap() - 0.0016).abs() < 1e-9);
    }

    #[test]
    fn default_denied_sample_is_ok_with_denial() {
        let (outputs, result) = sample!("claude-default-denied", None);
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert!(result.denial);
        assert_eq!(
            result.session_id.as_deref(),
            Some("da91e2bb-adfe-4ed4-b35c-fc4bdb9104fc")
        );
        assert!(
            outputs
                .iter()
                .any(|o| o.summary == "permission denied: Write")
        );
    }

    #[test]
    fn auth_sample_is_auth_error() {
        let (_, result) = sample!("claude-401", None);
        assert_eq!(result.outcome, Some(AgentOutcome::AuthError));
        assert_eq!(
            result.session_id.as_deref(),
            Some("598f8e1d-7d71-422f-b2bc-75877e06d167")
        );
        assert_eq!(result.final_message, None);
        assert_eq!(
            result.error.as_deref(),
            Some("Invalid API key · Fix external API key")
        );
        assert_eq!(result.cost_usd, Some(0.0));
    }

    #[test]
    fn unreachable_sample_is_unreachable() {
        let (_, result) = sample!("claude-unreachable", None);
        assert_eq!(result.outcome, Some(AgentOutcome::Unreachable));
        assert_eq!(
            result.session_id.as_deref(),
            Some("5a508fc1-62b0-48a1-bc45-85c0c83c50af")
        );
        assert_eq!(result.final_message, None);
        assert!(result.error.unwrap().contains("ECONNREFUSED"));
    }

    #[test]
    fn root_refusal_says_how_to_fix_it() {
        let stderr = "Error: --dangerously-skip-permissions cannot be used with root/sudo \
                      privileges for security reasons\n";
        let (outputs, result) = parse_all(&Claude, "", stderr, Some(1), None);
        assert!(outputs.is_empty());
        assert_eq!(result.outcome, Some(AgentOutcome::AgentError));
        assert!(result.error.unwrap().contains(
            "set `IS_SANDBOX=1` in the profile's `env`, or use `--permission-mode acceptEdits` in `args`"
        ));
    }

    #[test]
    fn no_result_is_agent_error_with_stderr() {
        let (_, result) = parse_all(&Claude, "", "boom\n", Some(1), None);
        assert_eq!(result.outcome, Some(AgentOutcome::AgentError));
        assert_eq!(
            result.error.as_deref(),
            Some("exited with code 1 without a result:\nboom")
        );
        let (_, result) = parse_all(
            &Claude,
            "",
            "Not logged in · Please run /login\n",
            Some(1),
            None,
        );
        assert_eq!(result.outcome, Some(AgentOutcome::AuthError));
    }

    #[test]
    fn error_subtypes_and_limits_fail() {
        let max_turns = r#"{"type":"result","subtype":"error_max_turns","is_error":true,"errors":["max turns reached"]}"#;
        let (_, result) = parse_all(&Claude, max_turns, "", Some(1), None);
        assert_eq!(result.outcome, Some(AgentOutcome::AgentError));
        assert_eq!(result.error.as_deref(), Some("max turns reached"));
        let limit = r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":429,"result":"API Error: Rate limit reached"}"#;
        let (_, result) = parse_all(&Claude, limit, "", Some(1), None);
        assert_eq!(result.outcome, Some(AgentOutcome::UsageLimit));
    }

    #[test]
    fn junk_and_unknown_events_do_not_break_parsing() {
        let stdout = "not json\n{\"type\":\"rate_limit_event\",\"session_id\":\"s1\"}\n{\"type\":\"brand_new\"}\n\
                      {\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"hi\",\"session_id\":\"s1\"}";
        let (outputs, result) = parse_all(&Claude, stdout, "", Some(0), None);
        assert_eq!(outputs.len(), 3);
        assert_eq!(outputs[0].kind, OutputKind::Other);
        assert_eq!(outputs[0].session_id.as_deref(), Some("s1"));
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(result.final_message.as_deref(), Some("hi"));
        assert_eq!(result.cost_usd, None);
    }

    #[test]
    fn argv_fresh_resume_model_and_extra_args() {
        let extra = vec!["--permission-mode".to_owned(), "acceptEdits".to_owned()];
        let mut inv = invocation(&extra);
        inv.new_session = Some("new-id");
        assert_eq!(
            Claude.argv(&inv),
            [
                "-p",
                "do it",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "bypassPermissions",
                "--session-id",
                "new-id",
                "--permission-mode",
                "acceptEdits"
            ]
        );
        inv.resume = Some("old-id");
        inv.model = Some("sonnet");
        let argv = Claude.argv(&inv);
        assert_eq!(
            argv[7..],
            [
                "--resume",
                "old-id",
                "--model",
                "sonnet",
                "--permission-mode",
                "acceptEdits"
            ]
        );
        assert!(!argv.contains(&"--session-id".to_owned()));
    }
}
