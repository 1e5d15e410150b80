//! Templates: each one parsed (shell ones checked for what they may not do), then tried against
//! the context it will have at run time, with placeholders for what only the run knows.
//! Why a render failed is explained by `compile::diagnostics`. A dynamic matrix's item is a
//! placeholder that takes any field; the fields its templates read are handed back.

use std::collections::HashMap;
use std::sync::Arc;

use fixedbitset::FixedBitSet;
use indexmap::IndexMap;
use minijinja::value::Value;
use toml::Spanned;

use super::Compiler;
use super::declare::Decl;
use super::dynamic::placeholder_matrix;
use crate::mission::diagnostics::{ErrorKind, MissionError};
use crate::plan::dag::{Upstream, index_by_id, step_keys};
use crate::plan::template::{self, Flavor, StepsContext, Templates};
use crate::plan::{PlanStep, TemplateRef};

impl<'m> Compiler<'m> {
    /// Parses a template into `templates`; reports syntax errors and refused constructs.
    pub(super) fn template(
        &mut self,
        templates: &mut Templates,
        value: Option<&Spanned<String>>,
        flavor: Flavor,
    ) -> Option<TemplateRef> {
        let value = value?;
        let reference = template_ref(value);
        if templates.contains(&reference.name, flavor) {
            return Some(reference);
        }
        let mut ok = true;
        if flavor == Flavor::Shell {
            for problem in template::shell_problems(value.get_ref()) {
                ok = false;
                self.push(
                    MissionError::new(ErrorKind::UnsafeShell, problem.message)
                        .label(self.span_in(value, Some(problem.range)), "refused here")
                        .help(problem.help),
                );
            }
        }
        if let Err(error) = templates.add(&reference.name, flavor, value.get_ref()) {
            ok = false;
            let detail = error.detail().unwrap_or("invalid template").to_owned();
            self.push(
                MissionError::new(ErrorKind::Template, format!("template syntax error: {detail}"))
                    .label(self.span_in(value, error.range()), detail)
                    .help("fix the template: `{{ name }}` prints a value, `{% if ... %}...{% endif %}` is a block (minijinja syntax)"),
            );
        }
        ok.then_some(reference)
    }

    /// Reports `steps.my-step` (read by Jinja as `steps.my - step`); true when there is none.
    fn dashed_refs(&mut self, value: &Spanned<String>, ids: &[String]) -> bool {
        let found = template::dashed_step_refs(value.get_ref(), ids);
        for (range, id) in &found {
            self.push(
                MissionError::new(
                    ErrorKind::UndefinedName,
                    format!(
                        "`steps.{id}` reads as a subtraction, `steps.{}`",
                        id.replace('-', " - ")
                    ),
                )
                .label(
                    self.span_in(value, Some(range.clone())),
                    "an id with `-` needs brackets",
                )
                .help(format!("write `steps[\"{id}\"]`")),
            );
        }
        found.is_empty()
    }

