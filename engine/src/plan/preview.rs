//! A template rendered before the run, for `run --dry-run`: what vars, mission and matrix already say.

use super::template::{self, Flavor};
use super::{Plan, PlanStep, TemplateRef};

impl Plan {
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
