//! One agent's work in an attempt: the prompt (or the retry that carries the last failure)
//! rendered and archived byte for byte, the CLI run with its stream parsed into events, and
//! its end judged (auth, limits, network, denials, timeouts) and accounted (tokens, cost).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use git2::Oid;
use tokio::sync::watch;

use super::attempt::{Failure, FailureKind, Target, Verdict, Work};
use super::context::render;
use super::program::{adapter_of, program_of, which};
use super::state::Shared;

use crate::agent::{self, AgentOutcome, AgentResult, Invocation, SessionTotals};
use crate::event::{Body, ErrorKind, FailReason, StepError, Tokens};
use crate::plan::{Action, AgentSpec, Flavor};
use crate::process::{self, Exit, Spec};

/// How long a CLI may run on after its terminal event before it is stopped.
const AFTER_END: Duration = Duration::from_secs(5);

/// One agent's attempts at a target (a step, or a conflict to resolve): what it sends, and
/// what it has used so far.
pub(crate) struct AgentWork<'a> {
    pub shared: &'a Arc<Shared>,
    pub target: &'a Target,
    /// The prompt, when it is not the step's (a merge agent's, made by medley).
    pub prompt: Option<String>,
    pub name: &'a str,
    pub profile: AgentSpec,
    pub base: Oid,
    pub logs: PathBuf,
    adapter: Box<dyn agent::Adapter>,
    runtime: &'static str,
    /// The task's prompt, rendered once.
    original: Option<String>,
    session: Option<String>,
    totals: SessionTotals,
    /// What this attempt sends, set by `begin`.
    text: String,
    resume: Option<String>,
    new_session: Option<String>,
    /// The last attempt's result, judged once its tree is committed.
    result: Option<AgentResult>,
    /// `None` while no attempt reported tokens.
    pub tokens: Option<Tokens>,
    pub cost: Option<f64>,
    pub unpriced: bool,
    /// An attempt reported no tokens.
    pub uncounted: bool,
}

impl<'a> AgentWork<'a> {
    pub(crate) fn new(
        shared: &'a Arc<Shared>,
        target: &'a Target,
        name: &'a str,
        profile: AgentSpec,
        base: Oid,
        logs: PathBuf,
    ) -> AgentWork<'a> {
        AgentWork {
            adapter: adapter_of(&profile),
            runtime: profile.runtime.name(),
            shared,
            target,
            prompt: None,
            name,
            profile,
            base,
            logs,
            original: None,
            session: None,
            totals: SessionTotals::default(),
            text: String::new(),
            resume: None,
            new_session: None,
            result: None,
            tokens: None,
            cost: None,
            unpriced: false,
            uncounted: false,
        }
    }
}

