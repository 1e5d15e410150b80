//! Plans: a mission compiled into concrete steps in a DAG, ready to run.
//!
//! This file holds the plan's types ([`Plan`], [`PlanStep`], [`Action`], [`AgentSpec`],
//! [`TemplateRef`]), as `run --dry-run --output json` prints them. Where the rest lives:
//!
//! - `compile/`: a loaded mission -> a [`Plan`], every problem found reported at once; its
//!   `mod.rs` says which file checks what (settings, vars, agents, steps, matrices, needs,
//!   templates, and the diagnostics for templates).
//! - `dag.rs`: the steps upstream of each step, the order steps run in, cycles in `needs`.
//! - `expand.rs`: a dynamic matrix expanded at run time, from the JSON its upstream wrote.
//! - `ids.rs`: what a valid id is, the suggestion for an invalid one, matrix child ids.
//! - `duration`: `90s`, `1h30m` parsed and written (`mission::duration`, also named
//!   `plan::duration_text`: a mission's durations are checked when it loads too).
//! - `template/`: minijinja templates in their two flavours (prompt text, shell command), the
//!   context they see, and what a shell template may not do.
//! - `shell/`: where a value stands in a shell command, and how it is handed over safely.
//! - `only.rs`: `--only STEP`. `preview.rs`: templates rendered for `run --dry-run`.
//! - `graph.rs`: the DAG as Graphviz DOT or Mermaid (`medley graph`).

pub mod compile;
pub mod dag;
pub use crate::mission::duration;
pub mod expand;
pub mod graph;
pub mod ids;
mod only;
mod preview;
pub mod shell;
pub mod template;

use std::time::Duration;

use indexmap::IndexMap;
use serde::Serialize;

pub use compile::{PlanOptions, SetError, compile};
pub use duration as duration_text;
pub use only::UnknownStep;
pub use template::{Flavor, Templates};

use crate::mission::model::{OnReject, Price, Runtime, Strategy};

/// A compiled mission: concrete steps (matrices expanded) in a deterministic topological order.
#[derive(Debug, Clone, Serialize)]
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
    /// `approve`: the final result waits for a person with this message before its branch is
    /// made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approve: Option<String>,
    /// `merge` at mission level: how a conflict between the leaves' results is resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeSpec>,
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
    /// `approve`: once passed, its result waits for a person with this message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approve: Option<String>,
    /// What a rejection does (with `approve`).
    #[serde(skip_serializing_if = "is_fail")]
    pub on_reject: OnReject,
    /// A matrix whose values come from an upstream step's result: this step stands for its
    /// children until that step passes (`split.*` from `plan`), then is expanded into them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicAxis>,
    /// `merge`: how a conflict between the results of its needs is resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeSpec>,
}

fn is_fail(on_reject: &OnReject) -> bool {
    *on_reject == OnReject::Fail
}

/// A matrix axis read at run time: `{ from = "plan", file = "tasks.json" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DynamicAxis {
    /// The axis' name (`matrix.<axis>` in templates).
    pub axis: String,
    /// The step whose result holds the file (one the step needs).
    pub from: String,
    /// The file, in that step's result commit: a JSON array of strings or objects.
    pub file: String,
    /// The most children the list may make (`max_children`, default 50).
    pub max_children: usize,
    /// The fields of `matrix.<axis>` the step's templates use: every item must be an object
    /// that has them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// A merge agent (`merge = { agent, prompt, gate }`): the chain that resolves a conflict, what
/// it is told first, and the gate its resolution must pass.
#[derive(Debug, Clone, Serialize)]
pub struct MergeSpec {
    pub agents: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<TemplateRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<TemplateRef>,
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
    /// The most steps the run may have: the plan's, and every dynamic matrix's most children.
    pub fn capacity(&self) -> usize {
        self.steps.len()
            + self
                .steps
                .iter()
                .filter_map(|s| s.dynamic.as_ref().map(|d| d.max_children))
                .sum::<usize>()
    }

    pub fn step(&self, id: &str) -> Option<&PlanStep> {
        self.steps.iter().find(|s| s.id == id)
    }
}
