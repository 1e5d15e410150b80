//! Reporters: each consumes the engine's events. `plain` writes a line per event to stderr,
//! `tty` a live view on stderr, `json` the events themselves to stdout.

mod tty;

use std::io::Write as _;
use std::time::Duration;

use crate::style::human_duration;
use medley_engine::event::{Body, ErrorKind, Event, SkipReason};

use crate::output::OutputFormat;

pub enum Reporter {
    Plain { color: bool },
    Json,
    Tty(tty::Live),
}

impl Reporter {
    pub fn new(format: OutputFormat, color: bool) -> Reporter {
        match format {
            OutputFormat::Plain => Reporter::Plain { color },
            OutputFormat::Json => Reporter::Json,
            OutputFormat::Tty => Reporter::Tty(tty::Live::new(color)),
        }
    }

    pub fn event(&mut self, event: &Event) {
        match self {
            Reporter::Plain { color } => {
                if let Some(line) = line(event, *color) {
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                }
            }
            Reporter::Json => {
                if let Ok(json) = serde_json::to_string(event) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{json}");
                    let _ = out.flush();
                }
            }
            Reporter::Tty(live) => live.event(event),
        }
    }

    pub fn finish(&mut self) {
        if let Reporter::Tty(live) = self {
            live.finish();
        }
    }
}

/// A step's tokens, `in/out`, or "unknown" when its CLI reported none.
pub fn tokens(tokens: Option<medley_engine::event::Tokens>) -> String {
    tokens.map_or("unknown".to_owned(), |t| {
        format!("{}/{}", t.input, t.output)
    })
}

/// A run's tokens: the known part, marked when some steps' are not known.
pub fn run_tokens(tokens: medley_engine::event::Tokens, uncounted: usize) -> String {
    match (tokens.input + tokens.output, uncounted) {
        (0, n) if n > 0 => "unknown".to_owned(),
        (_, 0) => format!("{}/{}", tokens.input, tokens.output),
        _ => format!("{}/{}+?", tokens.input, tokens.output),
    }
}

/// A cost in dollars, or "cost unknown" when the CLI reported none.
pub fn cost(usd: Option<f64>) -> String {
    usd.map_or("cost unknown".to_owned(), |c| format!("${c:.4}"))
}

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// The one line that describes an event (`None` for events too chatty to show).
pub fn line(event: &Event, color: bool) -> Option<String> {
    use crate::style::{bold, dim, green, red};
    let step = event.step().unwrap_or("");
    Some(match &event.body {
        Body::RunStarted {
            mission,
            base,
            steps,
            ..
        } => format!(
            "{} mission `{mission}`: {} from {} {}",
            bold("run", color),
            plural(*steps, "step"),
            short(base),
            dim(&format!("(run {})", event.run), color)
        ),
        Body::StepReady { base, .. } => format!("{step}: ready on {}", short(base)),
        Body::StepStarted { attempt, agent, .. } => match agent {
            Some(agent) => format!("{step}: started, attempt {attempt} with `{agent}`"),
            None => format!("{step}: started, attempt {attempt}"),
        },
        Body::AgentOutput { summary, .. } => format!("{step}: {summary}"),
        Body::StepCommitted { commit, files, .. } => {
            format!(
                "{step}: committed {} ({} changed)",
                short(commit),
                plural(*files, "file")
            )
        }
        Body::GateStarted { command, .. } => {
            let who = if step.is_empty() {
                "mission gate"
            } else {
                step
            };
            format!("{who}: gate `{}`", command.lines().next().unwrap_or(""))
        }
        Body::GateFinished {
            passed, exit_code, ..
        } => {
            let who = if step.is_empty() {
                "mission gate"
            } else {
                step
            };
            if *passed {
                format!("{who}: gate passed")
            } else {
                let code =
                    exit_code.map_or("did not finish".to_owned(), |c| format!("exited with {c}"));
                format!("{who}: gate failed: {code}")
            }
        }
        Body::AttemptFailed {
            attempt, message, ..
        } => {
            let first = message.lines().next().unwrap_or("");
            format!("{step}: attempt {attempt} failed: {first}")
        }
        Body::AgentSwitched { from, to, .. } => {
            format!("{step}: switching from `{from}` to `{to}`")
        }
        Body::StepFinished {
            outcome,
            attempts,
            duration_ms,
            error,
            agent,
            tokens,
            cost_usd,
            ..
        } => {
            let took = human_duration(Duration::from_millis(*duration_ms));
            let head = format!("{step}: {}", outcome.name());
            let head = if outcome.ok() {
                green(&head, color)
            } else {
                red(&head, color)
            };
            let used = match agent {
                Some(agent) => match tokens {
                    Some(t) => format!(
                        ", `{agent}`, {} tokens in / {} out, {}",
                        t.input,
                        t.output,
                        cost(*cost_usd)
                    ),
                    None => format!(", `{agent}`, tokens unknown, {}", cost(*cost_usd)),
                },
                None => String::new(),
            };
            match error {
                Some(e) if e.kind != ErrorKind::Cancelled => format!(
                    "{head} after {} in {took}{used}: {}",
                    plural(*attempts as usize, "attempt"),
                    e.message.lines().next().unwrap_or("")
                ),
                _ => format!(
                    "{head} in {took} ({}{used})",
                    plural(*attempts as usize, "attempt")
                ),
            }
        }
        Body::StepSkipped { reason, .. } => format!("{step}: skipped: {}", skip_reason(reason)),
        Body::StepKept {
            outcome, commit, ..
        } => {
            let commit = commit.as_deref().map(short).unwrap_or("no commit");
            let head = format!("{step}: kept from before the resume");
            format!("{} ({}, {commit})", green(&head, color), outcome.name())
        }
        Body::Warning { message, .. } => {
            let who = if step.is_empty() { "warning" } else { step };
            format!("{}: {message}", crate::style::yellow(who, color))
        }
        Body::RunFinished {
            outcome,
            reason,
            result_branch,
            duration_ms,
            tokens,
            cost_usd,
            unpriced_steps,
            uncounted_steps,
        } => {
            let took = human_duration(Duration::from_millis(*duration_ms));
            let head = format!("run {}", outcome.name());
            let head = if matches!(outcome, medley_engine::event::RunOutcome::Passed) {
                green(&head, color)
            } else {
                red(&head, color)
            };
            let used = if tokens.input + tokens.output > 0
                || *unpriced_steps > 0
                || *uncounted_steps > 0
            {
                let unknown = |n: usize| {
                    if n > 0 {
                        format!(" (unknown for {})", plural(n, "step"))
                    } else {
                        String::new()
                    }
                };
                format!(
                    "; {} tokens in / {} out{}, ${cost_usd:.4}{}",
                    tokens.input,
                    tokens.output,
                    unknown(*uncounted_steps),
                    unknown(*unpriced_steps)
                )
            } else {
                String::new()
            };
            match (result_branch, reason) {
                (Some(branch), _) => format!("{head} in {took}: branch `{branch}`{used}"),
                (None, Some(reason)) => format!("{head} in {took}: {reason}{used}"),
                (None, None) => format!("{head} in {took}{used}"),
            }
        }
    })
}

pub fn skip_reason(reason: &SkipReason) -> String {
    match reason {
        SkipReason::Need { need, need_outcome } => {
            format!(
                "it needs `{need}`, which {}",
                match need_outcome.name() {
                    "skipped" => "was skipped".to_owned(),
                    other => other.to_owned(),
                }
            )
        }
        SkipReason::If { expression } => format!("`if = \"{expression}\"` was false"),
    }
}
