//! Nothing grows without bound: a huge gate output or stdout makes a small journal and a
//! bounded `steps.<id>.output`; listings do not read raw output they do not show.

use medley_tests::TestEnv;

use crate::env;

/// 50 MB, enough to show what is copied without making the suite slow.
const BIG: u64 = 50_000_000;

fn journal_bytes(env: &TestEnv) -> u64 {
    let runs = env.work().join(".git/medley/runs");
    fs_err::read_dir(&runs)
        .unwrap()
        .map(|e| {
            fs_err::metadata(e.unwrap().path().join("events.jsonl"))
                .unwrap()
                .len()
        })
        .sum()
}

fn events_of(env: &TestEnv, kind: &str) -> Vec<serde_json::Value> {
    env.journal()
        .into_iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

#[test]
fn a_gate_printing_one_huge_line_makes_a_small_journal() {
    let env = env();
    env.repo(&[(
        "missions/m.toml",
        &format!(
            "[steps.a]\nrun = \"true\"\ngate = \"head -c {BIG} /dev/zero | tr -c x x; exit 1\"\nattempts = 2\n"
        ),
    )]);
    let out = env.run(&["run", "m"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let size = journal_bytes(&env);
    assert!(size < 64 * 1024, "a journal of {size} bytes");
    let gates = events_of(&env, "gate_finished");
    assert_eq!(gates.len(), 2);
    for gate in &gates {
        let tail = gate["output_tail"].as_str().unwrap();
        assert!(tail.len() <= 4 * 1024 + 4, "a tail of {} bytes", tail.len());
        assert!(tail.starts_with('…') && tail.ends_with("xxx"), "{tail:.40}");
    }
    // The listings read it without trouble, and `show` shows the gate's tail.
    let runs = env.run(&["runs"]);
    assert_eq!(runs.code, 0, "{}", runs.stderr);
    let show = env.run(&["show", "last"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.contains("| …xxx"), "{}", show.stdout);
    assert!(show.stdout.len() < 16 * 1024, "{} bytes", show.stdout.len());
}

#[test]
fn a_huge_stdout_streams_to_its_log_and_the_output_is_bounded_and_says_it_was_cut() {
    let env = env();
    env.repo(&[(
        "missions/m.toml",
        &format!(
            "[steps.a]\nrun = \"yes | head -c {BIG}\"\n\n\
             [steps.b]\nneeds = [\"a\"]\nrun = \"printf '%s' {{{{ steps.a.output }}}} > out.txt\"\n"
        ),
    )]);
    let out = env.run(&["run", "m"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The journal keeps the bounded output once (`step_finished.output`, which resume and the
    // cache hand on): 64 KiB, JSON-escaped.
    let size = journal_bytes(&env);
    assert!(size < 256 * 1024, "a journal of {size} bytes");
    let branch = &env.result_branches()[0];
    let output = env.git(&["show", &format!("{branch}:out.txt")]);
    assert!(
        output.len() <= 64 * 1024 + 512,
        "an output of {} bytes",
        output.len()
    );
    assert!(output.starts_with("y\ny\n"), "{output:.20}");
    let last = output.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "[medley: output cut at 65536 of its {BIG} bytes; all of it is in "
        )) && last.ends_with("run.1.out]"),
        "{last}"
    );
    // The whole stdout is in the log.
    let run = env.journal()[0]["run"].as_str().unwrap().to_owned();
    let log = env
        .work()
        .join(format!(".git/medley/runs/{run}/logs/a/run.1.out"));
    assert_eq!(fs_err::metadata(&log).unwrap().len(), BIG);
    // `logs` copies it out whole, as it reads it.
    let logs = env.run(&["logs", "last", "a"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert!(
        logs.stdout
            .starts_with("==> a: run.1.err (empty) <==\n==> a: run.1.out <==\ny\n"),
        "{:.80}",
        logs.stdout
    );
    assert_eq!(logs.stdout.matches("y\n").count() as u64, BIG / 2);
}

#[test]
fn a_failed_commands_stderr_tail_is_stored_once_per_attempt() {
    let env = env();
    env.repo(&[(
        "missions/m.toml",
        "[steps.a]\nrun = \"printf 'the-%s\\\\n' unique-complaint >&2; exit 3\"\nattempts = 2\n",
    )]);
    let out = env.run(&["run", "m"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let runs = env.work().join(".git/medley/runs");
    let run = fs_err::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let journal = fs_err::read_to_string(run.join("events.jsonl")).unwrap();
    // Each attempt's tail once, in its `attempt_failed`; the step's end does not repeat it.
    assert_eq!(
        journal.matches("the-unique-complaint").count(),
        2,
        "{journal}"
    );
    let finished = env
        .journal()
        .into_iter()
        .find(|e| e["type"] == "step_finished")
        .unwrap();
    assert_eq!(
        finished["error"]["message"],
        "`printf 'the-%s\\n' unique-complaint >&2; exit 3` exited with 3"
    );
    // `show` still gives the whole failure, tail included.
    let show = env.run(&["show", "last"]);
    assert!(
        show.stdout.contains("the-unique-complaint"),
        "{}",
        show.stdout
    );
}
