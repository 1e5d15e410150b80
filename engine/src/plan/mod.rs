//! Plans: a mission compiled into concrete steps in a DAG, ready to run.

pub mod compile;
pub mod graph;
pub mod shell;
pub mod template;

use std::time::Duration;

use indexmap::IndexMap;
use serde::Serialize;

pub use compile::{CompileOptions, SetError, compile};
pub use template::{Flavor, Templates};

use crate::mission::model::{Price, Runtime, Strategy};

/// A compiled mission: concrete steps (matrices expanded) in a deterministic topological order.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub mission: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub max_parallel: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// The final gate's template, run on the merged result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<TemplateRef>,
    /// The setup template, run in every worktree a step gets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup: Option<TemplateRef>,
    /// The files (globs) setup depends on: it then runs only when they changed for the slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_files: Option<Vec<String>>,
    /// `worktree = "fresh"` for the mission (its final gate's worktree too).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fresh_worktrees: bool,
    pub vars: IndexMap<String, serde_json::Value>,
    /// Environment variables whose values are masked in everything medley writes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// The agent profiles the steps use, by name.
    pub agents: IndexMap<String, AgentSpec>,
    /// Concrete steps; every step comes after the steps it needs.
    pub steps: Vec<PlanStep>,
    /// Only part of the mission (`--only`): its final gate is not run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    #[serde(skip)]
    pub templates: Templates,
}

/// A template kept in [`Plan::templates`] under `name`, with its source text.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateRef {
    #[serde(skip)]
    pub name: String,
    pub source: String,
}

/// An agent profile with every default applied.
#[derive(Debug, Clone, Serialize)]
pub struct AgentSpec {
    pub name: String,
    pub runtime: Runtime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<Vec<String>>,
}

/// One concrete step of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStep {
    /// The step's id: the declared id, or `<step>.<value>...` for a matrix child.
    pub id: String,
    /// The `[steps.<id>]` table it comes from.
    pub declared: String,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub matrix: IndexMap<String, serde_json::Value>,
    pub action: Action,
    /// Ids of the concrete steps this one needs, in the order written.
    pub needs: Vec<String>,
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    pub if_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<TemplateRef>,
    pub attempts: u32,
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    pub cache: bool,
    /// `worktree = "fresh"` (the step's, else the mission's).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fresh_worktree: bool,
}

/// What a step does.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// An agent step: the prompt goes to the chain's agents.
    Agent {
        prompt: TemplateRef,
        agents: Vec<String>,
        strategy: Strategy,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_prompt: Option<TemplateRef>,
    },
    /// A command step, run with `sh -c`.
    Command { run: TemplateRef },
}

impl PlanStep {
    /// The agent chain of an agent step; empty for a command step.
    pub fn agents(&self) -> &[String] {
        match &self.action {
            Action::Agent { agents, .. } => agents,
            Action::Command { .. } => &[],
        }
    }
}

impl Plan {
    pub fn step(&self, id: &str) -> Option<&PlanStep> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// Durations in the mission's own notation (`90s`, `20m`, `1h30m`).
pub mod duration_text {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// `1h30m`, `90s`, `250ms`: the largest units that divide exactly.
    pub fn format(d: Duration) -> String {
        let mut ms = d.as_millis();
        if ms == 0 {
            return "0s".to_owned();
        }
        let mut out = String::new();
        for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
            if ms >= size {
                out.push_str(&format!("{}{unit}", ms / size));
                ms %= size;
            }
        }
        out
    }

    /// Parses `<number><unit>` groups (units `ms`, `s`, `m`, `h`), e.g. `90s`, `1h30m`.
    pub fn parse(text: &str) -> Option<Duration> {
        let mut total: u64 = 0;
        let mut rest = text;
        if rest.is_empty() {
            return None;
        }
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return None;
            }
            let n: u64 = rest[..digits].parse().ok()?;
            rest = &rest[digits..];
            let (unit_ms, len) = if rest.starts_with("ms") {
                (1, 2)
            } else if rest.starts_with('s') {
                (1000, 1)
            } else if rest.starts_with('m') {
                (60_000, 1)
            } else if rest.starts_with('h') {
                (3_600_000, 1)
            } else {
                return None;
            };
            rest = &rest[len..];
            total = total.checked_add(n.checked_mul(unit_ms)?)?;
        }
        Some(Duration::from_millis(total))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_and_formats() {
            assert_eq!(parse("90s"), Some(Duration::from_secs(90)));
            assert_eq!(parse("20m"), Some(Duration::from_secs(1200)));
            assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
            assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
            for bad in ["20 mins", "", "m", "10", "1.5h", "-1s", "10d"] {
                assert_eq!(parse(bad), None, "{bad}");
            }
            assert_eq!(format(Duration::from_secs(5400)), "1h30m");
            assert_eq!(format(Duration::from_millis(1500)), "1s500ms");
        }
    }
}

/// `--only STEP` names no step of the plan.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("`--only {0}`: the mission has no step `{0}`")]
#[diagnostic(help("{1}"))]
pub struct UnknownStep(pub String, pub String);

impl Plan {
    /// Keeps only `id` (a step, a matrix step's children, or one child) and what it needs.
    pub fn only(&mut self, id: &str) -> Result<(), UnknownStep> {
        let mut keep: std::collections::HashSet<String> = self
            .steps
            .iter()
            .filter(|s| s.id == id || s.declared == id)
            .map(|s| s.id.clone())
            .collect();
        if keep.is_empty() {
            let mut ids: Vec<&str> = self.steps.iter().map(|s| s.id.as_str()).collect();
            ids.extend(self.steps.iter().map(|s| s.declared.as_str()));
            ids.dedup();
            let help = crate::mission::suggest::did_you_mean(id, ids, "the steps are");
            return Err(UnknownStep(id.to_owned(), help));
        }
        // Steps come after what they need, so one backward pass collects the closure.
        for step in self.steps.iter().rev() {
            if keep.contains(&step.id) {
                keep.extend(step.needs.iter().cloned());
            }
        }
        self.steps.retain(|s| keep.contains(&s.id));
        self.partial = true;
        Ok(())
    }

    /// A template rendered with what is known before the run (vars, mission, matrix), or
    /// `None` when it needs more (step results, the run id, files).
    pub fn preview(
        &self,
        step: Option<&PlanStep>,
        template: &TemplateRef,
        flavor: Flavor,
    ) -> Option<String> {
        use minijinja::value::Value;
        let matrix = step.map(|s| s.matrix.clone()).unwrap_or_default();
        let context = template::context(vec![
            ("vars", Value::from(minijinja::value::Serde(&self.vars))),
            (
                "mission",
                template::map([("name", Value::from(self.mission.as_str()))]),
            ),
            ("matrix", Value::from(minijinja::value::Serde(&matrix))),
            ("attempt", Value::from(1)),
        ]);
        self.templates.render(&template.name, flavor, &context).ok()
    }
}
