//! A plan's DAG as Graphviz DOT or Mermaid (which GitHub renders in comments and Markdown).

use std::fmt::Write as _;

use super::{Action, Plan, PlanStep};
use crate::mission::model::Strategy;

/// What runs a step, for a graph label: `command`, `claude`, `claude → codex`, `claude | codex (race)`;
/// a step whose result waits for a person is marked `, approve`.
pub fn runner(step: &PlanStep) -> String {
    let runs = runs(step);
    match step.approve {
        Some(_) => format!("{runs}, approve"),
        None => runs,
    }
}

fn runs(step: &PlanStep) -> String {
    match &step.action {
        Action::Command { .. } => "command".to_owned(),
        Action::Agent {
            agents, strategy, ..
        } => match strategy {
            Strategy::Fallback => agents.join(" → "),
            Strategy::Race => format!("{} (race)", agents.join(" | ")),
        },
    }
}

/// How a step is named in a graph or the dry run: its id, or for a matrix read from an
/// upstream step, `split.* from plan` (its children are known only when `plan` passes).
pub fn shown_id(step: &PlanStep) -> String {
    match &step.dynamic {
        Some(axis) => format!("{}.* from {}", step.id, axis.from),
        None => step.id.clone(),
    }
}

/// Steps of a matrix, grouped: (declared id, children in plan order) in first-seen order.
fn groups(plan: &Plan) -> Vec<(&str, Vec<usize>)> {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        if step.declared == step.id {
            continue;
        }
        match groups.iter_mut().find(|(d, _)| *d == step.declared) {
            Some((_, members)) => members.push(i),
            None => groups.push((step.declared.as_str(), vec![i])),
        }
    }
    groups
}

fn index_of(plan: &Plan, id: &str) -> Option<usize> {
    plan.steps.iter().position(|s| s.id == id)
}

/// Graphviz DOT.
pub fn dot(plan: &Plan) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", q(&plan.mission));
    out.push_str("  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
    let grouped = groups(plan);
    let node = |step: &PlanStep| {
        format!(
            "{} [label={}];",
            q(&step.id),
            q(&format!("{}\n{}", shown_id(step), runner(step)))
        )
    };
    for (declared, members) in &grouped {
        let _ = writeln!(out, "  subgraph {} {{", q(&format!("cluster_{declared}")));
        let _ = writeln!(out, "    label={};", q(&format!("{declared} (matrix)")));
        for &i in members {
            let _ = writeln!(out, "    {}", node(&plan.steps[i]));
        }
        out.push_str("  }\n");
    }
    for step in plan.steps.iter().filter(|s| s.declared == s.id) {
        let _ = writeln!(out, "  {}", node(step));
    }
    for step in &plan.steps {
        for need in &step.needs {
            let _ = writeln!(out, "  {} -> {};", q(need), q(&step.id));
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid, fenced as a ```mermaid block so it renders when pasted into a GitHub comment.
pub fn mermaid(plan: &Plan) -> String {
    let label = |s: &str| s.replace('"', "#quot;");
    let mut out = String::from("```mermaid\nflowchart LR\n");
    let node = |i: usize, step: &PlanStep| {
        format!(
            "s{i}[\"{}<br/>{}\"]",
            label(&shown_id(step)),
            label(&runner(step))
        )
    };
    for (g, (declared, members)) in groups(plan).iter().enumerate() {
        let _ = writeln!(out, "  subgraph m{g}[\"{} (matrix)\"]", label(declared));
        for &i in members {
            let _ = writeln!(out, "    {}", node(i, &plan.steps[i]));
        }
        out.push_str("  end\n");
    }
    for (i, step) in plan.steps.iter().enumerate() {
        if step.declared == step.id {
            let _ = writeln!(out, "  {}", node(i, step));
        }
    }
    for (i, step) in plan.steps.iter().enumerate() {
        for need in &step.needs {
            if let Some(j) = index_of(plan, need) {
                let _ = writeln!(out, "  s{j} --> s{i}");
            }
        }
    }
    out.push_str("```\n");
    out
}
