//! The live view: one line per running step (state, attempt, what its agent is doing, elapsed),
//! the notable events above them, and a summary table at the end. On stderr.

use std::collections::HashMap;
use std::time::Duration;

use crate::style::human_duration;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use medley_engine::event::{Body, Event, Outcome};

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
            running: HashMap::new(),
            rows: Vec::new(),
            totals: None,
        }
    }

    fn bar(&mut self, step: &str) -> &ProgressBar {
        let bars = &self.bars;
        self.running.entry(step.to_owned()).or_insert_with(|| {
            let bar = bars.add(ProgressBar::new_spinner());
            let style = ProgressStyle::with_template("{spinner} {prefix:<24} {msg} {elapsed:>4}")
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
        let step = event.step().unwrap_or("").to_owned();
        match &event.body {
            Body::StepStarted { attempt, agent, .. } => {
                let who = agent
                    .as_deref()
                    .map(|a| format!(" with {a}"))
                    .unwrap_or_default();
                self.bar(&step)
                    .set_message(format!("running, attempt {attempt}{who}"));
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
                    let _ = self.bars.println(line);
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
            | Body::Warning { .. } => self.print(event),
            Body::GateStarted { .. } | Body::GateFinished { .. } if step.is_empty() => {
                self.print(event);
                for line in details {
                    let _ = self.bars.println(line);
                }
            }
            _ => {}
        }
    }

    fn print(&self, event: &Event) {
        if let Some(line) = super::line(event, self.color) {
            let _ = self.bars.println(line);
        }
    }

    /// Clears the live lines and prints the summary table.
    pub fn finish(&mut self) {
        for (_, bar) in self.running.drain() {
            bar.finish_and_clear();
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
        let mut table = format!(
            "\n{:<width$}  {:<9}  {:>8}  {:>8}  {:<10}  {:>15}  {:>9}\n",
            "step", "outcome", "attempts", "time", "commit", "tokens in/out", "cost"
        );
        for row in &self.rows {
            let tokens = row.tokens.map_or(String::new(), super::tokens);
            let cost = match (row.cost, row.tokens.is_some()) {
                (Some(c), _) => format!("${c:.4}"),
                (None, true) => "unknown".to_owned(),
                (None, false) => String::new(),
            };
            table.push_str(&format!(
                "{:<width$}  {:<9}  {:>8}  {:>8}  {:<10}  {tokens:>15}  {cost:>9}\n",
                row.step,
                row.outcome.name(),
                row.attempts,
                human_duration(Duration::from_millis(row.ms)),
                row.commit
                    .as_deref()
                    .map_or("", |c| c.get(..10).unwrap_or(c)),
            ));
        }
        if let Some((tokens, uncounted, cost, unpriced)) = self.totals {
            let cost = if unpriced > 0 {
                format!("${cost:.4} + unknown")
            } else {
                format!("${cost:.4}")
            };
            let tokens = super::run_tokens(tokens, uncounted);
            table.push_str(&format!(
                "{:<width$}  {:<9}  {:>8}  {:>8}  {:<10}  {tokens:>15}  {cost:>9}\n",
                "total", "", "", "", ""
            ));
        }
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), table.as_bytes());
    }
}