impl Work for AgentWork<'_> {
    const SPENDS: bool = true;

    fn agent(&self) -> Option<(&str, &str)> {
        Some((self.name, self.runtime))
    }

    fn label(&self) -> String {
        format!(" ({})", self.name)
    }

    async fn begin(&mut self, attempt: u32, failure: Option<&Failure>) -> Result<(), StepError> {
        let shared = self.shared;
        let (scope, base) = (self.target.scope, self.base);
        // A merge agent's prompt is medley's own; its retries say what failed.
        let step = scope.step().map(|i| &shared.plan.steps[i]);
        let (prompt, retry_prompt) = match (&self.prompt, step.map(|s| &s.action)) {
            (Some(_), _) => (None, None),
            (
                None,
                Some(Action::Agent {
                    prompt,
                    retry_prompt,
                    ..
                }),
            ) => (Some(prompt), retry_prompt.as_ref()),
            _ => return Err(StepError::new(ErrorKind::Agent, "not an agent step")),
        };
        let original = match (&self.original, &self.prompt, prompt) {
            (Some(original), _, _) | (None, Some(original), _) => original.clone(),
            (None, None, None) => String::new(),
            (None, None, Some(prompt)) => {
                let original = render(shared, scope, prompt, Flavor::Text, 1, base, None)
                    .await
                    .map_err(|e| {
                        StepError::new(ErrorKind::Template, format!("cannot render `prompt`: {e}"))
                    })?;
                self.original = Some(original.clone());
                original
            }
        };
        // The prompt: the task, or the retry that carries the failure.
        let resume = self
            .session
            .clone()
            .filter(|_| self.adapter.resumable() && failure.is_some());
        let text = match failure {
            None => original,
            Some(f) => {
                let retry = match retry_prompt {
                    Some(t) => render(
                        shared,
                        scope,
                        t,
                        Flavor::Text,
                        attempt,
                        base,
                        Some(f.value()),
                    )
                    .await
                    .map_err(|e| {
                        StepError::new(
                            ErrorKind::Template,
                            format!("cannot render `retry_prompt`: {e}"),
                        )
                    })?,
                    None => default_retry(f),
                };
                if resume.is_some() {
                    retry
                } else {
                    format!("{original}\n\n{retry}")
                }
            }
        };
        let prompts = shared.run_dir.join("prompts");
        let _ = fs_err::create_dir_all(&prompts);
        // A merge agent's prompt is `<step>.<attempt>.merge-<agent>.txt`, beside the step's own.
        let sender = match &self.prompt {
            Some(_) => format!("merge-{}", self.name),
            None => self.name.to_owned(),
        };
        let archive = prompts.join(format!("{}.{attempt}.{sender}.txt", self.target.id));
        fs_err::write(&archive, &text)
            .map_err(|e| StepError::new(ErrorKind::State, e.to_string()))?;
        self.new_session = (self.adapter.pre_assigns_session() && resume.is_none())
            .then(|| uuid::Uuid::now_v7().to_string());
        self.resume = resume;
        self.text = text;
        Ok(())
    }

    async fn run(
        &mut self,
        attempt: u32,
        worktree: &Path,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Exit, StepError> {
        let shared = self.shared;
        let (name, profile) = (self.name, &self.profile);
        let argv = self.adapter.argv(&Invocation {
            prompt: &self.text,
            worktree,
            model: profile.model.as_deref(),
            resume: self.resume.as_deref(),
            new_session: self.new_session.as_deref(),
            extra_args: &profile.args,
        });
        let previous = self.resume.as_ref().map(|_| self.totals);
        let (result, exit) = attempt_once(
            shared,
            self.target,
            name,
            &*self.adapter,
            profile,
            &argv,
            &self.text,
            worktree,
            &self.logs,
            attempt,
            previous,
            cancel,
        )
        .await;
        // Account what the attempt cost.
        match (result.input_tokens, result.output_tokens) {
            (None, None) => self.uncounted = true,
            (input, output) => Tokens::add(
                &mut self.tokens,
                Some(Tokens {
                    input: input.unwrap_or(0),
                    output: output.unwrap_or(0),
                }),
            ),
        }
        let cost = result.cost_usd.or_else(|| {
            let price = profile.price?;
            let (input, output) = (result.input_tokens?, result.output_tokens?);
            Some(
                input as f64 / 1e6 * price.input_per_mtok
                    + output as f64 / 1e6 * price.output_per_mtok,
            )
        });
        match cost {
            Some(c) => {
                *self.cost.get_or_insert(0.0) += c;
                shared.spend(c);
            }
            None if result.outcome != Some(AgentOutcome::Ok) && result.input_tokens.is_none() => {}
            None => self.unpriced = true,
        }
        if result.session_id.is_some() {
            self.session = result.session_id.clone();
        } else if self.new_session.is_some() {
            self.session = self.new_session.clone();
        }
        self.totals.input_tokens += result.input_tokens.unwrap_or(0);
        self.totals.output_tokens += result.output_tokens.unwrap_or(0);
        self.totals.cost_usd += result.cost_usd.unwrap_or(0.0);
        self.result = Some(result);
        Ok(exit)
    }

    fn judge(&mut self, exit: Exit, files: usize) -> Verdict {
        let result = self.result.take().unwrap_or_default();
        let mut outcome = result.outcome.unwrap_or(AgentOutcome::AgentError);
        if outcome == AgentOutcome::Ok && result.denial && files == 0 {
            outcome = AgentOutcome::Denied;
        }
        if outcome == AgentOutcome::Ok {
            return Verdict::Done {
                output: result.final_message.unwrap_or_default(),
            };
        }
        let (reason, message) = describe_failure(outcome, &result, self.name, &self.profile);
        Verdict::Failed {
            reason,
            retry: Some(Failure {
                kind: if outcome == AgentOutcome::Timeout {
                    FailureKind::Timeout
                } else {
                    FailureKind::Agent
                },
                command: self.name.to_owned(),
                exit_code: exit.code(),
                output: message.clone(),
            }),
            message,
            // Another try of this agent cannot help: the chain moves on at once.
            final_: matches!(
                outcome,
                AgentOutcome::AuthError | AgentOutcome::UsageLimit | AgentOutcome::Unreachable
            ),
            output: String::new(),
        }
    }
}

/// The reason and a message that says what to fix.
fn describe_failure(
    outcome: AgentOutcome,
    result: &AgentResult,
    name: &str,
    profile: &AgentSpec,
) -> (FailReason, String) {
    let said = result.error.clone().unwrap_or_default();
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    match outcome {
        AgentOutcome::AuthError => (
            FailReason::Auth,
            format!(
                "`{name}` is not logged in or its key was refused{said}; {}",
                adapter_of(profile).description().login_hint
            ),
        ),
        AgentOutcome::UsageLimit => (
            FailReason::UsageLimit,
            format!("`{name}` hit a usage or rate limit{said}"),
        ),
        AgentOutcome::Unreachable => (
            FailReason::Unreachable,
            format!("`{name}` could not reach its model service{said}"),
        ),
        AgentOutcome::Denied => (
            FailReason::Denied,
            format!(
                "`{name}` was refused permission to write and changed nothing{said} (check the profile's `args` do not restrict its permissions)"
            ),
        ),
        AgentOutcome::Timeout => (
            FailReason::Timeout,
            format!("`{name}` ran past the step's timeout and was stopped"),
        ),
        AgentOutcome::AgentError | AgentOutcome::Ok => {
            (FailReason::AgentError, format!("`{name}` failed{said}"))
        }
    }
}

