//! What a skip and an approval are called, in words: for every report format, and the CLI's
//! reporters.

use crate::event::{Outcome, SkipReason};
use crate::history::Approval;

/// Where a result stands with its person, in words.
pub fn approval_text(approval: &Approval) -> String {
    // `2026-12-02T03:45:45.6Z` as `2026-12-02 03:45:45 UTC`.
    let when = |ts: &str| match ts.get(..19) {
        Some(day_time) => format!("{} UTC", day_time.replacen('T', " ", 1)),
        None => ts.to_owned(),
    };
    match approval {
        Approval::Waiting { message, since } => format!(
            "waits for a person's approval (asked {}): {message}",
            when(since)
        ),
        Approval::Given { message, by, at } => {
            format!("approved by {by} at {}: {message}", when(at))
        }
        Approval::Refused { by, at, reason, .. } => {
            format!("rejected by {by} at {}: {reason}", when(at))
        }
    }
}

/// Why a step was skipped, in words.
pub fn skip_reason(reason: &SkipReason) -> String {
    match reason {
        SkipReason::Need {
            rejected: Some(why),
            need,
            ..
        } => format!("it needs `{need}`, whose result was rejected: {why}"),
        SkipReason::Need {
            need, need_outcome, ..
        } => format!(
            "it needs `{need}`, which {}",
            match need_outcome {
                Outcome::Skipped => "was skipped",
                other => other.name(),
            }
        ),
        SkipReason::If { expression } => format!("`if = \"{expression}\"` was false"),
    }
}
