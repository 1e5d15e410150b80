//! A dynamic matrix expanded: the JSON file its upstream step wrote, read into children
//! (`<step>.<value-id>`, by the id rules and checks of a static matrix, `plan::ids`), and the
//! plan grown by them. The run calls it when the upstream step passes (and a resumed run for
//! upstream results it keeps): the same file always makes the same children.

use indexmap::IndexMap;
use serde_json::Value;

use super::ids::{ChildIdProblem, MAX_ID_BYTES, SAME_HELP, TOO_LONG_HELP};
use super::{Plan, PlanStep, ids};

/// A plan with a dynamic step's children added.
#[derive(Debug)]
pub struct Expanded {
    /// The plan: the children come after every step it had (so plan indices stay), and the
    /// steps that needed the dynamic step need its children instead.
    pub plan: Plan,
    /// The children's ids, in the list's order.
    pub children: Vec<String>,
}

/// Expands dynamic step `i` of `plan` from `text`, the file its axis names. The error says
/// what is wrong with the file, naming it and the step it came from.
pub fn expand(plan: &Plan, i: usize, text: &str) -> Result<Expanded, String> {
    let step = &plan.steps[i];
    let Some(axis) = &step.dynamic else {
        return Err(format!("step `{}` has no matrix read from a step", step.id));
    };
    let place = format!("`{}` in the result of step `{}`", axis.file, axis.from);
    let items = items(step, text).map_err(|why| format!("{place} {why}"))?;
    let mut plan = plan.clone();
    let placeholder = plan.steps[i].clone();
    let mut children = Vec::with_capacity(items.len());
    let before = plan.steps.len();
    for (id, value) in items {
        let mut child = placeholder.clone();
        child.id = id.clone();
        child.matrix = IndexMap::from([(axis.axis.clone(), value)]);
        child.dynamic = None;
        plan.steps.push(child);
        children.push(id);
    }
    for other in plan.steps.iter_mut().take(before) {
        if other.needs.contains(&placeholder.id) {
            other.needs = other
                .needs
                .iter()
                .flat_map(|n| {
                    if *n == placeholder.id {
                        children.clone()
                    } else {
                        vec![n.clone()]
                    }
                })
                .collect();
        }
    }
    Ok(Expanded { plan, children })
}

/// A plan as a run grew it, for reading the run back (its report): each expansion the journal
/// records (`step`, its `children`) made again from the file as `read(from, file)` gives it.
/// An expansion that cannot be made again the same way is left out.
pub fn replay(
    mut plan: Plan,
    expansions: &[(String, Vec<String>)],
    read: impl Fn(&str, &str) -> Option<String>,
) -> Plan {
    for (step, children) in expansions {
        let Some(i) = plan.steps.iter().position(|s| s.id == *step) else {
            continue;
        };
        let Some(axis) = plan.steps[i].dynamic.clone() else {
            continue;
        };
        let Some(text) = read(&axis.from, &axis.file) else {
            continue;
        };
        if let Ok(expanded) = expand(&plan, i, &text)
            && expanded.children == *children
        {
            plan = expanded.plan;
        }
    }
    plan
}

/// Whether step `i` is a dynamic step that the plan has expanded (its children stand for it).
pub fn is_expanded(plan: &Plan, i: usize) -> bool {
    let step = &plan.steps[i];
    step.dynamic.is_some()
        && plan
            .steps
            .iter()
            .any(|s| s.declared == step.id && s.id != step.id)
}

