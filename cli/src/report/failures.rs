//! What a failing run says about its failures: under each failed step, the end of the output
//! that made it fail, where its whole log is and the worktree kept for a look; at the end of
//! the run, the failures again, together, and what to do next.

use std::collections::HashMap;

use medley_engine::event::{Body, ErrorKind, Event, Outcome, RunOutcome};

use crate::style;

/// Lines of a failure's output shown under it.
const TAIL: usize = 10;

/// A step (or the mission gate) that failed.
#[derive(Debug, Clone)]
struct Failed {
    /// The step's id; `None` for the mission gate.
    step: Option<String>,
    /// What failed, in one line.
    what: String,
    /// The end of the output that made it fail.
    tail: Vec<String>,
    worktree: Option<String>,
    /// It left logs: an attempt or its setup ran (a step that failed before either, such as
    /// a fan-out whose list is bad, has none).
    logged: bool,
}

/// Names a run for commands the user types: the shortest prefix of its id that names it.
pub type Namer = Box<dyn Fn(&str) -> String + Send>;

/// Follows a run's events and remembers what the end of the run must say.
pub struct Failures {
    /// `None`: the end of each run says nothing more (watch: runs follow one another).
    namer: Option<Namer>,
    /// The run, as the user types it.
    run: String,
    base: String,
    /// The newest worktree and failed gate output of each step.
    worktrees: HashMap<String, String>,
    gate_tails: HashMap<String, String>,
    failed: Vec<Failed>,
    /// What waits for a person (step ids; `@result` for the final result).
    waiting: Vec<String>,
    end: Option<(RunOutcome, Option<String>)>,
}

impl Failures {
    pub fn new(namer: Option<Namer>) -> Failures {
        Failures {
            namer,
            run: String::new(),
            base: String::new(),
            worktrees: HashMap::new(),
            gate_tails: HashMap::new(),
            failed: Vec::new(),
            waiting: Vec::new(),
            end: None,
        }
    }

    /// Whether the end of the run has something to say: it ended, and it is not a watch.
    pub fn ended(&self) -> bool {
        self.end.is_some() && self.namer.is_some()
    }

    /// Takes in one event; returns the lines to show under it, when it is a failure.
    pub fn observe(&mut self, event: &Event) -> Vec<String> {
        match &event.body {
            Body::RunStarted { base, .. } => {
                // A new run (watch): what the last one said is over.
                self.run = match &self.namer {
                    Some(namer) => namer(&event.run),
                    None => event.run.clone(),
                };
                self.base = base.clone();
                self.worktrees.clear();
                self.gate_tails.clear();
                self.failed.clear();
                self.waiting.clear();
                self.end = None;
            }
            Body::ApprovalRequested { step, .. } => {
                let name = step.clone().unwrap_or_else(|| "@result".to_owned());
                if !self.waiting.contains(&name) {
                    self.waiting.push(name);
                }
            }
            Body::ApprovalGiven { step, .. } | Body::ApprovalRefused { step, .. } => {
                let name = step.clone().unwrap_or_else(|| "@result".to_owned());
                self.waiting.retain(|w| *w != name);
            }
            Body::StepStarted { step, worktree, .. } => {
                self.worktrees.insert(step.clone(), worktree.clone());
            }
            Body::GateFinished {
                step,
                passed: false,
                output_tail,
                exit_code,
                ..
            } => match step {
                Some(step) => {
                    self.gate_tails.insert(step.clone(), output_tail.clone());
                }
                None => {
                    let failed = Failed {
                        step: None,
                        what: format!(
                            "the mission gate {}",
                            exit_code.map_or("did not finish".to_owned(), |c| format!(
                                "exited with {c}"
                            ))
                        ),
                        tail: last_lines(output_tail),
                        worktree: None,
                        logged: true,
                    };
                    let lines = self.details(&failed);
                    self.failed.push(failed);
                    return lines;
                }
            },
            Body::StepFinished {
                step,
                outcome: Outcome::Failed,
                error,
                ..
            } => {
                let (what, tail) = match error {
                    Some(e) => {
                        let mut lines = e.message.lines();
                        let what = lines.next().unwrap_or("").trim_end_matches(':').to_owned();
                        let rest: Vec<&str> = lines.collect();
                        let tail = match (e.kind, self.gate_tails.get(step)) {
                            (ErrorKind::Gate, Some(tail)) => last_lines(tail),
                            _ => last_lines(&rest.join("\n")),
                        };
                        (what, tail)
                    }
                    None => ("failed".to_owned(), Vec::new()),
                };
                let worktree = self.worktrees.get(step).cloned();
                let failed = Failed {
                    step: Some(step.clone()),
                    what,
                    tail,
                    logged: worktree.is_some()
                        || error.as_ref().is_some_and(|e| e.kind == ErrorKind::Setup),
                    worktree,
                };
                let lines = self.details(&failed);
                self.failed.push(failed);
                return lines;
            }
            Body::RunFinished {
                outcome,
                result_branch,
                ..
            } => self.end = Some((*outcome, result_branch.clone())),
            _ => {}
        }
        Vec::new()
    }

