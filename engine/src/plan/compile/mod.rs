//! Compile: a loaded [`Mission`] -> a [`Plan`].
//!
//! Defaults and `--set` are applied, matrices expanded, `needs` resolved, the DAG built and
//! ordered (ties broken by the order steps are written), and every template parsed and tried
//! against the context it will have at run time. Every problem is collected, then reported at
//! once as one [`MissionErrors`].
//!
//! This file runs the stages in order (`Compiler::run`) and holds the defaults. Each stage's
//! checks and their messages:
//!
//! - `settings.rs`: the mission's name, `max_parallel`/`max_steps`/`attempts`, `secrets`,
//!   `setup_files`.
//! - `vars.rs`: `[vars]` values, and `--set` applied to them ([`SetError`]).
//! - `agents.rs`: agent profiles, and a step's `agent` chain.
//! - `declare.rs`: `[steps.<id>]` ids, the `max_steps` cap, matrix children's ids.
//! - `matrix.rs`: a `matrix` expanded into its children; `dynamic.rs`: a matrix read from an
//!   upstream step (`{ from, file }`), checked here and expanded by the run (`plan::expand`).
//! - `needs.rs`: `needs` resolved to steps, and cycles reported (found by `plan::dag`).
//! - `steps.rs`: each concrete step's body and `[defaults]`: prompt or run, attempts, timeout,
//!   gate, inputs.
//! - `approvals.rs`: `approve` and `on_reject` (steps, `[defaults]`, the mission).
//! - `merge.rs`: `merge = { agent, prompt, gate }` on a step or the mission.
//! - `templates.rs`: every template parsed and tried on the context it will have at run time.
//! - `diagnostics.rs`: why a template failed (undefined name, not upstream, did you mean), and
//!   the span in the file of a problem inside a template string.

mod agents;
mod approvals;
mod declare;
mod diagnostics;
mod dynamic;
mod matrix;
mod merge;
mod needs;
mod settings;
mod steps;
mod templates;
mod vars;

use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;

use indexmap::IndexMap;
use toml::Spanned;

use super::template::{Flavor, Templates};
use super::{Plan, PlanStep};
use crate::mission::diagnostics::{ErrorKind, MissionError, MissionErrors, Problems};
use crate::mission::{Mission, MissionFile};

pub use super::dag::{Upstream, find_cycles, step_keys, topological_order};
use super::ids::invalid_id;
pub use super::ids::{MAX_ID_BYTES, is_valid_id};
pub use dynamic::DEFAULT_MAX_CHILDREN;
pub use vars::SetError;

