//! A `command` profile: any program that reads the prompt on stdin and answers on stdout
//! (AGENTS.md section 10, last row). No session, no resume, no tokens, no cost.

use serde_json::Value;

use super::failure::Tail;
use super::{
    Adapter, AgentOutcome, AgentResult, Description, Invocation, Output, OutputKind, PromptVia,
    SessionTotals, Sessions, StreamParser, one_line,
};
use crate::mission::Runtime;

/// What is constant about a `command` profile.
pub const DESCRIPTION: Description = Description {
    runtime: Runtime::Command,
    // The program varies by profile: see [`CommandAdapter::program`].
    binary: "command",
    install_hint: "put the program on PATH",
    verified: true,
    tested_version: None,
    login_hint: "check the program's own credentials",
    sessions: Sessions::None,
    prompt: PromptVia::Stdin,
};

/// The profile's `program`: the program, then its arguments.
#[derive(Debug, Clone, Default)]
pub struct CommandAdapter {
    pub program: Vec<String>,
}

impl CommandAdapter {
    pub fn new(program: Vec<String>) -> Self {
        CommandAdapter { program }
    }

    /// The program and its arguments, as the profile gives them.
    pub fn program(&self) -> &[String] {
        &self.program
    }
}

impl Adapter for CommandAdapter {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    /// The program's arguments after its name, then the profile's `args`.
    fn argv(&self, invocation: &Invocation<'_>) -> Vec<String> {
        let mut argv: Vec<String> = self.program.iter().skip(1).cloned().collect();
        argv.extend(invocation.extra_args.iter().cloned());
        argv
    }

    fn parser(&self, _previous: Option<SessionTotals>) -> Box<dyn StreamParser> {
        Box::new(CommandParser::default())
    }
}

#[derive(Default)]
struct CommandParser {
    stdout: Vec<String>,
    stderr: Tail,
}

impl StreamParser for CommandParser {
    fn stdout_line(&mut self, line: &str) -> Vec<Output> {
        self.stdout.push(line.to_owned());
        if line.trim().is_empty() {
            return Vec::new();
        }
        vec![Output {
            kind: OutputKind::Message,
            summary: one_line(line, 100),
            raw: Value::String(line.to_owned()),
            session_id: None,
        }]
    }

    fn stderr_line(&mut self, line: &str) {
        self.stderr.push(line);
    }

    fn finish(&mut self, exit_code: Option<i32>) -> AgentResult {
        if exit_code == Some(0) {
            AgentResult {
                outcome: Some(AgentOutcome::Ok),
                final_message: Some(self.stdout.join("\n")),
                ..AgentResult::default()
            }
        } else {
            AgentResult {
                outcome: Some(AgentOutcome::AgentError),
                error: Some(self.stderr.exit_error(exit_code)),
                ..AgentResult::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::agent::parse_all;

    #[test]
    fn stdout_is_the_final_message() {
        let adapter = CommandAdapter::new(vec!["my-agent".to_owned(), "--fast".to_owned()]);
        let (outputs, result) = parse_all(&adapter, "line one\n\nline two\n", "", Some(0), None);
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs[0].kind, OutputKind::Message);
        assert_eq!(result.outcome, Some(AgentOutcome::Ok));
        assert_eq!(
            result.final_message.as_deref(),
            Some("line one\n\nline two")
        );
        assert_eq!(result.session_id, None);
        assert_eq!(
            (result.input_tokens, result.output_tokens, result.cost_usd),
            (None, None, None)
        );
    }

    #[test]
    fn failure_keeps_stderr_tail() {
        let adapter = CommandAdapter::default();
        let stderr: String = (1..=30).map(|n| format!("err {n}\n")).collect();
        let (_, result) = parse_all(&adapter, "partial\n", &stderr, Some(3), None);
        assert_eq!(result.outcome, Some(AgentOutcome::AgentError));
        assert_eq!(result.final_message, None);
        let error = result.error.unwrap();
        assert!(error.starts_with("exited with code 3 without a result:\nerr 11\n"));
        assert!(error.ends_with("err 30"));
    }

    #[test]
    fn argv_is_the_program_arguments_then_extra_args() {
        let adapter = CommandAdapter::new(vec!["my-agent".to_owned(), "--fast".to_owned()]);
        let extra = vec!["--x".to_owned()];
        let inv = Invocation {
            prompt: "ignored: it goes to stdin",
            worktree: Path::new("/tmp/wt"),
            model: Some("m"),
            resume: Some("s"),
            new_session: None,
            extra_args: &extra,
        };
        assert_eq!(adapter.argv(&inv), ["--fast", "--x"]);
        assert_eq!(adapter.program(), ["my-agent", "--fast"]);
        let adapter: &dyn Adapter = &adapter;
        assert_eq!(adapter.binary(), "command");
        assert!(adapter.prompt_on_stdin());
        assert!(!adapter.resumable());
    }
}
