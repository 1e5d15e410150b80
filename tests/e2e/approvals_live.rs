//! Approvals decided in a second terminal while the run is live: the live run takes the
//! decision (approve, reject, a retried rejection, the final result), ends its prompt, and goes
//! on; and runs decided with `--no-continue`, which no longer wait, as `runs` and `show` say.

use std::path::PathBuf;
use std::process::{Child, Stdio};

use medley_tests::TestEnv;

use crate::approvals::{in_repo, repo, result_files, types};
use crate::env;
use crate::resume::wait_for;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-agent");

/// A repository with [`live_mission`].
fn live_repo(plan: &str, approve: bool) -> TestEnv {
    let env = env();
    let mission = live_mission(&env, plan, approve);
    in_repo(env, &mission)
}

/// Where the test's own files go (outside the repository).
fn outside(env: &TestEnv) -> PathBuf {
    env.work().parent().unwrap().to_path_buf()
}

/// `plan` (its lines given) waits for a person, `build` needs it, and `slow` runs until the
/// test creates the file `go`: the run is live meanwhile.
fn live_mission(env: &TestEnv, plan: &str, approve: bool) -> String {
    let d = outside(env).display().to_string();
    let approve = if approve {
        "approve = \"Is the plan sound?\"\n"
    } else {
        ""
    };
    format!(
        "[steps.plan]\n{plan}\n{approve}\n\
         [steps.build]\nneeds = [\"plan\"]\nrun = \"cat PLAN.md > built.txt\"\n\n\
         [steps.slow]\nrun = \"echo started > {d}/slow-started; while [ ! -e {d}/go ]; do sleep 0.05; done; echo slow > slow.txt\"\n"
    )
}

const PLAN: &str = "run = \"echo 'step one' > PLAN.md\"";

fn count(journal: &[serde_json::Value], kind: &str, step: &str) -> usize {
    let wanted = format!("{kind} {step}");
    types(journal).iter().filter(|t| **t == wanted).count()
}

