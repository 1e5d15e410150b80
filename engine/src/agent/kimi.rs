//! Kimi Code (`kimi`, npm `@moonshot-ai/kimi-code`): AGENTS.md section 7, verified against the
//! real Kimi Code 2.1.0 (samples `kimi-*`). The stream is OpenAI-style messages and `meta`
//! lines, with no tokens and no cost; a failure is exit 1 and one stderr line
//! `error: failed to run prompt: <code>: <message>`, classified by its code. Kimi Code needs
//! Node 22.19 or newer, and the legacy Python `kimi-cli` that also installs `kimi` is a stub that
//! does nothing: [`startup_problem`] tells both apart before a run.

use std::collections::VecDeque;

use serde_json::Value;

use super::{
    Adapter, AgentOutcome, AgentResult, Invocation, Output, OutputKind, SessionTotals,
    StreamParser, exit_error, one_line, push_tail, tool_summary,
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
        true
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
    /// A retry for a connection error came: the model service is unreachable, and Kimi Code
    /// would go on retrying for minutes.
    waiting: bool,
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

    fn waiting_for_network(&self) -> bool {
        self.waiting && !self.resume_hint
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
        if let Some((outcome, error)) = classify(&self.tail) {
            result.outcome = Some(outcome);
            result.error = Some(error);
            return result;
        }
        if exit_code.is_none() && self.waiting {
            result.outcome = Some(AgentOutcome::Unreachable);
            result.error = Some(format!(
                "it kept retrying a connection error ({}) and was stopped",
                self.last_retry.as_deref().unwrap_or("Connection error.")
            ));
            return result;
        }
        let mut error = exit_error(&self.tail, exit_code);
        if let Some(retry) = &self.last_retry {
            error.push_str(&format!("\nlast retry: {retry}"));
        }
        result.outcome = Some(AgentOutcome::AgentError);
        result.error = Some(error);
        result
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
fn classify(tail: &VecDeque<String>) -> Option<(AgentOutcome, String)> {
    if let Some(line) = tail.iter().find(|l| l.starts_with(LEGACY_NOTICE)) {
        return Some((
            AgentOutcome::AuthError,
            format!(
                "this `kimi` is the legacy Python kimi-cli, a stub that runs nothing ({line}); \
                 install Kimi Code: `npm install -g @moonshot-ai/kimi-code`"
            ),
        ));
    }
    let said = tail
        .iter()
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
    use crate::agent::{parse_all, parse_sample};

    /// Every captured stream of the real Kimi Code 2.1.0: outcome, session id, final message and
    /// the words of the error.
    #[test]
    fn every_captured_sample_parses() {
        use AgentOutcome::*;
        let session = "session_d9f2ee36-6d32-4057-8d10-d3617e3d19fa";
        // The case, its outcome, session id, final message and a part of its error.
        type Case<'a> = (
            &'a str,
            AgentOutcome,
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
        );
        let cases: &[Case<'_>] = &[
            (
                "kimi-ok",
                Ok,
                Some(session),
                Some("Created hello_kimi.txt."),
                "",
            ),
            (
                "kimi-resume",
                Ok,
                Some(session),
                Some("Created second_kimi.txt."),
                "",
            ),
            ("kimi-env", Ok, None, Some("Created hello_kimi.txt."), ""),
            (
                "kimi-401",
                AuthError,
                None,
                None,
                "provider.auth_error: 401 Incorrect API key",
            ),
            (
                "kimi-429",
                UsageLimit,
                None,
                None,
                "provider.rate_limit: 429",
            ),
            (
                "kimi-unreachable",
                Unreachable,
                None,
                None,
                "provider.connection_error",
            ),
            (
                "kimi-unreachable-defaultretries",
                Unreachable,
                None,
                None,
                "provider.connection_error",
            ),
            ("kimi-nokey", AuthError, None, None, "KIMI_MODEL_API_KEY"),
            ("kimi-noconfig", AuthError, None, None, "KIMI_MODEL_NAME"),
            ("kimi-model-bad", AuthError, None, None, "not a model id"),
            ("kimi-env-m", AuthError, None, None, "leave `model` out"),
            ("kimi-resume-unknown", AgentError, None, None, "not found"),
            (
                "kimi-resume-othercwd",
                AgentError,
                None,
                None,
                "different directory",
            ),
        ];
        for (case, outcome, session_id, message, error) in cases {
            let (outputs, result) = parse_sample(&Kimi, case, None);
            assert_eq!(result.outcome, Some(*outcome), "{case}: {result:?}");
            if let Some(id) = session_id {
                assert_eq!(result.session_id.as_deref(), Some(*id), "{case}");
            }
            assert_eq!(result.final_message.as_deref(), *message, "{case}");
            let said = result.error.clone().unwrap_or_default();
            assert!(said.contains(error), "{case}: {said}");
            // The `See log:` path is never part of what is said.
            assert!(!said.contains("See log"), "{case}: {said}");
            // Kimi Code reports no usage: unknown, never zero.
            assert_eq!((result.input_tokens, result.output_tokens), (None, None));
            assert_eq!(result.cost_usd, None);
            assert!(!outputs.is_empty(), "{case}");
        }
    }

    #[test]
    fn tools_are_named_as_the_real_cli_names_them() {
        let (outputs, _) = parse_sample(&Kimi, "kimi-ok", None);
        let tools: Vec<&str> = outputs
            .iter()
            .filter(|o| o.kind == OutputKind::Tool)
            .map(|o| o.summary.as_str())
            .collect();
        assert_eq!(tools.len(), 1);
        assert!(tools[0].starts_with("Write "), "{tools:?}");
        assert!(tools[0].ends_with("hello_kimi.txt"), "{tools:?}");
    }

    #[test]
    fn a_connection_retry_is_waiting_for_the_network() {
        let stdout = fs_err::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/samples/kimi-unreachable-defaultretries.stdout.jsonl"
        ))
        .unwrap();
        let mut parser = Kimi.parser(None);
        let mut lines = stdout.lines();
        parser.stdout_line(lines.next().unwrap());
        assert!(!parser.waiting_for_network());
        parser.stdout_line(lines.next().unwrap());
        assert!(parser.waiting_for_network());
        // Stopped by medley while it retries: unreachable, and it says why.
        let result = parser.finish(None);
        assert_eq!(result.outcome, Some(AgentOutcome::Unreachable));
        assert!(result.error.unwrap().contains("Connection error."));
        // A rate-limit retry is not a network wait.
        let mut parser = Kimi.parser(None);
        for line in fs_err::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/samples/kimi-429.stdout.jsonl"
        ))
        .unwrap()
        .lines()
        {
            parser.stdout_line(line);
        }
        assert!(!parser.waiting_for_network());
    }

    #[test]
    fn a_word_in_the_log_path_does_not_change_the_class() {
        let stderr = "error: failed to run prompt: provider.api_error: 500 boom\nSee log: /home/quota-login-401/kimi-code.log\n";
        let (_, result) = parse_all(&Kimi, "", stderr, Some(1), None);
        assert_eq!(result.outcome, Some(AgentOutcome::AgentError));
    }

    #[test]
    fn the_legacy_stub_is_never_taken_for_a_result() {
        let stdout = fs_err::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/samples/kimi-legacy-print.stdout.txt"
        ))
        .unwrap();
        let (_, result) = parse_all(&Kimi, &stdout, "", Some(0), None);
        // Not an agent error to retry: it moves on at once, saying what to install.
        assert_eq!(result.outcome, Some(AgentOutcome::AuthError));
        assert!(result.error.unwrap().contains("@moonshot-ai/kimi-code"));
    }

    #[test]
    fn startup_problems_name_the_legacy_stub_and_an_old_node() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/samples");
        let read = |f: &str| fs_err::read_to_string(format!("{dir}/{f}")).unwrap();
        let kimi = Path::new("/usr/bin/kimi");
        assert_eq!(
            startup_problem(
                kimi,
                true,
                &read("kimi-version.stdout.txt"),
                "",
                Some("v22.22.0")
            ),
            None
        );
        let legacy = startup_problem(
            kimi,
            true,
            &read("kimi-legacy-version.stdout.txt"),
            "",
            None,
        )
        .unwrap();
        assert!(legacy.contains("legacy Python kimi-cli 1.52.0"), "{legacy}");
        assert!(
            legacy.contains("npm install -g @moonshot-ai/kimi-code"),
            "{legacy}"
        );
        let syntax = "file:///x/kimi.js:1\nSyntaxError: The requested module 'node:zlib' does not provide an export named 'zstdCompressSync'\n";
        let node = startup_problem(kimi, false, "", syntax, Some("v20.20.2\n")).unwrap();
        assert!(node.contains("needs Node 22.19 or newer"), "{node}");
        assert!(node.contains("20.20.2"), "{node}");
        let other = startup_problem(kimi, false, "", "boom\n", Some("v22.22.0")).unwrap();
        assert!(other.contains("boom"), "{other}");
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
        let session = "session_d9f2ee36-6d32-4057-8d10-d3617e3d19fa";
        inv.resume = Some(session);
        inv.model = Some("mock");
        assert_eq!(
            Kimi.argv(&inv)[4..],
            ["-m", "mock", "-S", session, "--thinking"]
        );
    }
}