/// Runs the CLI once, streaming its events; returns its result with the outcome decided.
#[allow(clippy::too_many_arguments)]
async fn attempt_once(
    shared: &Arc<Shared>,
    step: &Target,
    name: &str,
    adapter: &dyn agent::Adapter,
    profile: &AgentSpec,
    argv: &[String],
    prompt: &str,
    worktree: &Path,
    logs: &Path,
    attempt: u32,
    previous: Option<SessionTotals>,
    cancel: &mut watch::Receiver<bool>,
) -> (AgentResult, Exit) {
    let program = program_of(profile);
    let mut env = shared.step_env(&step.id, worktree, attempt);
    env.extend(profile.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let spec = Spec {
        program: which(&program).unwrap_or_else(|| PathBuf::from(&program)),
        args: argv.to_vec(),
        cwd: worktree.to_owned(),
        env,
        stdin: adapter
            .prompt_on_stdin()
            .then(|| prompt.as_bytes().to_vec()),
        stdout: logs.join(format!("{name}.{attempt}.jsonl")),
        stderr: logs.join(format!("{name}.{attempt}.stderr")),
        // Nesting variables of a Claude Code session around medley (AGENTS.md 2.8).
        env_remove: vec!["CLAUDECODE".to_owned(), "CLAUDE_CODE_ENTRYPOINT".to_owned()],
        record: Some(shared.processes.clone()),
        secrets: shared.secrets.clone(),
    };
    let parser = Mutex::new(adapter.parser(previous));
    let wait = shared.network_wait;
    let step_id = step.id.clone();
    let mut on_stdout = |line: &str| {
        let Ok(mut parser) = parser.lock() else {
            return None;
        };
        for output in parser.stdout_line(line) {
            shared.emitter.emit(Body::AgentOutput {
                step: step_id.clone(),
                attempt,
                agent: name.to_owned(),
                session_id: output.session_id,
                kind: output.kind.name().to_owned(),
                summary: output.summary,
                raw: output.raw,
            });
        }
        if parser.ended() {
            return Some(AFTER_END);
        }
        parser.waiting_for_network().then_some(wait)
    };
    let mut on_stderr = |line: &str| {
        if let Ok(mut parser) = parser.lock() {
            parser.stderr_line(line);
        }
    };
    let exit = process::run_streaming(
        &spec,
        step.timeout,
        cancel,
        shared.grace,
        &mut on_stdout,
        &mut on_stderr,
    )
    .await;
    let exit = match exit {
        Ok(exit) => exit,
        Err(e) => {
            let result = AgentResult {
                outcome: Some(AgentOutcome::AgentError),
                error: Some(e.to_string()),
                ..AgentResult::default()
            };
            return (result, Exit::Code(127));
        }
    };
    let (mut result, ended) = match parser.lock() {
        Ok(mut parser) => {
            let ended = parser.ended();
            // Stopped after saying how it ended: the CLI finished, whatever its exit would be.
            let code = if exit == Exit::Stopped && ended {
                Some(0)
            } else {
                exit.code()
            };
            (parser.finish(code), ended)
        }
        Err(_) => (AgentResult::default(), false),
    };
    match exit {
        Exit::TimedOut => result.outcome = Some(AgentOutcome::Timeout),
        // Stopped after its terminal event: the result stands.
        Exit::Stopped if result.outcome.is_some() && ended => {}
        Exit::Stopped => {
            result.outcome = Some(AgentOutcome::Unreachable);
            result.error = Some(format!(
                "it waited for the network for {} and was stopped",
                crate::plan::duration_text::format(wait)
            ));
        }
        _ => {}
    }
    (result, exit)
}

/// The default retry prompt: the failed check, its exit code and the tail of its output.
fn default_retry(failure: &Failure) -> String {
    let code = failure
        .exit_code
        .map_or(String::new(), |c| format!(" with exit code {c}"));
    match failure.kind {
        FailureKind::Gate => format!(
            "The check `{}` failed{code}. Its output ends with:\n\n{}\n\nFix the code so that this check passes.",
            failure.command, failure.output
        ),
        FailureKind::Timeout => format!(
            "The last attempt ran out of time before finishing. Continue, and keep the check `{}` passing.",
            failure.command
        ),
        FailureKind::Agent => format!(
            "The last attempt failed:\n\n{}\n\nTry again and finish the task.",
            failure.output
        ),
        FailureKind::Rejected => format!(
            "A person reviewed your result and rejected it:\n\n{}\n\nChange the result as they ask.",
            failure.output
        ),
    }
}
