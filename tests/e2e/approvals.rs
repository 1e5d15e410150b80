//! Approval gates end to end: a result that waits for a person while its siblings run on,
//! `medley approve` / `medley reject` from a second process (also after a SIGKILL), the
//! rejection retried with its reason, the cache keeping an approval, and the interactive
//! prompt driven through a pseudo-terminal.

use std::path::{Path, PathBuf};

use medley_tests::TestEnv;

use crate::env;
use crate::resume::wait_for;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-agent");

/// A repository with `mission` as `missions/m.toml` and a git user who decides.
pub(crate) fn repo(mission: &str) -> TestEnv {
    in_repo(env(), mission)
}

/// `env`'s repository with `mission` as `missions/m.toml` and a git user who decides.
pub(crate) fn in_repo(env: TestEnv, mission: &str) -> TestEnv {
    env.repo(&[("missions/m.toml", mission), ("README.md", "# x\n")]);
    env.git(&["config", "user.name", "Ada"]);
    env.git(&["config", "user.email", "ada@example.com"]);
    env
}

/// `plan` waits for a person; `build` needs it; `docs` does not.
fn gated(approve: bool) -> String {
    let approve = if approve {
        "approve = \"Is the plan sound?\"\n"
    } else {
        ""
    };
    format!(
        "[steps.plan]\nrun = \"echo 'step one' > PLAN.md\"\n{approve}\n\
         [steps.build]\nneeds = [\"plan\"]\nrun = \"cat PLAN.md > built.txt\"\n\n\
         [steps.docs]\nrun = \"echo docs > docs.txt\"\n"
    )
}

pub(crate) fn types(journal: &[serde_json::Value]) -> Vec<String> {
    journal
        .iter()
        .map(|e| {
            let step = e["step"].as_str().unwrap_or("-");
            format!("{} {step}", e["type"].as_str().unwrap_or("?"))
        })
        .collect()
}

fn has(journal: &[serde_json::Value], kind: &str, step: &str) -> bool {
    types(journal).contains(&format!("{kind} {step}"))
}

/// The result branch's files, without the mission file (which differs between missions).
pub(crate) fn result_files(env: &TestEnv) -> std::collections::BTreeMap<String, String> {
    let branches = env.result_branches();
    assert_eq!(branches.len(), 1, "{branches:?}");
    let mut tree = env.tree(&branches[0]);
    tree.remove("missions/m.toml");
    tree
}

