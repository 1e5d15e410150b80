//! `--only STEP`: a plan cut down to one step (or a matrix step's children) and what it needs.

use super::Plan;

/// `--only STEP` names no step of the plan.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("`--only {0}`: the mission has no step `{0}`")]
#[diagnostic(help("{1}"))]
pub struct UnknownStep(pub String, pub String);

impl Plan {
    /// Keeps only `id` (a step, a matrix step's children, or one child) and what it needs.
    pub fn only(&mut self, id: &str) -> Result<(), UnknownStep> {
        let mut keep: std::collections::HashSet<String> = self
            .steps
            .iter()
            .filter(|s| s.id == id || s.declared == id)
            .map(|s| s.id.clone())
            .collect();
        if keep.is_empty() {
            let mut ids: Vec<&str> = self.steps.iter().map(|s| s.id.as_str()).collect();
            ids.extend(self.steps.iter().map(|s| s.declared.as_str()));
            ids.dedup();
            let help = crate::mission::suggest::did_you_mean(id, ids, "the steps are");
            return Err(UnknownStep(id.to_owned(), help));
        }
        // Steps come after what they need, so one backward pass collects the closure.
        for step in self.steps.iter().rev() {
            if keep.contains(&step.id) {
                keep.extend(step.needs.iter().cloned());
            }
        }
        self.steps.retain(|s| keep.contains(&s.id));
        self.partial = true;
        Ok(())
    }
}
