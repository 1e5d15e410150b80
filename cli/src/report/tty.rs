//! The live view: one line per running step (state, attempt, what its agent is doing, elapsed),
//! the notable events above them, and a summary table at the end. On stderr.

use std::collections::HashMap;
use std::time::Duration;

use crate::style::human_duration;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use medley_engine::event::{Body, Event, Outcome};

/// The running row of the mission's final gate.
const MISSION_GATE: &str = "mission gate";

/// A row of the summary table.
struct Row {
    step: String,
    outcome: Outcome,
    attempts: u32,
    ms: u64,
    commit: Option<String>,
    /// Tokens in and out, for an agent step (inner `None`: unknown).
    tokens: Option<Option<medley_engine::event::Tokens>>,
    cost: Option<f64>,
}

pub struct Live {
    color: bool,
    bars: MultiProgress,
    /// The overall count (`3/8 done, 2 running, 3 waiting`), above the steps' rows.
    header: Option<ProgressBar>,
    /// Steps in the run, and those that ended.
    total: usize,
    done: usize,
    /// Steps ready to start that have not yet.
    ready: Vec<String>,
    /// Steps that ended (or were kept).
    ended: Vec<String>,
    /// The mission's step order, for the summary table (empty: the order steps ended in).
    order: Vec<String>,
    running: HashMap<String, ProgressBar>,
    rows: Vec<Row>,
    /// Tokens in, out, known cost and unpriced steps of the run.
    totals: Option<(medley_engine::event::Tokens, usize, f64, usize)>,
}

impl Live {
    pub fn new(color: bool) -> Live {
        Live {
            color,
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            header: None,
            total: 0,
            done: 0,
            ready: Vec::new(),
            ended: Vec::new(),
            order: Vec::new(),
            running: HashMap::new(),
            rows: Vec::new(),
            totals: None,
        }
    }

    /// The summary table lists steps in this order (the mission's).
    pub fn set_order(&mut self, order: Vec<String>) {
        self.order = order;
    }