#[test]
fn a_waiting_step_holds_its_dependents_a_sibling_runs_on_and_approve_from_another_process_completes_it()
 {
    let env = repo(&gated(true));
    let before = env.fingerprint();
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 3, "waiting has its own exit code: {}", out.stderr);
    assert!(
        out.stderr
            .contains("plan: waiting for approval: Is the plan sound? (1 file changed)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("run waiting in"), "{}", out.stderr);
    assert!(
        out.stderr.contains("`medley approve plan --run"),
        "{}",
        out.stderr
    );
    let journal = env.journal();
    assert!(has(&journal, "approval_requested", "plan"));
    assert!(has(&journal, "step_finished", "docs"), "the sibling ran on");
    assert!(!has(&journal, "step_ready", "build"), "the dependent waits");
    let requested = journal
        .iter()
        .find(|e| e["type"] == "approval_requested")
        .unwrap();
    assert_eq!(requested["message"], "Is the plan sound?");
    assert_eq!(requested["files"], 1);
    assert_eq!(
        journal.last().unwrap()["outcome"],
        "waiting",
        "{:?}",
        types(&journal)
    );
    assert!(env.result_branches().is_empty());

    // What needs a person, from anywhere.
    let waiting = env.run(&["runs", "--waiting"]);
    assert_eq!(waiting.code, 0, "{}", waiting.stderr);
    assert!(
        waiting.stdout.contains("m        plan  Is the plan sound?"),
        "{}",
        waiting.stdout
    );
    let runs = env.run(&["runs"]);
    assert!(runs.stdout.contains("waiting"), "{}", runs.stdout);
    let show = env.run(&["show"]);
    assert!(
        show.stdout
            .contains("outcome   waiting: waiting for approval: `plan`"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout
            .contains("waiting for approval: Is the plan sound? (`medley approve plan --run"),
        "{}",
        show.stdout
    );
    let json = env.run(&["runs", "--waiting", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json[0]["waiting"], serde_json::json!(["plan"]));

    // A second process approves; the run goes on and ends as a run without the gate does.
    let out = env.run(&["approve", "plan", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("approved `plan` in run"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("(by Ada <ada@example.com>)"),
        "{}",
        out.stderr
    );
    let journal = env.journal();
    let given = journal
        .iter()
        .find(|e| e["type"] == "approval_given")
        .unwrap();
    assert_eq!(given["step"], "plan");
    assert_eq!(given["by"], "Ada <ada@example.com>");
    assert!(has(&journal, "step_finished", "build"));
    assert_eq!(journal.last().unwrap()["outcome"], "passed");
    let gated_result = result_files(&env);
    assert_eq!(gated_result["built.txt"], "step one\n");
    assert_eq!(env.fingerprint(), before, "the user's files are untouched");
    let show = env.run(&["show"]);
    assert!(
        show.stdout.contains("approved by Ada <ada@example.com> at"),
        "{}",
        show.stdout
    );

    let plain = repo(&gated(false));
    let out = plain.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(gated_result, result_files(&plain));

    // Approving it again does nothing and says so; no run starts.
    let segments = |env: &TestEnv| {
        env.journal()
            .iter()
            .filter(|e| e["type"] == "run_started")
            .count()
    };
    let started = segments(&env);
    let again = env.run(&["approve", "plan", "--run", "last"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("`plan` is already approved in run"),
        "{}",
        again.stderr
    );
    assert_eq!(segments(&env), started);
    assert!(
        env.run(&["runs", "--waiting"])
            .stderr
            .contains("nothing waits for a person")
    );
}

#[test]
fn approving_a_step_that_is_not_waiting_names_the_ones_that_are() {
    let env = repo(&gated(true));
    assert_eq!(env.run(&["run", "m", "--output", "plain"]).code, 3);
    let out = env.run(&["approve", "docs", "nope"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`docs`, `nope` are not waiting for approval"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("what waits: `plan`"), "{}", out.stderr);
    // `--no-continue` records only.
    let out = env.run(&["approve", "plan", "--no-continue"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("`medley resume"), "{}", out.stderr);
    let journal = env.journal();
    assert_eq!(journal.last().unwrap()["type"], "approval_given");
    assert!(!has(&journal, "step_ready", "build"));
    let out = env.run(&["resume", "last", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(has(&env.journal(), "step_finished", "build"));
    // Nothing waits any more.
    let none = env.run(&["approve", "plan", "--run", "nothing"]);
    assert_eq!(none.code, 2);
    let none = env.run(&["reject", "plan", "--why", "x"]);
    assert_eq!(none.code, 2, "{}", none.stderr);
    assert!(
        none.stderr.contains("no run is waiting for approval"),
        "{}",
        none.stderr
    );
}

#[test]
fn a_rejected_step_fails_and_its_dependents_are_skipped_with_the_reason() {
    let env = repo(&gated(true));
    assert_eq!(env.run(&["run", "m", "--output", "plain"]).code, 3);
    let out = env.run(&["reject", "plan", "--why", "too vague", "--output", "plain"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("build: skipped: it needs `plan`, whose result was rejected: too vague"),
        "{}",
        out.stderr
    );
    let journal = env.journal();
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
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["error"]["kind"], "rejected");
    let skipped = journal
        .iter()
        .find(|e| e["type"] == "step_skipped")
        .unwrap();
    assert_eq!(skipped["reason"]["rejected"], "too vague");
    assert!(env.result_branches().is_empty());
    let show = env.run(&["show"]);
    assert!(
        show.stdout.contains("rejected by Ada <ada@example.com> at"),
        "{}",
        show.stdout
    );
}

#[test]
fn a_rejection_with_on_reject_retry_runs_the_agent_again_hearing_the_reason() {
    let mission = "[steps.plan]\nagent = \"claude\"\nprompt = \"Write PLAN.md\"\n\
                   approve = \"Is the plan sound?\"\non_reject = \"retry\"\n\n\
                   [steps.build]\nneeds = [\"plan\"]\nrun = \"cat PLAN.md > built.txt\"\n";
    let env = repo(mission);
    env.fakes(
        FAKE,
        &["claude"],
        "claude: append PLAN.md v1\\n\nclaude: append PLAN.md v2\\n\n",
    );
    assert_eq!(env.run(&["run", "m", "--output", "plain"]).code, 3);
    let out = env.run(&[
        "reject",
        "plan",
        "--why",
        "add a testing step",
        "--output",
        "plain",
    ]);
    assert_eq!(out.code, 3, "it ran again and waits again: {}", out.stderr);
    let calls = env.fake_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let prompt = calls[1]["prompt"].as_str().unwrap();
    assert!(prompt.contains("Write PLAN.md"), "{prompt}");
    assert!(
        prompt.contains("add a testing step"),
        "the agent hears the reason: {prompt}"
    );
    let out = env.run(&["approve", "plan", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let files = result_files(&env);
    assert_eq!(
        files["built.txt"], "v1\nv2\n",
        "the retry worked on top of the rejected result"
    );
}

fn journal_of(env: &TestEnv) -> Option<PathBuf> {
    let runs = env.work().join(".git/medley/runs");
    let mut ids: Vec<PathBuf> = fs_err::read_dir(&runs)
        .ok()?
        .map(|e| e.unwrap().path())
        .collect();
    ids.sort();
    Some(ids.last()?.join("events.jsonl"))
}

fn journal_has(path: &Path, text: &str) -> bool {
    fs_err::read_to_string(path).is_ok_and(|t| t.contains(text))
}

#[test]
fn a_run_killed_while_waiting_goes_on_after_approve() {
    let env = env();
    let dir = env.work().parent().unwrap().to_path_buf();
    let d = dir.display();
    let mission = format!(
        "[steps.plan]\nrun = \"echo 'step one' > PLAN.md\"\napprove = \"Is the plan sound?\"\n\n\
         [steps.build]\nneeds = [\"plan\"]\nrun = \"cat PLAN.md > built.txt\"\n\n\
         [steps.slow]\nrun = \"echo $$ >> {d}/pids; if [ ! -e {d}/go ]; then sleep 300; fi; echo slow > slow.txt\"\n"
    );
    env.repo(&[("missions/m.toml", &mission)]);
    let mut child = env
        .medley()
        .args(["run", "m", "--output", "plain"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(|| {
        journal_of(&env).is_some_and(|j| journal_has(&j, "approval_requested"))
            && fs_err::read_to_string(dir.join("pids")).is_ok_and(|p| !p.is_empty())
    });
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    child.wait().unwrap();
    let runs = env.run(&["runs", "--waiting"]);
    assert!(
        runs.stdout.contains("plan"),
        "the pause survives: {}",
        runs.stdout
    );
    fs_err::write(dir.join("go"), "").unwrap();
    let out = env.run(&["approve", "plan", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let files = result_files(&env);
    assert_eq!(files["built.txt"], "step one\n");
    assert_eq!(files["slow.txt"], "slow\n");
}

#[test]
fn an_approved_result_is_cached_with_its_approval_and_a_changed_key_asks_again() {
    let mission = "[steps.plan]\nrun = \"cat README.md > PLAN.md\"\napprove = \"Is the plan sound?\"\n\n\
                   [steps.build]\nneeds = [\"plan\"]\nrun = \"cat PLAN.md > built.txt\"\n";
    let env = repo(mission);
    assert_eq!(env.run(&["run", "m", "--output", "plain"]).code, 3);
    assert_eq!(env.run(&["approve", "plan", "--output", "plain"]).code, 0);
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(
        out.code, 0,
        "the same key does not ask again: {}",
        out.stderr
    );
    assert!(out.stderr.contains("plan: cached"), "{}", out.stderr);
    assert!(!has(&env.journal(), "approval_requested", "plan"));
    env.write("README.md", "# x, changed\n");
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 3, "a changed key asks again: {}", out.stderr);
}

#[test]
fn the_final_result_waits_before_its_branch_is_made() {
    let env = repo("approve = \"Ship it?\"\n\n[steps.a]\nrun = \"echo a > a.txt\"\n");
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("result: waiting for approval: Ship it?"),
        "{}",
        out.stderr
    );
    assert!(env.result_branches().is_empty());
    let out = env.run(&["approve", "@result", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(result_files(&env)["a.txt"], "a\n");
}

#[test]
fn the_live_view_asks_shows_the_diff_in_the_pager_and_approves() {
    let env = repo(&gated(true));
    let mut command = env.medley();
    command
        .args(["run", "m", "--output", "tty"])
        .env("PAGER", "cat");
    let mut session = rexpect::session::spawn_command(command, Some(60_000)).unwrap();
    session
        .exp_string("plan waits for your approval: Is the plan sound?")
        .unwrap();
    session.exp_string("gate").unwrap();
    session.exp_string("[d]iff").unwrap();
    session.send_line("d").unwrap();
    session.exp_string("+step one").unwrap();
    session.exp_string("[d]iff").unwrap();
    session.send_line("a").unwrap();
    session.exp_string("run passed").unwrap();
    session.exp_eof().unwrap();
    let journal = env.journal();
    assert!(has(&journal, "approval_given", "plan"));
    assert_eq!(result_files(&env)["built.txt"], "step one\n");
}

#[test]
fn the_live_view_can_reject_or_leave_a_result_waiting() {
    let env = repo(&gated(true));
    let mut command = env.medley();
    command.args(["run", "m", "--output", "tty"]);
    let mut session = rexpect::session::spawn_command(command, Some(60_000)).unwrap();
    session.exp_string("[l]eave waiting?").unwrap();
    session.send_line("l").unwrap();
    session.exp_string("run waiting").unwrap();
    session.exp_eof().unwrap();
    // Resumed in the live view, it is asked about again.
    let mut command = env.medley();
    command.args(["resume", "last", "--output", "tty"]);
    let mut session = rexpect::session::spawn_command(command, Some(60_000)).unwrap();
    session.exp_string("[l]eave waiting?").unwrap();
    session.send_line("r").unwrap();
    session.exp_string("why").unwrap();
    session.send_line("no plan at all").unwrap();
    session.exp_string("run failed").unwrap();
    session.exp_eof().unwrap();
    let journal = env.journal();
    let refused = journal
        .iter()
        .find(|e| e["type"] == "approval_refused")
        .unwrap();
    assert_eq!(refused["reason"], "no plan at all");
}

#[test]
fn the_approval_events_are_pinned() {
    let env = repo(&gated(true));
    let out = env.run(&["run", "m", "--output", "json"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let out = env.run(&["reject", "plan", "--why", "too vague", "--output", "json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let kinds = [
        "approval_requested",
        "approval_refused",
        "step_skipped",
        "run_finished",
    ];
    let journal = env.journal();
    let run = journal[0]["run"].as_str().unwrap().to_owned();
    let mut text = String::new();
    for event in &journal {
        let kind = event["type"].as_str().unwrap_or("");
        let rejected = kind == "step_finished" && event["error"]["kind"] == "rejected";
        if kinds.contains(&kind) || rejected {
            text.push_str(&serde_json::to_string(event).unwrap().replace(&run, "<run>"));
            text.push('\n');
        }
    }
    insta::with_settings!({
        snapshot_path => "../snapshots",
        prepend_module_to_snapshot => false,
        filters => vec![
            (r#""ts":"[^"]+""#, r#""ts":"<ts>""#),
            (r"[0-9a-f]{40}", "<sha>"),
            (r#""duration_ms":\d+"#, r#""duration_ms":<ms>"#),
        ],
    }, {
        insta::assert_snapshot!("approval-events-json", text);
    });
}

#[test]
fn validate_graph_and_the_dry_run_show_the_gates() {
    let env = repo(&format!("approve = \"Ship it?\"\n\n{}", gated(true)));
    let out = env.run(&["validate", "m"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let graph = env.run(&["graph", "m"]);
    assert!(
        graph.stdout.contains("plan\ncommand, approve"),
        "{}",
        graph.stdout
    );
    assert!(graph.stdout.contains("docs\ncommand\""), "{}", graph.stdout);
    let dry = env.run(&["run", "m", "--dry-run"]);
    assert!(dry.stdout.contains("[command, approve]"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains("   approve: Is the plan sound?"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("final approval: Ship it?"),
        "{}",
        dry.stdout
    );
    let json = env.run(&["run", "m", "--dry-run", "--output", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(plan["approve"], "Ship it?");
    assert_eq!(plan["steps"][0]["approve"], "Is the plan sound?");
}

#[test]
fn ctrl_c_at_the_prompt_stops_the_run_and_the_pause_is_kept() {
    let env = repo(&gated(true));
    let mut command = env.medley();
    command.args(["run", "m", "--output", "tty"]);
    let mut session = rexpect::session::spawn_command(command, Some(60_000)).unwrap();
    session.exp_string("[l]eave waiting?").unwrap();
    session.send_control('c').unwrap();
    session.exp_string("run cancelled").unwrap();
    session.exp_eof().unwrap();
    let journal = env.journal();
    assert_eq!(journal.last().unwrap()["outcome"], "cancelled");
    // What waited still does: approving it goes on.
    let out = env.run(&["approve", "plan", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(result_files(&env)["built.txt"], "step one\n");
}
