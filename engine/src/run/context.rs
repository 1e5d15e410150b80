//! The template context of a step (`vars`, `mission`, `run`, `matrix`, `attempt`, `steps`,
//! `file()`, `failure`), and rendering the plan's templates with it off the async runtime.

use std::collections::HashMap;
use std::sync::Arc;

use git2::Oid;
use minijinja::value::Value;

use super::state::{Scope, Shared};
use crate::event::Outcome;
use crate::plan::template::{self, StepsContext};
use crate::plan::{Flavor, TemplateRef};

impl Shared {
    /// The template context of step `i` (or of the mission's gate, with `None`). It reads git
    /// (diffs, and `file()` while rendering): build and use it off the async runtime.
    pub(crate) fn context(
        &self,
        scope: Scope,
        attempt: u32,
        base: Oid,
        uses_steps: bool,
    ) -> Result<Value, String> {
        let plan = &self.plan;
        let matrix = scope
            .step()
            .map(|i| plan.steps[i].matrix.clone())
            .unwrap_or_default();
        let repo = self.repo.clone();
        let steps = if uses_steps {
            self.steps_value(scope)?
        } else {
            Value::from_object(StepsContext {
                keys: self.upstream.keys.clone(),
                visible: Arc::new(fixedbitset::FixedBitSet::with_capacity(plan.steps.len())),
                values: Arc::new(HashMap::new()),
                default: None,
            })
        };
        Ok(template::context(vec![
            ("vars", Value::from(minijinja::value::Serde(&plan.vars))),
            (
                "mission",
                template::map([("name", Value::from(plan.mission.as_str()))]),
            ),
            (
                "run",
                template::map([
                    ("id", Value::from(self.run.as_str())),
                    ("base", Value::from(self.base.to_string())),
                ]),
            ),
            ("matrix", Value::from(minijinja::value::Serde(&matrix))),
            ("attempt", Value::from(attempt)),
            ("steps", steps),
            (
                "file",
                template::file_function(move |path| repo.read_file(base, path)),
            ),
        ]))
    }

    /// `steps.<id>` for step `i`: the results of the steps upstream of it (every step for the
    /// mission's gate), with matrix steps summed up over their children. A reused result is
    /// `passed` with `cached` true, and hands on what the run that made it handed on.
    fn steps_value(&self, scope: Scope) -> Result<Value, String> {
        let plan = &self.plan;
        let visible = match scope {
            Scope::Step(i) => self.upstream.of(i),
            Scope::Mission => {
                let mut all = fixedbitset::FixedBitSet::with_capacity(plan.steps.len());
                all.insert_range(..);
                Arc::new(all)
            }
        };
        let records = self.records.lock().map(|r| r.clone()).unwrap_or_default();
        let mut values = HashMap::new();
        for (key, members) in &self.upstream.keys.keys {
            if !members.iter().all(|&m| visible.contains(m)) {
                continue;
            }
            let mut outcome = Outcome::Passed;
            let mut cached = !members.is_empty();
            let mut cost_usd = Some(0.0);
            let mut diff = String::new();
            let mut files: Vec<String> = Vec::new();
            let mut output = String::new();
            let mut commit = None;
            for &m in members {
                let Some(record) = &records[m] else {
                    outcome = Outcome::Skipped;
                    cached = false;
                    cost_usd = None;
                    continue;
                };
                if !record.outcome.ok() && outcome.ok() {
                    outcome = record.outcome;
                }
                cached &= record.outcome == Outcome::Cached;
                cost_usd = match (cost_usd, record.cost_usd) {
                    (Some(sum), Some(c)) => Some(sum + c),
                    _ => None,
                };
                if let Some(c) = record.commit {
                    let id = &plan.steps[m].id;
                    let text = self
                        .repo
                        .diff_text(record.base, c)
                        .map_err(|e| format!("cannot make the diff of step `{id}`: {e}"))?;
                    diff.push_str(&text);
                    let changed = self
                        .repo
                        .changed_files(record.base, c)
                        .map_err(|e| format!("cannot list the files of step `{id}`: {e}"))?;
                    for f in changed {
                        if !files.contains(&f) {
                            files.push(f);
                        }
                    }
                    commit = Some(c.to_string());
                }
                if !output.is_empty() && !record.output.is_empty() {
                    output.push('\n');
                }
                output.push_str(&record.output);
            }
            values.insert(
                key.clone(),
                template::map([
                    ("outcome", Value::from(outcome.name())),
                    ("cached", Value::from(cached)),
                    ("output", Value::from(output)),
                    ("diff", Value::from(diff)),
                    ("files", Value::from(files)),
                    ("commit", commit.map_or(Value::from(()), Value::from)),
                    ("cost_usd", cost_usd.map_or(Value::from(()), Value::from)),
                ]),
            );
        }
        Ok(Value::from_object(StepsContext {
            keys: self.upstream.keys.clone(),
            visible,
            values: Arc::new(values),
            default: None,
        }))
    }
}

/// Renders a template of the plan for step `i` with the run's context (a shell template as its
/// display), off the async runtime: the context reads git (diffs of upstream steps, `file()`).
pub(crate) async fn render(
    shared: &Arc<Shared>,
    scope: Scope,
    template: &TemplateRef,
    flavor: Flavor,
    attempt: u32,
    base: Oid,
    failure: Option<Value>,
) -> Result<String, String> {
    let shared = shared.clone();
    let template = template.clone();
    super::blocking(move || {
        let context = render_context(&shared, scope, &template, attempt, base, failure)?;
        shared
            .plan
            .templates
            .render(&template.name, flavor, &context)
            .map_err(|e| e.detail().map_or_else(|| e.to_string(), str::to_owned))
    })
    .await
    .map_err(|e| format!("the rendering task failed: {e}"))?
}

/// Renders a shell template of the plan (`run`, `gate`, `setup`) for step `i`, off the async
/// runtime.
pub(crate) async fn render_shell(
    shared: &Arc<Shared>,
    scope: Scope,
    template: &TemplateRef,
    attempt: u32,
    base: Oid,
) -> Result<crate::plan::template::ShellCommand, String> {
    let shared = shared.clone();
    let template = template.clone();
    super::blocking(move || {
        let context = render_context(&shared, scope, &template, attempt, base, None)?;
        shared
            .plan
            .templates
            .render_shell(&template.name, &context)
            .map_err(|e| e.detail().map_or_else(|| e.to_string(), str::to_owned))
    })
    .await
    .map_err(|e| format!("the rendering task failed: {e}"))?
}

fn render_context(
    shared: &Shared,
    scope: Scope,
    template: &TemplateRef,
    attempt: u32,
    base: Oid,
    failure: Option<Value>,
) -> Result<Value, String> {
    let mut context = shared.context(scope, attempt, base, template.source.contains("steps"))?;
    if let Some(failure) = failure {
        let mut pairs: std::collections::BTreeMap<String, Value> =
            std::collections::BTreeMap::new();
        if let Ok(iter) = context.try_iter() {
            for key in iter {
                if let Ok(v) = context.get_item(&key) {
                    pairs.insert(key.to_string(), v);
                }
            }
        }
        pairs.insert("failure".to_owned(), failure);
        context = Value::from(pairs);
    }
    Ok(context)
}
