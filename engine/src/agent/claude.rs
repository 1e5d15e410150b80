//! Claude Code (`claude`): AGENTS.md section 3.

use serde_json::Value;

use super::argv::Argv;
use super::failure::{Tail, names_usage_limit};
use super::stream::{self, Line};
use super::summary::done;
use super::{
    Adapter, AgentOutcome, AgentResult, Description, Invocation, Output, OutputKind, PromptVia,
    SessionTotals, Sessions, StreamParser, one_line,
};
use crate::mission::Runtime;

/// What is constant about Claude Code.
pub const DESCRIPTION: Description = Description {
    runtime: Runtime::Claude,
    binary: "claude",
    install_hint: "npm install -g @anthropic-ai/claude-code",
    verified: true,
    tested_version: Some("2.1.330"),
    login_hint: "log in with `claude` (`/login`), or set `ANTHROPIC_API_KEY` in your environment or the profile's `env`",
    sessions: Sessions::PreAssigned,
    prompt: PromptVia::Argv,
};

/// What claude prints when bypass mode runs as root.
const ROOT_REFUSAL: &str =
    "--dangerously-skip-permissions cannot be used with root/sudo privileges";

pub struct Claude;

impl Adapter for Claude {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn argv(&self, invocation: &Invocation<'_>) -> Vec<String> {
        let flags = ["--verbose", "--permission-mode", "bypassPermissions"];
        Argv::print_mode(invocation.prompt, &flags)
            .resume_or_assign(invocation)
            .flag("--model", invocation.model)
            .args(invocation.extra_args)
            .build()
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
    stderr: Tail,
}

impl StreamParser for ClaudeParser {
    fn stdout_line(&mut self, line: &str) -> Vec<Output> {
        let Some(event) = stream::event(line) else {
            return Vec::new();
        };
        let session_id = stream::session_id(&event, &mut self.session_id);
        let mut lines: Vec<Line> = Vec::new();
        match stream::event_type(&event) {
            "system" => lines.push(self.system(&event)),
            "assistant" => {
                let error = event.get("error").and_then(Value::as_str);
                if error == Some("authentication_failed") {
                    self.auth_failed = true;
                }
                let text_kind = if error.is_some() {
                    OutputKind::Error
                } else {
                    OutputKind::Message
                };
                for block in stream::blocks(&event) {
                    lines.push(stream::block_line(block, self.cwd.as_deref(), |_| {
                        text_kind
                    }));
                }
            }
            "user" => lines.extend(stream::tool_results(&event)),
            "result" => {
                lines.push(result_line(&event, self.previous));
                self.result = Some(event.clone());
            }
            other => lines.push((OutputKind::Other, other.to_owned())),
        }
        stream::outputs_or_type(lines, event, session_id)
    }

    fn ended(&self) -> bool {
        self.result.is_some()
    }

    fn stderr_line(&mut self, line: &str) {
        if line.contains(ROOT_REFUSAL) {
            self.root_refusal = true;
        }
        self.stderr.push(line);
    }

    fn finish(&mut self, exit_code: Option<i32>) -> AgentResult {
        let mut result = AgentResult::of_session(self.session_id.clone(), self.denied);
        let Some(event) = &self.result else {
            if self.root_refusal {
                return result.failed(
                    AgentOutcome::AgentError,
                    format!(
                        "claude refuses `--permission-mode bypassPermissions` as root \
                         (`{ROOT_REFUSAL}`): set `IS_SANDBOX=1` in the profile's `env`, or use \
                         `--permission-mode acceptEdits` in `args`"
                    ),
                );
            }
            let error = self.stderr.exit_error(exit_code);
            let outcome = if self.auth_failed || error.contains("Not logged in") {
                AgentOutcome::AuthError
            } else {
                AgentOutcome::AgentError
            };
            return result.failed(outcome, error);
        };
        stream::result_session(event, &mut result);
        (result.input_tokens, result.output_tokens) = tokens(event);
        result.cost_usd = cost(event, self.previous);
        if !failed(event) {
            return result.succeeded(event["result"].as_str().map(str::to_owned));
        }
        let text = error_text(event);
        let status = event["api_error_status"].as_u64();
        let outcome = if matches!(status, Some(401 | 403))
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
        };
        result.failed(outcome, text)
    }
}

impl ClaudeParser {
    fn system(&mut self, event: &Value) -> Line {
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

fn result_line(event: &Value, previous: Option<SessionTotals>) -> Line {
    if failed(event) {
        return (OutputKind::Error, one_line(&error_text(event), 100));
    }
    let (input, output) = tokens(event);
    let mut summary = done(input, output);
    if let Some(cost) = cost(event, previous) {
        summary.push_str(&format!(", ${cost:.4}"));
    }
    (OutputKind::Usage, summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::argv::test_invocation;
    use crate::agent::parse_all;

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
        let mut inv = test_invocation(Some("new-id"), &extra);
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