/// The newest run's journal, as it is now (the run may still write it).
fn journal_now(env: &TestEnv) -> Vec<serde_json::Value> {
    let runs = env.work().join(".git/medley/runs");
    let Ok(entries) = fs_err::read_dir(&runs) else {
        return Vec::new();
    };
    let mut ids: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    ids.sort();
    let Some(path) = ids.last().map(|p| p.join("events.jsonl")) else {
        return Vec::new();
    };
    fs_err::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Starts `medley run m --output plain`, its stderr kept in `stderr.txt` beside the repository,
/// and waits until `plan` waits for a person (the `slow` sibling still running).
fn start_live(env: &TestEnv, waits_for: usize) -> Child {
    let stderr = fs_err::File::create(outside(env).join("stderr.txt")).unwrap();
    let child = env
        .medley()
        .args(["run", "m", "--output", "plain"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.into_parts().0)
        .spawn()
        .unwrap();
    wait_until_waiting(env, waits_for);
    child
}

fn wait_until_waiting(env: &TestEnv, requests: usize) {
    wait_for(|| {
        count(&journal_now(env), "approval_requested", "plan") >= requests
            && outside(env).join("slow-started").exists()
    });
}

/// Lets `slow` end, and how the live run ended: its exit code and stderr.
fn finish(env: &TestEnv, mut child: Child) -> (i32, String) {
    fs_err::write(outside(env).join("go"), "").unwrap();
    let status = child.wait().unwrap();
    let stderr = fs_err::read_to_string(outside(env).join("stderr.txt")).unwrap();
    (status.code().unwrap_or(-1), stderr)
}

fn run_starts(journal: &[serde_json::Value]) -> usize {
    journal
        .iter()
        .filter(|e| e["type"] == "run_started")
        .count()
}

fn no_requests_left(env: &TestEnv) {
    let runs = env.work().join(".git/medley/runs");
    for run in fs_err::read_dir(&runs).unwrap() {
        let dir = run.unwrap().path().join("decisions");
        let left: Vec<_> = fs_err::read_dir(&dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "requests or replies left: {left:?}");
    }
}

#[test]
fn approve_from_a_second_terminal_while_the_run_is_live_is_taken_by_the_run() {
    let env = live_repo(PLAN, true);
    let child = start_live(&env, 1);
    // A live run that waits is listed too: it can be decided on now.
    let waiting = env.run(&["runs", "--waiting"]);
    assert!(
        waiting.stdout.contains("plan  Is the plan sound?"),
        "{}",
        waiting.stdout
    );
    let out = env.run(&["approve", "plan", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("approved `plan` in run")
            && out.stderr.contains("(by Ada <ada@example.com>)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("is live: it took the decision and goes on"),
        "{}",
        out.stderr
    );
    // The decision is in the journal when `approve` returns, written by the live run.
    let journal = journal_now(&env);
    let given = journal
        .iter()
        .find(|e| e["type"] == "approval_given")
        .unwrap_or_else(|| panic!("{:?}", types(&journal)));
    assert_eq!(given["step"], "plan");
    assert_eq!(given["by"], "Ada <ada@example.com>");
    // The dependent runs while the sibling is still at work.
    wait_for(|| count(&journal_now(&env), "step_finished", "build") == 1);
    assert_eq!(count(&journal_now(&env), "step_finished", "slow"), 0);
    let (code, stderr) = finish(&env, child);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("plan: approved by Ada"), "{stderr}");
    let journal = env.journal();
    assert_eq!(
        run_starts(&journal),
        1,
        "no second run: {:?}",
        types(&journal)
    );
    assert_eq!(journal.last().unwrap()["outcome"], "passed");
    no_requests_left(&env);

    // The same result as a run without the gate.
    let gated = result_files(&env);
    assert_eq!(gated["built.txt"], "step one\n");
    let plain = live_repo(PLAN, false);
    fs_err::write(outside(&plain).join("go"), "").unwrap();
    let out = plain.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(gated, result_files(&plain));
}

#[test]
fn reject_from_a_second_terminal_while_the_run_is_live_fails_the_step_in_the_run() {
    let env = live_repo(PLAN, true);
    let child = start_live(&env, 1);
    let out = env.run(&["reject", "plan", "--why", "too vague"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("rejected `plan` in run"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("is live"), "{}", out.stderr);
    // Approving what the live run no longer waits on is refused, naming what waits.
    let again = env.run(&["approve", "plan", "--run", "last"]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        again.stderr.contains("`plan` is not waiting for approval"),
        "{}",
        again.stderr
    );
    let (code, stderr) = finish(&env, child);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("build: skipped: it needs `plan`, whose result was rejected: too vague"),
        "{stderr}"
    );
    let journal = env.journal();
    assert_eq!(run_starts(&journal), 1);
    let refused = journal
        .iter()
        .find(|e| e["type"] == "approval_refused")
        .unwrap();
    assert_eq!(refused["reason"], "too vague");
    assert_eq!(refused["by"], "Ada <ada@example.com>");
    let failed = journal
        .iter()
        .rev()
        .find(|e| e["type"] == "step_finished" && e["step"] == "plan")
        .unwrap();
    assert_eq!(failed["error"]["kind"], "rejected");
    assert_eq!(count(&journal, "step_finished", "slow"), 1);
    assert_eq!(journal.last().unwrap()["outcome"], "failed");
    assert!(env.result_branches().is_empty());
    no_requests_left(&env);
}

#[test]
fn a_rejection_with_retry_while_live_runs_the_agent_again_in_the_same_run() {
    let plan = "agent = \"claude\"\nprompt = \"Write PLAN.md\"\non_reject = \"retry\"";
    let env = live_repo(plan, true);
    env.fakes(
        FAKE,
        &["claude"],
        "claude: append PLAN.md v1\\n\nclaude: append PLAN.md v2\\n\n",
    );
    let child = start_live(&env, 1);
    let out = env.run(&["reject", "plan", "--why", "add a testing step"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The agent runs again, hears the reason, and its new result waits again.
    wait_until_waiting(&env, 2);
    let calls = env.fake_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let prompt = calls[1]["prompt"].as_str().unwrap();
    assert!(prompt.contains("add a testing step"), "{prompt}");
    let out = env.run(&["approve", "plan"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (code, stderr) = finish(&env, child);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(run_starts(&env.journal()), 1);
    assert_eq!(result_files(&env)["built.txt"], "v1\nv2\n");
}

#[test]
fn a_decision_from_a_second_terminal_ends_the_live_prompt() {
    let env = live_repo(PLAN, true);
    let mut command = env.medley();
    command.args(["run", "m", "--output", "tty"]);
    let mut session = rexpect::session::spawn_command(command, Some(60_000)).unwrap();
    session.exp_string("[l]eave waiting?").unwrap();
    // The journal's writer runs a moment behind the prompt.
    wait_until_waiting(&env, 1);
    let out = env.run(&["approve", "plan"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    session
        .exp_string("plan no longer waits here: decided in another terminal")
        .unwrap();
    fs_err::write(outside(&env).join("go"), "").unwrap();
    session.exp_string("run passed").unwrap();
    session.exp_eof().unwrap();
    assert_eq!(result_files(&env)["built.txt"], "step one\n");
}

#[test]
fn the_final_result_at_its_prompt_is_approved_from_a_second_terminal() {
    let env = repo("approve = \"Ship it?\"\n\n[steps.a]\nrun = \"echo a > a.txt\"\n");
    let mut command = env.medley();
    command.args(["run", "m", "--output", "tty"]);
    let mut session = rexpect::session::spawn_command(command, Some(60_000)).unwrap();
    session.exp_string("[l]eave waiting?").unwrap();
    wait_for(|| count(&journal_now(&env), "approval_requested", "-") == 1);
    let out = env.run(&["approve", "@result"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("is live"), "{}", out.stderr);
    session.exp_string("run passed").unwrap();
    session.exp_eof().unwrap();
    assert_eq!(result_files(&env)["a.txt"], "a\n");
    let journal = env.journal();
    let given = journal
        .iter()
        .find(|e| e["type"] == "approval_given")
        .unwrap();
    assert!(given.get("step").is_none_or(|s| s.is_null()), "{given}");
    assert_eq!(run_starts(&journal), 1);
}

#[test]
fn a_run_decided_without_continuing_no_longer_says_waiting() {
    let env = repo(
        "[steps.plan]\nrun = \"echo 'step one' > PLAN.md\"\napprove = \"Is the plan sound?\"\n\n\
         [steps.build]\nneeds = [\"plan\"]\nrun = \"cat PLAN.md > built.txt\"\n",
    );
    assert_eq!(env.run(&["run", "m", "--output", "plain"]).code, 3);
    let out = env.run(&["approve", "plan", "--no-continue"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let short = env.run(&["runs", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_str(&short.stdout).unwrap();
    let short = json[0]["short_id"].as_str().unwrap().to_owned();
    assert_eq!(json[0]["status"], "decided");
    assert_eq!(json[0]["waiting"], serde_json::json!([]));
    assert_eq!(json[0]["decided"], serde_json::json!(["plan"]));

    let runs = env.run(&["runs"]);
    assert!(runs.stdout.contains(" decided"), "{}", runs.stdout);
    assert!(!runs.stdout.contains("waiting"), "{}", runs.stdout);
    let show = env.run(&["show"]);
    let line = format!("outcome   decided: plan approved, not continued: `medley resume {short}`");
    assert!(show.stdout.contains(&line), "{}", show.stdout);
    let waiting = env.run(&["runs", "--waiting"]);
    assert_eq!(waiting.code, 0, "{}", waiting.stderr);
    let row = format!("plan  approved, not continued: `medley resume {short}`");
    assert!(waiting.stdout.contains(&row), "{}", waiting.stdout);
    // Approving again waits for nothing either.
    let again = env.run(&["approve", "plan", "--run", "last"]);
    assert!(
        again.stderr.contains("already approved"),
        "{}",
        again.stderr
    );

    let out = env.run(&["resume", "last", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json: serde_json::Value =
        serde_json::from_str(&env.run(&["runs", "--output", "json"]).stdout).unwrap();
    assert_eq!(json[0]["status"], "passed");
    assert_eq!(json[0]["decided"], serde_json::json!([]));
    assert!(
        env.run(&["runs", "--waiting"])
            .stderr
            .contains("nothing waits for a person")
    );
}

#[test]
fn a_rejection_without_continuing_says_so_and_a_partial_decision_still_waits() {
    let env = repo(
        "[steps.a]\nrun = \"echo a > a.txt\"\napprove = \"A?\"\n\n\
         [steps.b]\nrun = \"echo b > b.txt\"\napprove = \"B?\"\n",
    );
    assert_eq!(env.run(&["run", "m", "--output", "plain"]).code, 3);
    let out = env.run(&["reject", "a", "--why", "no", "--no-continue"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // `b` still waits: the run does.
    let show = env.run(&["show"]);
    assert!(show.stdout.contains("outcome   waiting"), "{}", show.stdout);
    assert!(
        show.stdout.contains("decided   a rejected, not continued"),
        "{}",
        show.stdout
    );
    let waiting = env.run(&["runs", "--waiting"]);
    assert!(waiting.stdout.contains("b     B?"), "{}", waiting.stdout);
    assert!(
        waiting.stdout.contains("a     rejected, not continued"),
        "{}",
        waiting.stdout
    );
    let out = env.run(&["reject", "b", "--why", "no either", "--no-continue"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let show = env.run(&["show"]);
    assert!(
        show.stdout
            .contains("outcome   decided: a rejected, b rejected, not continued"),
        "{}",
        show.stdout
    );
}

#[test]
fn ctrl_c_at_the_final_results_prompt_stops_the_run_and_it_still_waits() {
    let env = repo("approve = \"Ship it?\"\n\n[steps.a]\nrun = \"echo a > a.txt\"\n");
    let mut command = env.medley();
    command.args(["run", "m", "--output", "tty"]);
    let mut session = rexpect::session::spawn_command(command, Some(60_000)).unwrap();
    session.exp_string("[l]eave waiting?").unwrap();
    session.send_control('c').unwrap();
    session.exp_string("run cancelled").unwrap();
    session.exp_eof().unwrap();
    assert_eq!(env.journal().last().unwrap()["outcome"], "cancelled");
    assert!(env.result_branches().is_empty());
    let out = env.run(&["approve", "@result", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(result_files(&env)["a.txt"], "a\n");
}