    /// The lines under a failure: its output's end, its log, its worktree.
    fn details(&self, failed: &Failed) -> Vec<String> {
        let mut lines: Vec<String> = failed.tail.iter().map(|l| format!("  | {l}")).collect();
        let step = failed.step.as_deref().unwrap_or("_final");
        if failed.logged {
            lines.push(format!("  whole log: `medley logs {} {step}`", self.run));
        }
        if let Some(worktree) = &failed.worktree {
            lines.push(format!("  worktree kept at {worktree}"));
        }
        lines
    }

    /// The end of a run: its failures together, then what to do next.
    pub fn epilogue(&self, color: bool) -> String {
        let run = &self.run;
        let mut out = String::new();
        if !self.failed.is_empty() {
            let n = self.failed.len();
            out.push_str(&format!(
                "\n{}\n",
                style::red(
                    &format!("{n} failure{}:", if n == 1 { "" } else { "s" }),
                    color
                )
            ));
            for failed in &self.failed {
                let who = failed.step.as_deref().unwrap_or("mission gate");
                out.push_str(&format!("  {}: {}\n", style::bold(who, color), failed.what));
            }
        }
        let next = match &self.end {
            Some((RunOutcome::Passed, Some(branch))) => vec![
                format!(
                    "`git diff {} {branch}` shows the change",
                    self.base.get(..10).unwrap_or(&self.base)
                ),
                format!("`medley apply {run}` writes it to your working tree, uncommitted"),
                report_line(run),
            ],
            Some((RunOutcome::Passed, None)) => vec![
                format!("`medley show {run}` lists the steps' results"),
                format!("`medley apply {run} --step ID` writes one to your working tree"),
                report_line(run),
            ],
            Some((RunOutcome::Failed, _)) => {
                let logs = match self.failed.iter().find(|f| f.logged) {
                    Some(f) => {
                        let step = f.step.as_deref().unwrap_or("_final");
                        format!("`medley logs {run} {step}` shows the whole output")
                    }
                    // Nothing that failed ran (e.g. a fan-out's list was bad): no log to read.
                    None if self.failed.is_empty() => {
                        format!("`medley logs {run} STEP` shows the whole output")
                    }
                    None => format!("`medley show {run}` shows each step's outcome"),
                };
                vec![
                    logs,
                    format!(
                        "`medley resume {run}` runs what did not pass again, keeping what passed"
                    ),
                    report_line(run),
                ]
            }
            Some((RunOutcome::Cancelled, _)) => vec![format!(
                "`medley resume {run}` continues the run, keeping what passed"
            )],
            Some((RunOutcome::Waiting, _)) => {
                let steps = if self.waiting.is_empty() {
                    "STEP".to_owned()
                } else {
                    self.waiting.join(" ")
                };
                vec![
                    format!(
                        "`medley show {run}` shows what waits; `medley logs {run} STEP` its output"
                    ),
                    format!("`medley approve {steps} --run {run}` approves, and the run goes on"),
                    format!("`medley reject {steps} --why TEXT --run {run}` rejects"),
                ]
            }
            None => Vec::new(),
        };
        for (i, line) in next.iter().enumerate() {
            let head = if i == 0 { "next:" } else { "     " };
            out.push_str(&format!("{} {line}\n", style::dim(head, color)));
        }
        if !next.is_empty() && self.failed.is_empty() {
            out.insert(0, '\n');
        }
        out
    }
}

/// How to see what a run did.
pub fn report_line(run: &str) -> String {
    format!("`medley report {run} --open` shows what it did (or `--format markdown`)")
}

fn last_lines(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}
