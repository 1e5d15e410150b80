//! Declared steps: each `[steps.<id>]` checked (its id, the `max_steps` cap) and expanded into
//! its concrete children ([`Decl`], [`Child`]), whose ids must be short and distinct.

use std::ops::Range;

use indexmap::IndexMap;
use toml::Spanned;

use super::Compiler;
use super::dynamic::{is_dynamic, max_children};
use super::matrix::{Child, child_span, matrix_size};
use crate::mission::diagnostics::{ErrorKind, MissionError};
use crate::mission::model::Step;
use crate::plan::ids::{
    ChildIdProblem, MAX_ID_BYTES, SAME_HELP, TOO_LONG_HELP, child_id_problems, shorten,
};

/// A declared step with its matrix children (one child, itself, when it has no matrix).
pub(super) struct Decl<'m> {
    pub(super) id: &'m str,
    pub(super) key: Range<usize>,
    pub(super) step: &'m Spanned<Step>,
    pub(super) children: Vec<Child>,
    pub(super) is_matrix: bool,
    /// A matrix read from an upstream step: its one child stands for the children.
    pub(super) dynamic: Option<crate::plan::DynamicAxis>,
}

impl<'m> Compiler<'m> {
    pub(super) fn declare_steps(&mut self, max_steps: u64) -> Vec<Decl<'m>> {
        let mut decls = Vec::new();
        let mut total: u64 = 0;
        let mut over = false;
        for (id, step) in &self.file.steps {
            let key = self.declared_id(&self.mission.step_keys, id, step.span(), "step id");
            if id.len() > MAX_ID_BYTES {
                self.push(
                    MissionError::new(
                        ErrorKind::InvalidId,
                        format!("step id `{}` is too long", shorten(id)),
                    )
                    .label(
                        key.clone(),
                        format!("{} bytes, more than {MAX_ID_BYTES}", id.len()),
                    )
                    .help("step ids name worktrees, log files and branches: use a shorter id"),
                );
            }
            // Counted before expanding, so a huge matrix is refused without being built.
            // A matrix read from a step counts as the most children it may make.
            let dynamic_count = step
                .get_ref()
                .matrix
                .as_ref()
                .is_some_and(|m| is_dynamic(m.get_ref()));
            let count = match &step.get_ref().matrix {
                Some(_) if dynamic_count => max_children(step.get_ref()),
                Some(m) => matrix_size(m.get_ref()),
                None => 1,
            };
            total = total.saturating_add(count);
            if total > max_steps && !over {
                over = true;
                let span = step
                    .get_ref()
                    .matrix
                    .as_ref()
                    .map_or(key.clone(), |m| m.span());
                let label = if count > 1 {
                    format!("{count} steps")
                } else {
                    "one step too many".to_owned()
                };
                self.push(
                    MissionError::new(
                        ErrorKind::Matrix,
                        format!(
                            "the plan would have {}{total} steps, more than `max_steps` ({max_steps})",
                            if total == u64::MAX { "at least " } else { "" }
                        ),
                    )
                    .label(span, label)
                    .help(format!(
                        "{}, split the mission, or raise the cap with `max_steps = {}` at the top of the file",
                        if dynamic_count {
                            "a matrix read from a step counts as its `max_children` (default 50): lower it"
                        } else {
                            "a matrix makes one step per combination of its axes' values: use fewer values"
                        },
                        total.min(u64::from(u32::MAX))
                    )),
                );
            }
            let mut dynamic = None;
            let (children, is_matrix) = match &step.get_ref().matrix {
                None => (
                    vec![Child {
                        id: id.clone(),
                        matrix: IndexMap::new(),
                    }],
                    false,
                ),
                Some(_) if over => (Vec::new(), true),
                Some(matrix) if is_dynamic(matrix.get_ref()) => {
                    match self.dynamic_axis(id, step, matrix) {
                        Some((axis, child)) => {
                            dynamic = Some(axis);
                            (vec![child], false)
                        }
                        None => (Vec::new(), true),
                    }
                }
                Some(matrix) => (self.expand_matrix(id, matrix), true),
            };
            if !dynamic_count {
                self.check_max_children(id, step.get_ref());
            }
            let matrix_children: &[Child] = if is_matrix { &children } else { &[] };
            for problem in child_id_problems(matrix_children.iter().map(|c| c.id.as_str())) {
                match problem {
                    ChildIdProblem::TooLong(i) => {
                        let child = &matrix_children[i];
                        self.push(
                            MissionError::new(
                                ErrorKind::Matrix,
                                format!("matrix child id `{}` is too long", shorten(&child.id)),
                            )
                            .label(
                                child_span(step, &child.matrix),
                                format!("{} bytes, more than {MAX_ID_BYTES}", child.id.len()),
                            )
                            .help(TOO_LONG_HELP),
                        );
                    }
                    ChildIdProblem::Same(first, i) => {
                        let (first, child) = (&matrix_children[first], &matrix_children[i]);
                        self.push(
                            MissionError::new(
                                ErrorKind::Matrix,
                                format!("two matrix children have the same id `{}`", child.id),
                            )
                            .label(child_span(step, &child.matrix), "this child's id")
                            .label(child_span(step, &first.matrix), "is also this one's")
                            .help(SAME_HELP),
                        );
                    }
                }
            }
            decls.push(Decl {
                id,
                key,
                step,
                children,
                is_matrix,
                dynamic,
            });
        }
        decls
    }
}
