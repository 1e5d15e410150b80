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

/// A run whose `plan` waits for a person, in a real (empty) repository.
fn waiting_run() -> (tempfile::TempDir, Repo, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    git2::Repository::init(dir.path()).unwrap();
    let repo = Repo::discover(dir.path()).unwrap();
    let run = journal::runs_dir(&repo.git_dir).join("r1");
    fs_err::create_dir_all(&run).unwrap();
    let journal = [
        started("2026-01-01T00:00:00Z"),
        at(
            "2026-01-01T00:00:01Z",
            Body::ApprovalRequested {
                step: Some("plan".into()),
                message: "Is the plan sound?".into(),
                commit: None,
                files: 1,
            },
        ),
        finished("2026-01-01T00:00:02Z", RunOutcome::Waiting, 2000),
    ]
    .concat();
    fs_err::write(run.join("events.jsonl"), journal).unwrap();
    (dir, repo, run)
}

#[test]
fn a_decision_handed_to_a_run_that_ends_before_taking_it_is_recorded_as_for_any_waiting_run() {
    let (_dir, repo, run) = waiting_run();
    // A "live run": it holds the lock until a request comes, then ends without taking it.
    let lock = journal::RunLock::try_take(&run.join("lock"))
        .unwrap()
        .unwrap();
    let info = load(&repo.git_dir, "r1").unwrap();
    assert!(info.live);
    assert_eq!(info.waiting(), ["plan"]);
    let inbox = run.clone();
    let ends = std::thread::spawn(move || {
        while inbox::pending(&inbox).is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(lock);
    });
    let decided = decide(&repo, &info, &["plan".to_owned()], &Verdict::Approve, "Ada").unwrap();
    ends.join().unwrap();
    assert!(!decided.live, "recorded here: a resume goes on");
    assert_eq!(decided.recorded, ["plan"]);
    assert!(inbox::pending(&run).is_empty(), "the request was withdrawn");
    let info = load(&repo.git_dir, "r1").unwrap();
    assert!(info.waiting().is_empty());
    assert_eq!(info.decided, ["plan"]);
    assert_eq!(info.status(), "decided");
}

#[test]
fn a_live_run_that_takes_a_decision_answers_it_and_it_is_awaited_in_the_journal() {
    let (_dir, repo, run) = waiting_run();
    let lock = journal::RunLock::try_take(&run.join("lock"))
        .unwrap()
        .unwrap();
    let info = load(&repo.git_dir, "r1").unwrap();
    let live = run.clone();
    let takes = std::thread::spawn(move || {
        let request = loop {
            if let Some(found) = inbox::pending(&live).first() {
                break found.clone();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let (taken, request) = inbox::take(&request).unwrap();
        let request = request.unwrap();
        assert_eq!(request.verdict, Verdict::Reject("too vague".into()));
        inbox::answer(
            &taken,
            &inbox::Reply {
                recorded: request.steps.clone(),
                ..inbox::Reply::default()
            },
        );
        // The journal's writer comes a moment later.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut journal = journal::Journal::create(&live.join("events.jsonl")).unwrap();
        journal
            .append(&Event::new(
                "r1",
                Body::ApprovalRefused {
                    step: Some("plan".into()),
                    by: request.by,
                    reason: "too vague".into(),
                },
            ))
            .unwrap();
        lock
    });
    let verdict = Verdict::Reject("too vague".into());
    let decided = decide(&repo, &info, &["plan".to_owned()], &verdict, "Ada").unwrap();
    assert!(decided.live);
    assert_eq!(decided.recorded, ["plan"]);
    // `decide` returned once the journal held the decision.
    let info = load(&repo.git_dir, "r1").unwrap();
    assert!(matches!(
        info.steps["plan"].approval,
        Some(Approval::Refused { .. })
    ));
    drop(takes.join().unwrap());
}
