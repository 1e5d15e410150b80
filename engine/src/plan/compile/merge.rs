//! `merge = { agent, prompt, gate }`, on a step (its needs' merge) or at mission level (the
//! leaves' merge): the agent chain checked as a step's is, a step's `merge` refused where
//! there is nothing to merge, and the mission's templates tried on the final gate's context.

use std::collections::HashMap;
use std::sync::Arc;

use fixedbitset::FixedBitSet;
use indexmap::IndexMap;
use minijinja::value::Value;
use toml::Spanned;

use super::Compiler;
use super::templates::{base_context, template_ref};
use crate::mission::diagnostics::{ErrorKind, MissionError};
use crate::mission::model::Merge;
use crate::plan::dag::step_keys;
use crate::plan::template::{self, Flavor, StepsContext, Templates};
use crate::plan::{AgentSpec, MergeSpec, PlanStep};

impl<'m> Compiler<'m> {
    /// A step's `merge` (its templates are checked with the step's own), given the ids of the
    /// needs it merges and whether one of them is a matrix read from a step (whose children,
    /// known only at run time, may be several).
    pub(super) fn step_merge(
        &mut self,
        id: &str,
        merge: Option<&Spanned<Merge>>,
        needs: &[String],
        fans_out: bool,
        agents: &IndexMap<String, AgentSpec>,
    ) -> Option<MergeSpec> {
        let merge = merge?;
        if needs.len() < 2 && !fans_out {
            self.push(
                MissionError::new(
                    ErrorKind::Value,
                    format!(
                        "step `{id}` has a `merge` but needs {} step{}: there is nothing to merge",
                        needs.len(),
                        if needs.len() == 1 { "" } else { "s" }
                    ),
                )
                .label(merge.span(), "used only when two needs' results conflict")
                .help("remove `merge`, or give the step two or more `needs` (or a matrix step)"),
            );
        }
        self.merge_spec(merge, agents)
    }

    /// The agent chain and templates of a `merge`.
    fn merge_spec(
        &mut self,
        merge: &Spanned<Merge>,
        agents: &IndexMap<String, AgentSpec>,
    ) -> Option<MergeSpec> {
        let m = merge.get_ref();
        let chain = self.chain(&m.agent, agents)?;
        Some(MergeSpec {
            agents: chain,
            prompt: m.prompt.as_ref().map(template_ref),
            gate: m
                .gate
                .as_ref()
                .filter(|g| !g.get_ref().trim().is_empty())
                .map(template_ref),
        })
    }

    /// The mission's `merge`, its templates parsed and tried on the context of the final gate
    /// (every step visible).
    pub(super) fn mission_merge(
        &mut self,
        templates: &mut Templates,
        agents: &IndexMap<String, AgentSpec>,
        steps: &[PlanStep],
        vars: &IndexMap<String, serde_json::Value>,
        mission: &str,
    ) -> Option<MergeSpec> {
        let base = base_context(vars, mission);
        let merge = self.file.merge.as_ref()?;
        let spec = self.merge_spec(merge, agents);
        let m = merge.get_ref();
        let mut everything = FixedBitSet::with_capacity(steps.len());
        everything.insert_range(..);
        let all: Vec<String> = steps.iter().map(|s| s.id.clone()).collect();
        let fields = [
            ("merge.prompt", m.prompt.as_ref(), Flavor::Text),
            ("merge.gate", m.gate.as_ref(), Flavor::Shell),
        ];
        for (field, value, flavor) in fields {
            let Some(value) = value else { continue };
            let Some(t) = self.template(templates, Some(value), flavor) else {
                continue;
            };
            let mut ctx = base.clone();
            ctx.push((
                "steps",
                Value::from_object(StepsContext {
                    keys: Arc::new(step_keys(steps)),
                    visible: Arc::new(everything.clone()),
                    values: Arc::new(HashMap::new()),
                    default: Some(template::placeholder_step()),
                }),
            ));
            let ctx = template::context(ctx);
            if let Err(e) = templates.render(&t.name, flavor, &ctx) {
                self.render_error(&e, value, field, None, &ctx, vars, &IndexMap::new(), &all);
            }
        }
        spec
    }
}
