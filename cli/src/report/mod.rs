//! Reporters: each consumes the engine's events. `plain` writes a line per event to stderr,
//! `tty` a live view on stderr, `json` the events themselves to stdout.

use std::io::Write as _;
use std::time::Duration;

use crate::style::human_duration;
use medley_engine::event::{Body, ErrorKind, Event};

use crate::output::OutputFormat;

mod failures;
mod follow;
mod prompt;
mod tty;

pub use failures::{Failures, Namer, report_line};
pub use follow::Follow;
pub use prompt::Typed;

/// How a run's events are shown.
pub enum Reporter {
    /// A line per event on stderr; `quiet`: only failures, warnings and the run's end;
    /// `follow` (`-v`): each step's output too, as it is written.
    Plain {
        color: bool,
        quiet: bool,
        failures: Failures,
        follow: Option<Follow>,
    },
    Json,
    Tty(tty::Live, Failures),
}

impl Reporter {
    pub fn new(format: OutputFormat, color: bool, quiet: bool, namer: Option<Namer>) -> Reporter {
        match format {
            OutputFormat::Plain => Reporter::Plain {
                color,
                quiet,
                failures: Failures::new(namer),
                follow: None,
            },
            OutputFormat::Json => Reporter::Json,
            OutputFormat::Tty => Reporter::Tty(tty::Live::new(color), Failures::new(namer)),
        }
    }

    /// With `-v` in plain mode: streams each step's output from the run's logs under `git_dir`.
    pub fn follow(mut self, git_dir: Option<std::path::PathBuf>) -> Reporter {
        if let (Reporter::Plain { follow, .. }, Some(git_dir)) = (&mut self, git_dir) {
            *follow = Some(Follow::new(git_dir));
        }
        self
    }

    /// The live view's summary table lists steps in this order (the mission's).
    pub fn order(mut self, order: Vec<String>) -> Reporter {
        if let Reporter::Tty(live, _) = &mut self {
            live.set_order(order);
        }
        self
    }

    /// Whether [`Reporter::tick`] has anything to do.
    pub fn follows(&self) -> bool {
        matches!(
            self,
            Reporter::Plain {
                follow: Some(_),
                ..
            }
        )
    }

    /// Prints what the followed steps wrote since the last tick.
    pub fn tick(&mut self) {
        if let Reporter::Plain {
            follow: Some(follow),
            ..
        } = self
        {
            write_lines(&follow.poll(None, false));
        }
    }

    pub fn event(&mut self, event: &Event) {
        match self {
            Reporter::Plain {
                color,
                quiet,
                failures,
                follow,
            } => {
                // An event's lines go out in one write (stderr is unbuffered).
                let mut lines: Vec<String> = Vec::new();
                if let Some(follow) = follow {
                    match &event.body {
                        Body::RunStarted { .. } => follow.start_run(&event.run),
                        Body::StepStarted { step, .. } => follow.start_step(step),
                        Body::GateStarted { step: None, .. } => follow.start_step("_final"),
                        Body::GateFinished { step: None, .. } => {
                            lines.extend(follow.poll(Some("_final"), true));
                        }
                        // What a step wrote comes before the lines that judge it.
                        Body::StepFinished { step, .. } => {
                            lines.extend(follow.poll(Some(step), true));
                        }
                        Body::GateFinished {
                            step: Some(step), ..
                        }
                        | Body::AttemptFailed { step, .. }
                        | Body::StepCommitted { step, .. } => {
                            lines.extend(follow.poll(Some(step), false));
                        }
                        _ => {}
                    }
                }
                let details = failures.observe(event);
                let shown = !*quiet
                    || !details.is_empty()
                    || matches!(event.body, Body::Warning { .. } | Body::RunFinished { .. });
                if shown && let Some(line) = line(event, *color) {
                    lines.push(line);
                    lines.extend(details);
                }
                write_lines(&lines);
            }
            Reporter::Json => {
                if let Ok(json) = serde_json::to_string(event) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{json}");
                    let _ = out.flush();
                }
            }
            Reporter::Tty(live, failures) => {
                let details = failures.observe(event);
                live.event(event, &details);
            }
        }
    }

    /// Asks a person about a result that waits (the live view's prompt, its rows hidden
    /// meanwhile) and sends their decision back to the run. `pager` shows the diff.
    pub fn ask(
        &mut self,
        request: medley_engine::run::ApprovalRequest,
        typed: &prompt::Typed,
        pager: Option<&str>,
    ) {
        let decide = |color: bool| {
            let mut input = || typed.next(|| request.reply.is_closed());
            let mut err = std::io::stderr();
            prompt::ask(
                &request,
                &mut input,
                &mut err,
                &|diff| prompt::page(pager, diff),
                color,
            )
        };
        // Decided in another terminal (or the run stopped) before it was shown: no prompt.
        if request.reply.is_closed() {
            return;
        }
        let decision = match self {
            Reporter::Tty(live, _) => {
                let color = live.color();
                live.suspend(|| decide(color))
            }
            Reporter::Plain { color, .. } => decide(*color),
            Reporter::Json => decide(false),
        };
        if request.reply.send(decision).is_err() {
            let who = request.step.as_deref().unwrap_or("the mission's result");
            let _ = writeln!(
                std::io::stderr(),
                "\n{who} no longer waits here: decided in another terminal, or the run stopped"
            );
        }
    }

    /// Ends the report: the live view's table, then the failures together and what to do
    /// next (not after a run that never ended, nor in JSON).
    pub fn finish(&mut self) {
        let (failures, color) = match self {
            Reporter::Plain {
                failures, color, ..
            } => (&*failures, *color),
            Reporter::Tty(live, failures) => {
                live.finish();
                (&*failures, live.color())
            }
            Reporter::Json => return,
        };
        if failures.ended() {
            let text = failures.epilogue(color);
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    }
}

