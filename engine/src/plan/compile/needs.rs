//! `needs`: each entry resolved to the declared step (or matrix child) it names, and every
//! cycle among them reported.

use std::collections::HashMap;
use std::ops::Range;

use super::declare::Decl;
use super::{Compiler, code_list};
use crate::mission::diagnostics::{ErrorKind, MissionError};
use crate::mission::suggest::closest;
use crate::plan::dag::find_cycles;

/// One resolved `needs` entry.
pub(super) struct Need {
    /// The declared step it names (an index into the declarations).
    pub(super) decl: usize,
    /// The concrete ids it stands for: all of a matrix step's children, or one.
    pub(super) ids: Vec<String>,
    /// Where it is written.
    pub(super) span: Range<usize>,
}

impl<'m> Compiler<'m> {
    /// Each declared step's needs, resolved.
    pub(super) fn resolve_needs(&mut self, decls: &[Decl<'m>]) -> Vec<Vec<Need>> {
        let by_id: HashMap<&str, usize> =
            decls.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
        let mut child_of: HashMap<&str, usize> = HashMap::new();
        for (i, d) in decls.iter().enumerate() {
            if d.is_matrix {
                for c in &d.children {
                    child_of.insert(c.id.as_str(), i);
                }
            }
        }
        let mut all = Vec::new();
        for d in decls {
            let mut resolved = Vec::new();
            for need in d.step.get_ref().needs.iter().flatten() {
                let name = need.get_ref().as_str();
                if let Some(&i) = by_id.get(name) {
                    let ids = decls[i].children.iter().map(|c| c.id.clone()).collect();
                    resolved.push(Need {
                        decl: i,
                        ids,
                        span: need.span(),
                    });
                } else if let Some(&i) = child_of.get(name) {
                    resolved.push(Need {
                        decl: i,
                        ids: vec![name.to_owned()],
                        span: need.span(),
                    });
                } else {
                    let candidates = decls
                        .iter()
                        .map(|d| d.id)
                        .chain(child_of.keys().copied())
                        .filter(|c| *c != d.id);
                    let help = match closest(name, candidates) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!("the steps are {}", code_list(decls.iter().map(|d| d.id))),
                    };
                    self.push(
                        MissionError::new(
                            ErrorKind::UnknownNeed,
                            format!("unknown step `{name}` in `needs` of step `{}`", d.id),
                        )
                        .label(need.span(), "no step has this id")
                        .help(help),
                    );
                }
            }
            all.push(resolved);
        }
        all
    }

    /// Reports every cycle among declared steps; true when there is none.
    pub(super) fn check_cycles(&mut self, decls: &[Decl<'m>], needs: &[Vec<Need>]) -> bool {
        let edges: Vec<(usize, usize)> = needs
            .iter()
            .enumerate()
            .flat_map(|(i, ns)| ns.iter().map(move |n| (i, n.decl)))
            .collect();
        let cycles = find_cycles(decls.len(), &edges);
        for cycle in &cycles {
            let names: Vec<String> = cycle.iter().map(|&i| decls[i].id.to_owned()).collect();
            let mut path: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            path.push(format!("`{}`", names[0]));
            let mut error = MissionError::new(
                ErrorKind::Cycle(names.clone()),
                format!("steps form a cycle: {}", path.join(" needs ")),
            );
            for (k, &i) in cycle.iter().enumerate() {
                let next = cycle[(k + 1) % cycle.len()];
                let span = needs[i]
                    .iter()
                    .find(|n| n.decl == next)
                    .map_or(decls[i].key.clone(), |n| n.span.clone());
                let label = format!("{}. `{}` needs `{}`", k + 1, decls[i].id, decls[next].id);
                error = error.label(span, label);
            }
            self.push(error.help(
                "a step cannot need itself, directly or through others: remove one of these needs",
            ));
        }
        cycles.is_empty()
    }
}
