//! Kimi Code (`kimi`, npm `@moonshot-ai/kimi-code`): AGENTS.md section 7, verified against the
//! real Kimi Code 2.1.0 (samples `kimi-*`). The stream is OpenAI-style messages and `meta`
//! lines, with no tokens and no cost; a failure is exit 1 and one stderr line
//! `error: failed to run prompt: <code>: <message>`, classified by its code. Kimi Code needs
//! Node 22.19 or newer, and the legacy Python `kimi-cli` that also installs `kimi` is a stub that
//! does nothing: [`startup_problem`] tells both apart before a run.

use serde_json::Value;

use super::argv::Argv;
use super::failure::Tail;
use super::stream::{self, Line};
use super::summary::tool_summary;
use super::{
    Adapter, AgentOutcome, AgentResult, Description, Invocation, Output, OutputKind, PromptVia,
    SessionTotals, Sessions, StreamParser, one_line,
};
use crate::mission::Runtime;

/// What is constant about Kimi Code.
pub const DESCRIPTION: Description = Description {
    runtime: Runtime::Kimi,
    binary: "kimi",
    install_hint: "npm install -g @moonshot-ai/kimi-code",
    verified: true,
    tested_version: Some("2.1.0"),
    login_hint: "log in with `kimi` (its config lives under `KIMI_CODE_HOME`, by default `~/.kimi-code`)",
    sessions: Sessions::Reported,
    prompt: PromptVia::Argv,
};

pub struct Kimi;