/// What shapes a plan besides its file, from the command line (or a run's record): built
/// into the plan in one place, [`compile`].
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--set name=value` overrides of `[vars]`, in order.
    pub sets: Vec<(String, String)>,
    /// `--only STEP`: that step and what it needs (the mission's gate is not run).
    pub only: Option<String>,
    /// `--max-parallel N`, over the mission's `max_parallel`.
    pub max_parallel: Option<usize>,
}

/// Why a mission did not compile.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CompileError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Mission(Box<MissionErrors>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Set(SetError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Only(super::UnknownStep),
}

const DEFAULT_ATTEMPTS: u32 = 2;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_MAX_PARALLEL: usize = 4;
/// The most steps a plan may have unless the mission sets `max_steps`.
pub const DEFAULT_MAX_STEPS: u64 = 1000;

/// Names for a message: each in backticks, comma-separated (`` `a`, `b` ``).
fn code_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compiles a loaded mission into a plan, or reports every problem it has.
pub fn compile(mission: &Mission, options: &PlanOptions) -> Result<Plan, CompileError> {
    // `run` reports the problems it collected itself, before anything else can fail.
    let mut plan = Compiler {
        mission,
        file: &mission.file,
        problems: Problems(mission.key_errors.clone()),
    }
    .run(options)?;
    if let Some(only) = &options.only {
        plan.only(only).map_err(CompileError::Only)?;
    }
    if let Some(n) = options.max_parallel {
        plan.max_parallel = n;
    }
    Ok(plan)
}

struct Compiler<'m> {
    mission: &'m Mission,
    file: &'m MissionFile,
    problems: Problems,
}

impl<'m> Compiler<'m> {
    fn push(&mut self, error: MissionError) {
        self.problems.push(error);
    }

    /// Where `[<table>.<id>]` is written (its key, or else the whole `table`), with `id` checked
    /// there: an invalid one is reported as an invalid `what`.
    fn declared_id(
        &mut self,
        keys: &IndexMap<String, Range<usize>>,
        id: &str,
        table: Range<usize>,
        what: &str,
    ) -> Range<usize> {
        let key = keys.get(id).cloned().unwrap_or(table);
        if !is_valid_id(id) {
            self.push(invalid_id(what, id, key.clone()));
        }
        key
    }

    /// Reports `glob` (an entry of `key`) when it is not a valid glob.
    fn check_glob(&mut self, glob: &Spanned<String>, key: &str, help: &str) {
        if let Err(e) = crate::cache::input_globs(std::slice::from_ref(glob.get_ref())) {
            self.push(
                MissionError::new(
                    ErrorKind::Value,
                    format!("`{}` in `{key}` is not a valid glob", glob.get_ref()),
                )
                .label(glob.span(), e.kind().to_string())
                .help(help),
            );
        }
    }

    fn run(&mut self, options: &PlanOptions) -> Result<Plan, CompileError> {
        let name = self.mission_name();
        let vars = self.vars();
        let agents = self.agents();
        let max_parallel = self.positive(self.file.max_parallel.as_ref(), "max_parallel");
        if let Some(budget) = &self.file.budget_usd
            && !(budget.get_ref().is_finite() && *budget.get_ref() > 0.0)
        {
            self.push(
                MissionError::new(ErrorKind::Value, "`budget_usd` must be more than 0")
                    .label(budget.span(), "not a positive amount")
                    .help("write the most the run may spend, in US dollars, e.g. `5.0`"),
            );
        }
        let secrets = self.secrets();
        let max_steps = self
            .positive(self.file.max_steps.as_ref(), "max_steps")
            .map_or(DEFAULT_MAX_STEPS, u64::from);
        let decls = self.declare_steps(max_steps);
        let needs = self.resolve_needs(&decls);
        let acyclic = self.check_cycles(&decls, &needs);
        let mut steps = self.concrete_steps(&decls, &needs, &agents);

        let mut vars = vars;
        let sets = vars::apply_sets(&mut vars, &options.sets);

        let order = if acyclic {
            topological_order(&steps)
        } else {
            (0..steps.len()).collect()
        };
        let mut templates = Templates::new();
        let gate = self.template(&mut templates, self.file.gate.as_ref(), Flavor::Shell);
        let setup = self.template(&mut templates, self.file.setup.as_ref(), Flavor::Shell);
        let setup_files = self.setup_files();
        let upstream = Upstream::new(&steps, acyclic.then_some(order.as_slice()));
        let fields =
            self.check_step_templates(&mut templates, &decls, &steps, &upstream, &vars, &name);
        for (i, read) in fields {
            if let Some(axis) = steps[i].dynamic.as_mut() {
                axis.fields = read;
            }
        }
        self.check_mission_templates(&templates, &gate, &setup, &steps, &vars, &name);
        let merge = self.mission_merge(&mut templates, &agents, &steps, &vars, &name);

        let approve = self.mission_approval();
        if !self.problems.is_empty() {
            return Err(CompileError::Mission(Box::new(MissionErrors::new(
                &self.mission.display_path(),
                &self.mission.source,
                std::mem::take(&mut self.problems.0),
            ))));
        }
        sets.map_err(CompileError::Set)?;

        let mut ordered = Vec::with_capacity(steps.len());
        let mut slots: Vec<Option<PlanStep>> = steps.drain(..).map(Some).collect();
        for i in order {
            if let Some(step) = slots[i].take() {
                ordered.push(step);
            }
        }
        let used: HashSet<&str> = ordered
            .iter()
            .flat_map(|s| {
                s.agents()
                    .iter()
                    .chain(s.merge.iter().flat_map(|m| &m.agents))
            })
            .chain(merge.iter().flat_map(|m| &m.agents))
            .map(String::as_str)
            .collect();
        let agents = agents
            .into_iter()
            .filter(|(n, _)| used.contains(n.as_str()) || self.file.agents.contains_key(n))
            .collect();
        Ok(Plan {
            mission: name,
            path: self.mission.display_path(),
            description: self.file.description.clone(),
            max_parallel: max_parallel.map_or(DEFAULT_MAX_PARALLEL, |n| n as usize),
            budget_usd: self.file.budget_usd.as_ref().map(|b| *b.get_ref()),
            gate,
            setup,
            setup_files,
            fresh_worktrees: self.file.worktree == Some(crate::mission::WorktreeMode::Fresh),
            vars,
            secrets,
            agents,
            steps: ordered,
            approve,
            merge,
            partial: false,
            templates,
        })
    }
}