    pub(super) fn check_step_templates(
        &mut self,
        templates: &mut Templates,
        decls: &[Decl<'m>],
        steps: &[PlanStep],
        upstream: &Upstream,
        vars: &IndexMap<String, serde_json::Value>,
        mission: &str,
    ) -> Vec<(usize, Vec<String>)> {
        let mut items = Vec::new();
        let defaults = self.file.defaults.clone().unwrap_or_default();
        let placeholder = Some(template::placeholder_step());
        let no_values = Arc::new(HashMap::new());
        let nothing = Arc::new(FixedBitSet::with_capacity(steps.len()));
        let base = base_context(vars, mission);
        let index = index_by_id(steps);
        let all_ids: Vec<String> = decls
            .iter()
            .flat_map(|d| {
                std::iter::once(d.id.to_owned()).chain(
                    d.children
                        .iter()
                        .filter(|_| d.is_matrix)
                        .map(|c| c.id.clone()),
                )
            })
            .collect();
        for d in decls {
            let step = d.step.get_ref();
            let mut fields: Vec<(&str, &Spanned<String>, Flavor)> = Vec::new();
            if let Some(p) = &step.prompt {
                fields.push(("prompt", p, Flavor::Text));
            }
            if let Some(r) = &step.run {
                fields.push(("run", r, Flavor::Shell));
            }
            if let Some(g) = step.gate.as_ref().or(defaults.gate.as_ref()) {
                fields.push(("gate", g, Flavor::Shell));
            }
            if step.prompt.is_some()
                && let Some(r) = step
                    .retry_prompt
                    .as_ref()
                    .or(defaults.retry_prompt.as_ref())
            {
                fields.push(("retry_prompt", r, Flavor::Text));
            }
            if let Some(merge) = &step.merge {
                let merge = merge.get_ref();
                if let Some(p) = &merge.prompt {
                    fields.push(("merge.prompt", p, Flavor::Text));
                }
                if let Some(g) = &merge.gate {
                    fields.push(("merge.gate", g, Flavor::Shell));
                }
            }
            let parsed: Vec<_> = fields
                .into_iter()
                .filter_map(|(field, value, flavor)| {
                    let template = self.template(templates, Some(value), flavor)?;
                    self.dashed_refs(value, &all_ids)
                        .then_some((field, value, flavor, template))
                })
                .collect();
            let if_ok = match &step.if_ {
                Some(expr) => match templates.eval(expr.get_ref(), &Value::from(())) {
                    Err(e) if e.kind() == minijinja::ErrorKind::SyntaxError => {
                        let detail = e.detail().unwrap_or("invalid expression").to_owned();
                        self.push(
                            MissionError::new(
                                ErrorKind::Template,
                                format!("`if` expression syntax error: {detail}"),
                            )
                            .label(self.span_in(expr, e.range()), detail)
                            .help("write an expression such as `steps.build.outcome == 'passed'`"),
                        );
                        false
                    }
                    _ => true,
                },
                None => false,
            };
            let uses_steps = parsed
                .iter()
                .any(|(_, v, _, _)| v.get_ref().contains("steps"))
                || (if_ok
                    && step
                        .if_
                        .as_ref()
                        .is_some_and(|e| e.get_ref().contains("steps")));
            for child in &d.children {
                let Some(&i) = index.get(child.id.as_str()) else {
                    continue;
                };
                let steps_value = Value::from_object(StepsContext {
                    keys: upstream.keys.clone(),
                    visible: if uses_steps {
                        upstream.of(i)
                    } else {
                        nothing.clone()
                    },
                    values: no_values.clone(),
                    default: placeholder.clone(),
                });
                let matrix = match &d.dynamic {
                    Some(axis) => {
                        let item = placeholder_matrix(&axis.axis);
                        items.push((i, item.clone()));
                        template::map([(axis.axis.as_str(), Value::from_dyn_object(item))])
                    }
                    None => Value::from(minijinja::value::Serde(&child.matrix)),
                };
                for (field, value, flavor, t) in &parsed {
                    let mut ctx = base.clone();
                    ctx.push(("matrix", matrix.clone()));
                    ctx.push(("steps", steps_value.clone()));
                    if *field == "retry_prompt" {
                        ctx.push(("failure", template::placeholder_failure()));
                    }
                    let ctx = template::context(ctx);
                    if let Err(e) = templates.render(&t.name, *flavor, &ctx) {
                        self.render_error(
                            &e,
                            value,
                            field,
                            Some(d.id),
                            &ctx,
                            vars,
                            &child.matrix,
                            &all_ids,
                        );
                    }
                }
                if let (Some(expr), true) = (&step.if_, if_ok) {
                    let mut ctx = base.clone();
                    ctx.push(("matrix", matrix.clone()));
                    ctx.push(("steps", steps_value.clone()));
                    let ctx = template::context(ctx);
                    if let Err(e) = templates.eval(expr.get_ref(), &ctx) {
                        self.render_error(
                            &e,
                            expr,
                            "if",
                            Some(d.id),
                            &ctx,
                            vars,
                            &child.matrix,
                            &all_ids,
                        );
                    }
                }
            }
        }
        items
            .into_iter()
            .map(|(i, item)| (i, item.fields()))
            .collect()
    }

    pub(super) fn check_mission_templates(
        &mut self,
        templates: &Templates,
        gate: &Option<TemplateRef>,
        setup: &Option<TemplateRef>,
        steps: &[PlanStep],
        vars: &IndexMap<String, serde_json::Value>,
        mission: &str,
    ) {
        let base = base_context(vars, mission);
        let no_matrix = IndexMap::new();
        let all: Vec<String> = steps.iter().map(|s| s.id.clone()).collect();
        if let (Some(t), Some(value)) = (gate, &self.file.gate) {
            let mut ctx = base.clone();
            let mut everything = FixedBitSet::with_capacity(steps.len());
            everything.insert_range(..);
            ctx.push((
                "steps",
                Value::from_object(StepsContext {
                    keys: Arc::new(step_keys(steps)),
                    visible: Arc::new(everything),
                    values: Arc::new(HashMap::new()),
                    default: Some(template::placeholder_step()),
                }),
            ));
            let ctx = template::context(ctx);
            if let Err(e) = templates.render(&t.name, Flavor::Shell, &ctx) {
                self.render_error(&e, value, "gate", None, &ctx, vars, &no_matrix, &all);
            }
        }
        if let (Some(t), Some(value)) = (setup, &self.file.setup) {
            let ctx = template::context(base);
            if let Err(e) = templates.render(&t.name, Flavor::Shell, &ctx) {
                self.render_error(&e, value, "setup", None, &ctx, vars, &no_matrix, &all);
            }
        }
    }
}

/// The reference to a template string: kept in [`Templates`] under a name made from where the
/// string is in the file, so a string shared through `[defaults]` is parsed once.
pub(super) fn template_ref(value: &Spanned<String>) -> TemplateRef {
    TemplateRef {
        name: format!("t{}", value.span().start),
        source: value.get_ref().clone(),
    }
}

pub(super) fn base_context(
    vars: &IndexMap<String, serde_json::Value>,
    mission: &str,
) -> Vec<(&'static str, Value)> {
    vec![
        ("vars", Value::from(minijinja::value::Serde(vars))),
        ("mission", template::map([("name", Value::from(mission))])),
        (
            "run",
            template::map([
                ("id", Value::from("<run id>")),
                ("base", Value::from("<base commit>")),
            ]),
        ),
        ("attempt", Value::from(1)),
        ("file", template::file_function(|_| Ok(String::new()))),
    ]
}
