//! Reading runs back from their journals, resolving run ids, applying and cleaning.

use super::*;
use crate::event::Event;

fn at(ts: &str, body: Body) -> String {
    let mut event = Event::new("r1", body);
    event.ts = ts.to_owned();
    serde_json::to_string(&event).unwrap() + "\n"
}

fn started(ts: &str) -> String {
    at(
        ts,
        Body::RunStarted {
            mission: "m".into(),
            mission_path: "missions/m.toml".into(),
            base: "b".into(),
            steps: 1,
        },
    )
}

fn finished(ts: &str, outcome: RunOutcome, duration_ms: u64) -> String {
    at(
        ts,
        Body::RunFinished {
            outcome,
            reason: None,
            result_branch: None,
            tokens: Tokens::default(),
            cost_usd: 0.0,
            unpriced_steps: 0,
            uncounted_steps: 0,
            duration_ms,
        },
    )
}

#[test]
fn a_resumed_run_lasts_as_long_as_all_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    let run = journal::runs_dir(dir.path()).join("r1");
    fs_err::create_dir_all(&run).unwrap();
    let journal = [
        started("2026-01-01T00:00:00Z"),
        finished("2026-01-01T00:00:01Z", RunOutcome::Failed, 1000),
        // Resumed an hour later: the hour between does not count.
        started("2026-01-01T01:00:00Z"),
        finished("2026-01-01T01:00:02Z", RunOutcome::Passed, 2000),
    ]
    .concat();
    fs_err::write(run.join("events.jsonl"), journal).unwrap();
    let info = load(dir.path(), "r1").unwrap();
    assert_eq!(info.duration_ms, Some(3000));
    assert_eq!(info.outcome, Some(RunOutcome::Passed));
    assert_eq!(info.started, "2026-01-01T00:00:00Z");
}
