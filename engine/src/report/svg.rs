//! The run's DAG as an inline SVG: nodes where [`super::layout`] puts them, coloured by
//! outcome (the page's style), an edge per need, a box around each matrix's children.

use std::fmt::Write as _;

use super::layout::{self, NODE_H, NODE_W};
use super::model::Report;
use super::text::{clip, duration, escape, plural, step_cost, step_tokens};

/// Appends the graph's section to the page.
pub fn graph(out: &mut String, report: &Report) {
    let steps = &report.steps;
    let groups: Vec<Option<String>> = steps
        .iter()
        .map(|s| (s.declared != s.id).then(|| s.declared.clone()))
        .collect();
    let l = layout::layout(steps.len(), &report.edges, &groups);
    out.push_str("<section id=\"graph\">\n<h2>Graph</h2>\n");
    if let Some(note) = &report.graph_note {
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", escape(note));
    }
    let _ = writeln!(
        out,
        "<div class=\"graph\"><svg xmlns=\"http://www.w3.org/2000/svg\" class=\"dag\" \
         width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\" \
         aria-label=\"the run's steps and what each needs\">",
        w = l.width,
        h = l.height
    );
    out.push_str(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 8 8\" refX=\"8\" refY=\"4\" markerWidth=\"8\" \
         markerHeight=\"8\" orient=\"auto\"><path d=\"M0,0 L8,4 L0,8 z\" fill=\"#8c959f\"/>\
         </marker></defs>\n",
    );
    for (label, x, y, w, h) in &l.groups {
        let _ = writeln!(
            out,
            "<g class=\"group\" data-group=\"{g}\"><rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"{w:.0}\" \
             height=\"{h:.0}\" rx=\"8\"/><text x=\"{tx:.0}\" y=\"{ty:.0}\">{g} (matrix)</text></g>",
            g = escape(label),
            tx = x + 8.0,
            ty = y + 14.0
        );
    }
    for &(from, to) in &report.edges {
        let (a, b) = (l.nodes[from], l.nodes[to]);
        let (x1, y1) = (a.0 + NODE_W, a.1 + NODE_H / 2.0);
        let (x2, y2) = (b.0, b.1 + NODE_H / 2.0);
        let bend = ((x2 - x1) / 2.0).max(20.0);
        let _ = writeln!(
            out,
            "<path class=\"edge\" data-from=\"{}\" data-to=\"{}\" d=\"M{x1:.1},{y1:.1} C{:.1},{y1:.1} \
             {:.1},{y2:.1} {x2:.1},{y2:.1}\" marker-end=\"url(#arrow)\"/>",
            escape(&steps[from].id),
            escape(&steps[to].id),
            x1 + bend,
            x2 - bend
        );
    }
    for (i, step) in steps.iter().enumerate() {
        let (x, y) = l.nodes[i];
        let outcome = step.outcome_name(&report.run);
        let mut facts = vec![duration(step.info.duration_ms)];
        if step.info.attempts > 0 {
            facts.push(plural(step.info.attempts as usize, "attempt"));
        }
        let mut money = Vec::new();
        let tokens = step_tokens(step);
        if !tokens.is_empty() {
            money.push(format!("{tokens} tok"));
        }
        let cost = step_cost(step);
        if !cost.is_empty() {
            money.push(cost);
        }
        let runner = step
            .info
            .agent
            .clone()
            .filter(|_| step.runner.contains(' '))
            .map_or(step.runner.clone(), |a| format!("{a} of {}", step.runner));
        let _ = writeln!(
            out,
            "<a href=\"#step-{id}\"><g class=\"node {class}\" data-step=\"{id}\" \
             data-outcome=\"{outcome}\"><title>{id}: {outcome}</title>\
             <rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"{NODE_W:.0}\" height=\"{NODE_H:.0}\" rx=\"6\"/>\
             <text class=\"id\" x=\"{tx:.0}\" y=\"{y1:.0}\">{short_id}</text>\
             <text x=\"{tx:.0}\" y=\"{y2:.0}\">{outcome} · {runner}</text>\
             <text x=\"{tx:.0}\" y=\"{y3:.0}\">{facts}</text>\
             <text x=\"{tx:.0}\" y=\"{y4:.0}\">{money}</text></g></a>",
            id = escape(&step.id),
            class = step.outcome_class(&report.run),
            short_id = escape(&clip(&step.id, 26)),
            runner = escape(&clip(&runner, 22)),
            facts = escape(&facts.join(" · ")),
            money = escape(&money.join(" · ")),
            tx = x + 10.0,
            y1 = y + 17.0,
            y2 = y + 32.0,
            y3 = y + 46.0,
            y4 = y + 60.0,
        );
    }
    out.push_str("</svg></div>\n</section>\n");
}
