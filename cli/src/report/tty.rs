//! The live view: one line per running step (state, attempt, elapsed), the notable events
//! above them, and a summary table at the end. On stderr.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use medley_engine::event::{Body, Event, Outcome};
use medley_engine::run::human_duration;

pub struct Live {
    color: bool,
    bars: MultiProgress,
    running: HashMap<String, ProgressBar>,
    rows: Vec<(String, Outcome, u32, u64, Option<String>)>,
}

impl Live {
    pub fn new(color: bool) -> Live {
        Live {
            color,
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            running: HashMap::new(),
            rows: Vec::new(),
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

    pub fn event(&mut self, event: &Event) {
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
            Body::AgentOutput { summary, .. } => {
                self.bar(&step).set_message(summary.clone());
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
                ..
            } => {
                if let Some(bar) = self.running.remove(&step) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                self.rows.push((
                    step.clone(),
                    *outcome,
                    *attempts,
                    *duration_ms,
                    commit.clone(),
                ));
                self.print(event);
            }
            Body::StepSkipped { .. } => {
                self.rows.push((step.clone(), Outcome::Skipped, 0, 0, None));
                self.print(event);
            }
            Body::AttemptFailed { .. } | Body::RunStarted { .. } | Body::RunFinished { .. } => {
                self.print(event)
            }
            Body::GateFinished { .. } if step.is_empty() => self.print(event),
            Body::GateStarted { .. } if step.is_empty() => self.print(event),
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
            .map(|r| r.0.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut table = format!(
            "\n{:<width$}  {:<9}  {:>8}  {:>8}  commit\n",
            "step", "outcome", "attempts", "time"
        );
        for (step, outcome, attempts, ms, commit) in &self.rows {
            table.push_str(&format!(
                "{step:<width$}  {:<9}  {attempts:>8}  {:>8}  {}\n",
                outcome.name(),
                human_duration(Duration::from_millis(*ms)),
                commit.as_deref().map_or("", |c| c.get(..10).unwrap_or(c)),
            ));
        }
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), table.as_bytes());
    }
}