/// The children's ids and values, from the file's text; why not, worded to follow the file's
/// name.
fn items(step: &PlanStep, text: &str) -> Result<Vec<(String, Value)>, String> {
    let Some(axis) = &step.dynamic else {
        return Ok(Vec::new());
    };
    let value: Value = serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
    let Value::Array(list) = value else {
        return Err(format!(
            "holds {}, not a list: write a JSON array of strings or of objects with an `id`",
            kind(&value)
        ));
    };
    if list.is_empty() {
        return Err("is an empty list: a matrix read from a step needs at least one item".into());
    }
    if list.len() > axis.max_children {
        return Err(format!(
            "lists {} items, more than `max_children` ({}) of step `{}`: raise `max_children` on the step if that many are meant",
            list.len(),
            axis.max_children,
            step.declared
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (n, item) in list.into_iter().enumerate() {
        let n = n + 1;
        let id = match &item {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                if let Some(field) = axis.fields.first() {
                    return Err(format!(
                        "has {} as item {n}, but the templates of step `{}` read `matrix.{}.{field}`: only an object item has fields",
                        kind(&item),
                        step.declared,
                        axis.axis
                    ));
                }
                ids::child_id(&step.declared, &item)
            }
            Value::Object(fields) => {
                let id = match fields.get("id") {
                    Some(v @ (Value::String(_) | Value::Number(_))) => v,
                    _ => {
                        return Err(format!(
                            "has an object without an `id` (a string or number) as item {n}: its id names the child, `{}.<id>`",
                            step.declared
                        ));
                    }
                };
                if let Some(field) = axis.fields.iter().find(|f| !fields.contains_key(*f)) {
                    return Err(format!(
                        "has an object without `{field}` as item {n}, which the templates of step `{}` read as `matrix.{}.{field}`",
                        step.declared, axis.axis
                    ));
                }
                ids::child_id(&step.declared, id)
            }
            Value::Array(_) | Value::Null => {
                return Err(format!(
                    "has {} as item {n}: items are strings, numbers or objects with an `id`",
                    kind(&item)
                ));
            }
        };
        out.push((id, item));
    }
    if let Some(problem) = ids::child_id_problems(out.iter().map(|(id, _)| id.as_str())).first() {
        return Err(match *problem {
            ChildIdProblem::TooLong(k) => format!(
                "makes the child id `{}…` ({} bytes, more than {MAX_ID_BYTES}) from item {}: {TOO_LONG_HELP}",
                &out[k].0.chars().take(40).collect::<String>(),
                out[k].0.len(),
                k + 1
            ),
            ChildIdProblem::Same(first, k) => format!(
                "makes two children with the same id `{}` (items {} and {}): {SAME_HELP}",
                out[k].0,
                first + 1,
                k + 1
            ),
        });
    }
    Ok(out)
}

/// What a JSON value is, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::mission::Mission;
    use crate::plan::{Plan, PlanOptions, compile};

    fn plan(extra: &str) -> Plan {
        plan_running(extra, "echo {{ matrix.task }}")
    }

    fn plan_running(extra: &str, run: &str) -> Plan {
        let text = format!(
            "[steps.plan]\nrun = \"true\"\n[steps.split]\nneeds = [\"plan\"]\nmatrix = {{ task = {{ from = \"plan\", file = \"tasks.json\" }} }}\n{extra}run = \"{run}\"\n[steps.review]\nneeds = [\"split\"]\nrun = \"true\"\n"
        );
        let mission = Mission::parse(Path::new("d.toml"), text).unwrap();
        compile(&mission, &PlanOptions::default()).unwrap()
    }

    fn expand(plan: &Plan, text: &str) -> Result<super::Expanded, String> {
        let i = plan.steps.iter().position(|s| s.id == "split").unwrap();
        super::expand(plan, i, text)
    }

    #[test]
    fn a_list_makes_children_that_the_dependents_need() {
        let plan = plan("");
        let expanded = expand(&plan, r#"["Lexer", {"id": 2, "title": "x"}, "a b"]"#).unwrap();
        assert_eq!(expanded.children, ["split.lexer", "split.2", "split.a-b"]);
        let review = expanded.plan.step("review").unwrap();
        assert_eq!(review.needs, expanded.children);
        let child = expanded.plan.step("split.2").unwrap();
        assert_eq!(child.matrix["task"]["title"], "x");
        assert!(child.dynamic.is_none());
        assert_eq!(child.needs, ["plan"]);
    }

    #[test]
    fn bad_content_is_refused_naming_the_file_and_the_step() {
        let plan = plan("max_children = 2\n");
        for (text, why) in [
            ("not json", "is not JSON"),
            ("{\"a\": 1}", "holds an object, not a list"),
            ("[]", "is an empty list"),
            (
                "[\"a\", \"A\"]",
                "two children with the same id `split.a` (items 1 and 2)",
            ),
            (
                "[\"a\", \"b\", \"c\"]",
                "lists 3 items, more than `max_children` (2)",
            ),
            ("[{\"title\": \"x\"}]", "without an `id`"),
            ("[null]", "null as item 1"),
        ] {
            let error = expand(&plan, text).unwrap_err();
            assert!(
                error.starts_with("`tasks.json` in the result of step `plan` "),
                "{error}"
            );
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn fields_the_templates_read_must_be_in_every_item() {
        let plan = plan_running("", "echo {{ matrix.task.title }} {{ matrix.task.id }}");
        let split = plan.step("split").unwrap();
        assert_eq!(split.dynamic.as_ref().unwrap().fields, ["id", "title"]);
        let error = expand(&plan, r#"["a"]"#).unwrap_err();
        assert!(
            error.contains(
                "has a string as item 1, but the templates of step `split` read `matrix.task.id`"
            ),
            "{error}"
        );
        let error = expand(&plan, r#"[{"id": "a", "title": "A"}, {"id": "b"}]"#).unwrap_err();
        assert!(
            error.contains("has an object without `title` as item 2"),
            "{error}"
        );
        assert!(expand(&plan, r#"[{"id": "a", "title": "A"}]"#).is_ok());
    }
}