impl Adapter for Kimi {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn argv(&self, invocation: &Invocation<'_>) -> Vec<String> {
        Argv::print_mode(invocation.prompt, &[])
            .flag("-m", invocation.model)
            .flag("-S", invocation.resume)
            .args(invocation.extra_args)
            .build()
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
    /// A retry for a connection error came: the model service is unreachable, and Kimi Code
    /// would go on retrying for minutes.
    waiting: bool,
    /// stderr, and stdout lines that are not JSON (errors may be plain text there).
    tail: Tail,
}

impl StreamParser for KimiParser {
    fn stdout_line(&mut self, line: &str) -> Vec<Output> {
        let Some(event) = stream::event(line) else {
            self.tail.push(line);
            return Vec::new();
        };
        let mut session_id = None;
        let mut lines: Vec<Line> = Vec::new();
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
                if event["error_name"] == "APIConnectionError" {
                    self.waiting = true;
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
                let text = stream::content_text(&event["content"], "");
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
                one_line(&stream::content_text(&event["content"], ""), 100),
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
        stream::outputs(lines, event, session_id)
    }

    fn ended(&self) -> bool {
        self.resume_hint
    }

    fn waiting_for_network(&self) -> bool {
        self.waiting && !self.resume_hint
    }

    fn stderr_line(&mut self, line: &str) {
        self.tail.push(line);
    }

    fn finish(&mut self, exit_code: Option<i32>) -> AgentResult {
        let result = AgentResult::of_session(self.session_id.clone(), false);
        if exit_code == Some(0) && self.resume_hint {
            return result.succeeded(Some(self.final_text.clone().unwrap_or_default()));
        }
        if let Some((outcome, error)) = classify(&self.tail) {
            return result.failed(outcome, error);
        }
        if exit_code.is_none() && self.waiting {
            let error = format!(
                "it kept retrying a connection error ({}) and was stopped",
                self.last_retry.as_deref().unwrap_or("Connection error.")
            );
            return result.failed(AgentOutcome::Unreachable, error);
        }
        let mut error = self.tail.exit_error(exit_code);
        if let Some(retry) = &self.last_retry {
            error.push_str(&format!("\nlast retry: {retry}"));
        }
        result.failed(AgentOutcome::AgentError, error)
    }
}

/// How to give Kimi Code a model and a key (AGENTS.md section 7).
pub const SETUP_HINT: &str = "give Kimi Code a provider: set `KIMI_MODEL_NAME`, \
    `KIMI_MODEL_API_KEY`, `KIMI_MODEL_PROVIDER_TYPE` and `KIMI_MODEL_BASE_URL` in the profile's \
    `env`, or a `config.toml` with `default_model` and a provider `api_key` under \
    `KIMI_CODE_HOME` (by default `~/.kimi-code`; `kimi` and `/login` write one)";

/// The notice the legacy Python kimi-cli prints for every call.
const LEGACY_NOTICE: &str = "kimi-cli is no longer maintained";

/// Classifies a failure by Kimi Code's own words: the stable `<code>` of
/// `error: failed to run prompt: <code>: <message>` (never by searching the `See log:` path or
/// other text for words), and the setup errors that have no code.
fn classify(tail: &Tail) -> Option<(AgentOutcome, String)> {
    if let Some(line) = tail.lines().find(|l| l.starts_with(LEGACY_NOTICE)) {
        return Some((
            AgentOutcome::AuthError,
            format!(
                "this `kimi` is the legacy Python kimi-cli, a stub that runs nothing ({line}); \
                 install Kimi Code: `npm install -g @moonshot-ai/kimi-code`"
            ),
        ));
    }
    let said = tail
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: failed to run prompt: "))?;
    let code = said
        .split_once(": ")
        .map(|(code, _)| code)
        .filter(|code| code.starts_with("provider.") && !code.contains(' '));
    let outcome = match code {
        Some("provider.auth_error" | "provider.oauth_managed") => AgentOutcome::AuthError,
        Some("provider.rate_limit") => AgentOutcome::UsageLimit,
        Some("provider.connection_error" | "provider.overloaded") => AgentOutcome::Unreachable,
        Some(_) => AgentOutcome::AgentError,
        None if said.contains("has no credential configured")
            || said.starts_with("No model configured") =>
        {
            return Some((AgentOutcome::AuthError, format!("{said}; {SETUP_HINT}")));
        }
        None if said.starts_with("Model \"") && said.contains("is not configured") => {
            return Some((
                AgentOutcome::AuthError,
                format!(
                    "{said} (a profile's `model` is passed as `-m`, which names a \
                     `[models.<alias>]` of config.toml, not a model id; with `KIMI_MODEL_*` set, \
                     leave `model` out)"
                ),
            ));
        }
        None => AgentOutcome::AgentError,
    };
    Some((outcome, said.to_owned()))
}

/// Why the `kimi` at `path` cannot run prompts, from `kimi --version` (its stdout, stderr and
/// whether it succeeded) and the `node --version` on PATH: the legacy Python stub, or a Node
/// too old for Kimi Code. `None` when it can.
pub fn startup_problem(
    path: &std::path::Path,
    succeeded: bool,
    stdout: &str,
    stderr: &str,
    node: Option<&str>,
) -> Option<String> {
    let first = stdout.lines().next().unwrap_or("").trim();
    if let Some(version) = first.strip_prefix("kimi, version ") {
        return Some(format!(
            "`{}` is the legacy Python kimi-cli {version}, which is no longer maintained and runs \
             nothing; install Kimi Code instead: `npm install -g @moonshot-ai/kimi-code` (and \
             remove kimi-cli, e.g. `pip uninstall kimi-cli` or `uv tool uninstall kimi-cli`)",
            path.display()
        ));
    }
    if succeeded {
        return None;
    }
    let old_node = node.and_then(|v| {
        let v = v.trim().trim_start_matches('v');
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next()?, parts.next().unwrap_or(0));
        ((major, minor) < (22, 19)).then(|| v.to_owned())
    });
    if stderr.contains("SyntaxError")
        && let Some(found) = old_node
    {
        return Some(format!(
            "`{}` cannot start: Kimi Code needs Node 22.19 or newer, and the `node` on PATH is \
             {found}; install a newer Node (e.g. with nvm, fnm or your package manager) and run \
             again",
            path.display()
        ));
    }
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect();
    Some(format!(
        "`{} --version` failed, so it cannot start: {}",
        path.display(),
        if said.is_empty() {
            "it printed nothing".to_owned()
        } else {
            said.join(" / ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::argv::test_invocation;
    use crate::agent::parse_all;

    #[test]
    fn a_word_in_the_log_path_does_not_change_the_class() {
        let stderr = "error: failed to run prompt: provider.api_error: 500 boom\nSee log: /home/quota-login-401/kimi-code.log\n";
        let (_, result) = parse_all(&Kimi, "", stderr, Some(1), None);
        assert_eq!(result.outcome, Some(AgentOutcome::AgentError));
    }

    #[test]
    fn argv_fresh_resume_model_and_extra_args() {
        let extra = vec!["--thinking".to_owned()];
        let mut inv = test_invocation(Some("ignored"), &extra);
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
        let session = "session_d9f2ee36-6d32-4057-8d10-d3617e3d19fa";
        inv.resume = Some(session);
        inv.model = Some("mock");
        assert_eq!(
            Kimi.argv(&inv)[4..],
            ["-m", "mock", "-S", session, "--thinking"]
        );
    }
}