    /// Redraws the overall count.
    fn count(&mut self) {
        let running = self.running.keys().filter(|k| *k != MISSION_GATE).count();
        let waiting = self.total.saturating_sub(self.done + running);
        let mut line = format!(
            "{}/{} done, {running} running, {waiting} waiting",
            self.done, self.total
        );
        // The waiting steps by name: those of the mission's order that neither run nor ended
        // (without the order, those ready to start).
        let waiting_ids: Vec<&str> = if self.order.is_empty() {
            self.ready.iter().map(String::as_str).collect()
        } else {
            self.order
                .iter()
                .filter(|s| !self.ended.contains(s) && !self.running.contains_key(*s))
                .map(String::as_str)
                .collect()
        };
        if !waiting_ids.is_empty() {
            line.push_str(&format!(": {}", waiting_ids.join(", ")));
        }
        let bars = &self.bars;
        let header = self.header.get_or_insert_with(|| {
            let bar = bars.insert(0, ProgressBar::new_spinner());
            let style = ProgressStyle::with_template("{wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar
        });
        header.set_message(line);
    }

    fn bar(&mut self, step: &str) -> &ProgressBar {
        let bars = &self.bars;
        self.running.entry(step.to_owned()).or_insert_with(|| {
            let bar = bars.add(ProgressBar::new_spinner());
            // `wide_msg` takes what the terminal's width leaves: a row never wraps.
            let style =
                ProgressStyle::with_template("{spinner} {prefix:<24} {elapsed:>4} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_prefix(step.to_owned());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        })
    }

    pub fn color(&self) -> bool {
        self.color
    }

    /// Shows an event; `details` are lines to print under it (a failure's output and log).
    pub fn event(&mut self, event: &Event, details: &[String]) {
        self.track(event);
        self.show(event, details);
        if self.total > 0 && !matches!(event.body, Body::RunFinished { .. }) {
            self.count();
        }
    }

    fn show(&mut self, event: &Event, details: &[String]) {
        let step = event.step().unwrap_or("").to_owned();
        match &event.body {
            Body::StepStarted {
                attempt,
                agent,
                merge,
                ..
            } => {
                let who = agent
                    .as_deref()
                    .map(|a| format!(" with {a}"))
                    .unwrap_or_default();
                let doing = if *merge { "merging" } else { "running" };
                self.bar(&step)
                    .set_message(format!("{doing}, attempt {attempt}{who}"));
            }
            // The final merge's bar goes once it is resolved; a step's stays for its own work.
            Body::MergeResolved { .. } => {
                if step == medley_engine::event::FINAL_MERGE
                    && let Some(bar) = self.running.remove(&step)
                {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                self.print(event);
            }
            Body::AgentOutput {
                summary,
                attempt,
                agent,
                ..
            } => {
                let line = format!("attempt {attempt} {agent}: {summary}");
                self.bar(&step).set_message(line);
            }
            Body::GateStarted { attempt, .. } if !step.is_empty() => {
                self.bar(&step)
                    .set_message(format!("gate, attempt {attempt}"));
            }
            Body::GateStarted { command, .. } => {
                self.print(event);
                let first = command.lines().next().unwrap_or("").to_owned();
                self.bar(MISSION_GATE)
                    .set_message(format!("gate `{first}`"));
            }
            Body::GateFinished { .. } if step.is_empty() => {
                if let Some(bar) = self.running.remove(MISSION_GATE) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                self.print(event);
                for line in details {
                    self.say(line);
                }
            }
            Body::StepFinished {
                outcome,
                attempts,
                duration_ms,
                commit,
                agent,
                tokens,
                cost_usd,
                ..
            } => {
                if let Some(bar) = self.running.remove(&step) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                // A step that ends again (a rejected result, a retry) has one row: its last.
                self.rows.retain(|r| r.step != step);
                self.rows.push(Row {
                    step: step.clone(),
                    outcome: *outcome,
                    attempts: *attempts,
                    ms: *duration_ms,
                    commit: commit.clone(),
                    tokens: agent.as_ref().map(|_| *tokens),
                    cost: *cost_usd,
                });
                self.print(event);
                for line in details {
                    self.say(line);
                }
            }
            Body::StepSkipped { .. } => {
                self.rows.push(Row {
                    step: step.clone(),
                    outcome: Outcome::Skipped,
                    attempts: 0,
                    ms: 0,
                    commit: None,
                    tokens: None,
                    cost: None,
                });
                self.print(event);
            }
            Body::RunFinished {
                tokens,
                cost_usd,
                unpriced_steps,
                uncounted_steps,
                ..
            } => {
                self.totals = Some((*tokens, *uncounted_steps, *cost_usd, *unpriced_steps));
                self.print(event);
            }
            Body::StepKept {
                outcome, commit, ..
            } => {
                self.rows.push(Row {
                    step: step.clone(),
                    outcome: *outcome,
                    attempts: 0,
                    ms: 0,
                    commit: commit.clone(),
                    tokens: None,
                    cost: None,
                });
                self.print(event);
            }
            Body::AttemptFailed { .. }
            | Body::AgentSwitched { .. }
            | Body::RunStarted { .. }
            | Body::ApprovalRequested { .. }
            | Body::ApprovalGiven { .. }
            | Body::ApprovalRefused { .. }
            | Body::StepsExpanded { .. }
            | Body::MergeConflict { .. }
            | Body::Warning { .. } => self.print(event),
            _ => {}
        }
    }

    /// Runs `f` (a prompt) with the live rows hidden, then draws them again.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bars.suspend(f)
    }

    /// Keeps the overall count up to date.
    fn track(&mut self, event: &Event) {
        match &event.body {
            Body::RunStarted { steps, .. } => {
                self.total = *steps;
                self.done = 0;
                self.ready.clear();
                self.ended.clear();
            }
            Body::StepReady { step, .. } => self.ready.push(step.clone()),
            Body::StepStarted { step, .. } => self.ready.retain(|s| s != step),
            Body::StepFinished { step, .. }
            | Body::StepSkipped { step, .. }
            | Body::StepKept { step, .. } => {
                self.ready.retain(|s| s != step);
                if !self.ended.contains(step) {
                    self.ended.push(step.clone());
                    self.done += 1;
                }
            }
            // The step ends as it becomes its children, which are counted from now on.
            Body::StepsExpanded { step, children, .. } => {
                self.ready.retain(|s| s != step);
                self.total += children.len();
                self.done += 1;
            }
            _ => {}
        }
    }

    /// Prints a line above the live rows; where the terminal cannot draw them (`TERM=dumb`),
    /// as a plain line, so that nothing is lost.
    fn say(&self, line: &str) {
        if self.bars.is_hidden() {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr().lock(),
                format!("{line}\n").as_bytes(),
            );
        } else {
            let _ = self.bars.println(line);
        }
    }

    fn print(&self, event: &Event) {
        if let Some(line) = super::line(event, self.color) {
            self.say(&line);
        }
    }

    /// Clears the live lines and prints the summary table.
    pub fn finish(&mut self) {
        // Nothing live is left behind, after Ctrl-C either: every row goes before the table.
        for (_, bar) in self.running.drain() {
            bar.finish_and_clear();
            self.bars.remove(&bar);
        }
        if let Some(header) = self.header.take() {
            header.finish_and_clear();
            self.bars.remove(&header);
        }
        // The table lists steps in the mission's order.
        if !self.order.is_empty() {
            let at = |step: &str| {
                self.order
                    .iter()
                    .position(|s| s == step)
                    .unwrap_or(usize::MAX)
            };
            self.rows.sort_by_key(|r| at(&r.step));
        }
        let _ = self.bars.clear();
        if self.rows.is_empty() {
            return;
        }
        let width = self
            .rows
            .iter()
            .map(|r| r.step.len())
            .max()
            .unwrap_or(4)
            .max(5);
        // Tokens and dollars only where an agent worked.
        let agents = self.rows.iter().any(|r| r.tokens.is_some());
        let line = |cells: [&str; 7]| {
            let mut line = format!(
                "{:<width$}  {:<10}  {:>8}  {:>8}  {:<10}",
                cells[0], cells[1], cells[2], cells[3], cells[4]
            );
            if agents {
                line.push_str(&format!("  {:>15}  {:>17}", cells[5], cells[6]));
            }
            format!("{}\n", line.trim_end())
        };
        let mut table = String::from("\n");
        table.push_str(&line([
            "step",
            "outcome",
            "attempts",
            "time",
            "commit",
            "tokens in/out",
            "cost",
        ]));
        for row in &self.rows {
            let tokens = row.tokens.map_or(String::new(), super::tokens);
            let cost = match row.tokens {
                Some(_) => super::cost(row.cost),
                None => String::new(),
            };
            table.push_str(&line([
                &row.step,
                row.outcome.name(),
                &row.attempts.to_string(),
                &human_duration(Duration::from_millis(row.ms)),
                row.commit
                    .as_deref()
                    .map_or("", |c| c.get(..10).unwrap_or(c)),
                &tokens,
                &cost,
            ]));
        }
        if let (Some((tokens, uncounted, cost, unpriced)), true) = (self.totals, agents) {
            let cost = super::run_cost(Some(cost), unpriced);
            let tokens = super::run_tokens(tokens, uncounted);
            table.push_str(&line(["total", "", "", "", "", &tokens, &cost]));
        }
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), table.as_bytes());
    }
}