/// Writes `lines` to stderr in one write.
fn write_lines(lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let mut text = lines.join("\n");
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A step's tokens, `in/out`, or "unknown" when its CLI reported none.
pub fn tokens(tokens: Option<medley_engine::event::Tokens>) -> String {
    tokens.map_or("unknown".to_owned(), |t| {
        format!("{}/{}", t.input, t.output)
    })
}

/// A run's tokens: `in/out`, `in/out + unknown` when some steps' are not known, `unknown`
/// when none are.
pub fn run_tokens(tokens: medley_engine::event::Tokens, uncounted: usize) -> String {
    match (tokens.input + tokens.output, uncounted) {
        (0, n) if n > 0 => "unknown".to_owned(),
        (_, 0) => format!("{}/{}", tokens.input, tokens.output),
        _ => format!("{}/{} + unknown", tokens.input, tokens.output),
    }
}

/// A step's cost in dollars, or "unknown" when its CLI reported none and no price was given.
pub fn cost(usd: Option<f64>) -> String {
    usd.map_or("unknown".to_owned(), |c| format!("${c:.4}"))
}

/// A run's cost: `$x`, `$x + unknown` when some steps' cost is not known, `unknown` when no
/// part is known (never `$0.0000` then).
pub fn run_cost(known: Option<f64>, unpriced: usize) -> String {
    match (known, unpriced) {
        (Some(c), 0) => format!("${c:.4}"),
        (Some(c), _) if c > 0.0 => format!("${c:.4} + unknown"),
        (None, 0) => "$0.0000".to_owned(),
        _ => "unknown".to_owned(),
    }
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
        Body::StepStarted {
            attempt,
            agent: Some(agent),
            merge: true,
            ..
        } => format!("{step}: merge agent started, attempt {attempt} with `{agent}`"),
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
                Some(agent) => format!(
                    ", `{agent}`, tokens {}, cost {}",
                    self::tokens(*tokens),
                    cost(*cost_usd)
                ),
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
        Body::StepsExpanded {
            from,
            file,
            children,
            ..
        } => format!(
            "{step}: {} {} from `{file}` of `{from}`: {}",
            children.len(),
            if children.len() == 1 {
                "child"
            } else {
                "children"
            },
            children
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Body::StepKept {
            outcome, commit, ..
        } => {
            let commit = commit.as_deref().map(short).unwrap_or("no commit");
            let head = format!("{step}: kept from before the resume");
            format!("{} ({}, {commit})", green(&head, color), outcome.name())
        }
        Body::ApprovalRequested { message, files, .. } => {
            let who = if step.is_empty() { "result" } else { step };
            format!(
                "{}: {} ({} changed)",
                crate::style::yellow(&format!("{who}: waiting for approval"), color),
                message,
                plural(*files, "file")
            )
        }
        Body::ApprovalGiven { by, .. } => {
            let who = if step.is_empty() { "result" } else { step };
            green(&format!("{who}: approved by {by}"), color)
        }
        Body::ApprovalRefused { by, reason, .. } => {
            let who = if step.is_empty() { "result" } else { step };
            format!(
                "{}: {reason}",
                red(&format!("{who}: rejected by {by}"), color)
            )
        }
        Body::MergeConflict { files, steps, .. } => {
            let who = if step.is_empty() { "final merge" } else { step };
            format!(
                "{who}: merge conflict between {} in {}",
                steps
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                files
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        Body::MergeResolved {
            commit,
            cached_from: Some(run),
            ..
        } => format!("{step}: merge reused from run {run} as {}", short(commit)),
        Body::MergeResolved {
            commit,
            agent,
            attempts,
            ..
        } => format!(
            "{step}: merge resolved by `{agent}` as {} ({})",
            short(commit),
            plural(*attempts as usize, "attempt")
        ),
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
            let head = match outcome {
                medley_engine::event::RunOutcome::Passed => green(&head, color),
                medley_engine::event::RunOutcome::Waiting => crate::style::yellow(&head, color),
                _ => red(&head, color),
            };
            // A run with no agent has no tokens or dollars to speak of.
            let used = if tokens.input + tokens.output > 0
                || *unpriced_steps > 0
                || *uncounted_steps > 0
                || *cost_usd > 0.0
            {
                format!(
                    "; tokens {}, cost {}",
                    run_tokens(*tokens, *uncounted_steps),
                    run_cost(Some(*cost_usd), *unpriced_steps)
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

pub use medley_engine::report::words::skip_reason;
