//! How a step ends: its record (what later steps see) and its `step_finished` event.

use std::time::Instant;

use git2::Oid;

use super::state::{Shared, StepRecord};
use crate::event::{Body, ErrorKind, Outcome, StepError, Tokens};

/// Ends a step that failed before any attempt (a bad `if`, a merge conflict, a worktree that
/// could not be made).
pub(crate) fn fail_early(shared: &Shared, i: usize, kind: ErrorKind, message: String) {
    finish(
        shared,
        i,
        Outcome::Failed,
        None,
        shared.base,
        0,
        Instant::now(),
        String::new(),
        Some(StepError::new(kind, message)),
    );
}

/// How a step ended, for its `step_finished` event and what later steps see.
pub(crate) struct StepEnd {
    pub outcome: Outcome,
    pub commit: Option<Oid>,
    pub base: Oid,
    pub attempts: u32,
    pub output: String,
    pub error: Option<StepError>,
    pub agent: Option<String>,
    /// `None`: no call reported any.
    pub tokens: Option<Tokens>,
    pub cost_usd: Option<f64>,
    /// Some of its agent calls had no known cost.
    pub unpriced: bool,
    /// Some of its agent calls reported no tokens.
    pub uncounted: bool,
    /// The run whose cached result this is.
    pub cached_from: Option<String>,
    /// For a cached result: what it cost in the run that made it.
    pub cached_cost_usd: Option<f64>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn finish(
    shared: &Shared,
    i: usize,
    outcome: Outcome,
    commit: Option<Oid>,
    base: Oid,
    attempts: u32,
    started: Instant,
    output: String,
    error: Option<StepError>,
) -> Outcome {
    finish_with(
        shared,
        i,
        started,
        StepEnd {
            outcome,
            commit,
            base,
            attempts,
            output,
            error,
            agent: None,
            tokens: None,
            cost_usd: None,
            unpriced: false,
            uncounted: false,
            cached_from: None,
            cached_cost_usd: None,
        },
    )
}

/// Records a step's end and emits its `step_finished` event.
pub(crate) fn finish_with(shared: &Shared, i: usize, started: Instant, end: StepEnd) -> Outcome {
    if let Ok(mut records) = shared.records.lock() {
        records[i] = Some(StepRecord {
            outcome: end.outcome,
            base: end.base,
            commit: end.commit,
            output: end.output.clone(),
            cost_usd: if end.outcome == Outcome::Cached {
                end.cached_cost_usd
            } else {
                end.cost_usd
            },
        });
    }
    shared.account(end.tokens, end.unpriced, end.uncounted);
    shared.emitter.emit(Body::StepFinished {
        step: shared.plan.steps[i].id.clone(),
        outcome: end.outcome,
        commit: end.commit.map(|c| c.to_string()),
        agent: end.agent,
        attempts: end.attempts,
        tokens: end.tokens,
        cost_usd: end.cost_usd,
        duration_ms: started.elapsed().as_millis() as u64,
        cached_from: end.cached_from,
        error: end.error,
        output: end.output,
        cached_cost_usd: end.cached_cost_usd,
    });
    end.outcome
}
