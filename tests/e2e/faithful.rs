//! Faithful reruns: a cached or resumed step hands on exactly what a fresh run would, and
//! nothing fails silently (budget, resume options, swallowed errors).

use std::path::{Path, PathBuf};

use medley_tests::TestEnv;

use crate::env;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-agent");

/// Every run's directory, oldest first.
fn runs(env: &TestEnv) -> Vec<PathBuf> {
    let mut ids: Vec<PathBuf> = fs_err::read_dir(env.work().join(".git/medley/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ids.sort();
    ids
}

fn journal_of(run: &Path) -> Vec<serde_json::Value> {
    fs_err::read_to_string(run.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The outcome of `step`'s last `step_finished` in `events`.
fn outcome(events: &[serde_json::Value], step: &str) -> String {
    events
        .iter()
        .rev()
        .find(|e| e["type"] == "step_finished" && e["step"] == step)
        .and_then(|e| e["outcome"].as_str())
        .unwrap_or_else(|| panic!("no step_finished for {step}"))
        .to_owned()
}

fn prompt(run: &Path, name: &str) -> Vec<u8> {
    fs_err::read(run.join("prompts").join(name)).unwrap()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs_err::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z")
}

#[test]
fn a_chain_renders_the_same_prompts_fresh_cached_and_resumed() {
    let env = env();
    let dir = env.work().parent().unwrap().to_path_buf();
    let go = dir.join("go");
    env.fakes(FAKE, &["claude"], "claude: write x.txt x\n");
    let mission = format!(
        "[steps.a]\nagent = \"claude\"\nprompt = \"Start.\"\n\n\
         [steps.b]\nneeds = [\"a\"]\nagent = \"claude\"\nprompt = \"After a: {{{{ steps.a.output }}}}\"\n\n\
         [steps.c]\nneeds = [\"b\"]\nagent = \"claude\"\nprompt = \"After b: {{{{ steps.b.output }}}}\"\n\
         gate = \"test -e {}\"\nattempts = 1\ncache = false\n",
        go.display()
    );
    env.repo(&[("missions/chain.toml", &mission)]);
    fs_err::write(&go, "").unwrap();

    let first = env.run(&["run", "chain"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let fresh = runs(&env)[0].clone();
    let c_prompt = prompt(&fresh, "c.1.claude.txt");
    assert!(
        String::from_utf8_lossy(&c_prompt).starts_with("After b: Created"),
        "{}",
        String::from_utf8_lossy(&c_prompt)
    );

    // A rerun reuses a and b, and c sees what it saw the first time.
    let again = env.run(&["run", "chain"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let cached = runs(&env)[1].clone();
    let events = journal_of(&cached);
    assert_eq!(outcome(&events, "a"), "cached");
    assert_eq!(
        outcome(&events, "b"),
        "cached",
        "b's prompt rendered as before"
    );
    assert_eq!(prompt(&cached, "c.1.claude.txt"), c_prompt);

    // A run whose c fails, resumed: the kept a and b hand on what they handed on.
    fs_err::remove_file(&go).unwrap();
    assert_eq!(env.run(&["run", "chain"]).code, 1);
    fs_err::write(&go, "").unwrap();
    let resumed = env.run(&["resume", "last", "--output", "plain"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let run = runs(&env)[2].clone();
    assert_eq!(outcome(&journal_of(&run), "c"), "passed");
    assert_eq!(prompt(&run, "c.1.claude.txt"), c_prompt);
}

#[test]
fn outcome_passed_holds_on_a_cached_rerun_and_cached_says_it_was_reused() {
    let env = env();
    env.repo(&[(
        "missions/m.toml",
        "[steps.a]\nrun = \"echo a > a.txt\"\n\n\
         [steps.b]\nneeds = [\"a\"]\nif = \"steps.a.outcome == 'passed'\"\n\
         run = \"echo {{ 'reused' if steps.a.cached else 'fresh' }} > b.txt\"\n",
    )]);
    assert_eq!(env.run(&["run", "m"]).code, 0);
    let branch = env.result_branches().last().unwrap().clone();
    assert_eq!(env.tree(&branch)["b.txt"], "fresh\n");

    let again = env.run(&["run", "m"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let events = env.journal();
    assert_eq!(outcome(&events, "a"), "cached");
    assert!(
        !events.iter().any(|e| e["type"] == "step_skipped"),
        "`if` held on the cached a: {events:?}"
    );
    assert_eq!(outcome(&events, "b"), "passed");
    let branch = env.result_branches().last().unwrap().clone();
    assert_eq!(env.tree(&branch)["b.txt"], "reused\n");
}

#[test]
fn cost_usd_hands_on_what_the_step_cost() {
    let env = env();
    env.fakes(FAKE, &["claude"], "claude: write a.txt a\n");
    env.repo(&[(
        "missions/m.toml",
        "[steps.a]\nagent = \"claude\"\nprompt = \"A.\"\n\n\
         [steps.b]\nneeds = [\"a\"]\nrun = \"echo {{ steps.a.cost_usd }} > cost.txt\"\n",
    )]);
    let out = env.run(&["run", "m"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let branch = env.result_branches().last().unwrap().clone();
    assert_eq!(env.tree(&branch)["cost.txt"], "0.0016\n");
    // Reused, a still hands on what making it cost, so b is reused too.
    let again = env.run(&["run", "m"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(outcome(&env.journal(), "b"), "cached");
}

#[test]
fn a_budget_reached_stops_the_agent_steps_in_flight() {
    let env = env();
    let dir = env.work().parent().unwrap().to_path_buf();
    let pids = dir.join("pids");
    let p = pids.display();
    env.fakes(
        FAKE,
        &["claude", "codex"],
        &format!("codex: pid {p}; hang\nclaude: await {p} 2; write c.txt c\n"),
    );
    env.repo(&[(
        "missions/b.toml",
        "budget_usd = 0.001\n\n\
         [agents.cx]\nruntime = \"codex\"\nprice = { input_per_mtok = 1.0, output_per_mtok = 1.0 }\n\n\
         [defaults]\ntimeout = \"60s\"\nattempts = 1\n\n\
         [steps.a]\nagent = \"cx\"\nprompt = \"A.\"\n\n\
         [steps.b]\nagent = \"cx\"\nprompt = \"B.\"\n\n\
         [steps.c]\nagent = \"claude\"\nprompt = \"C.\"\n",
    )]);
    let out = env.run(&["run", "b", "--output", "plain"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let events = env.journal();
    let end = events.iter().find(|e| e["type"] == "run_finished").unwrap();
    assert_eq!(end["reason"], "budget reached");
    assert_eq!(outcome(&events, "c"), "passed");
    for step in ["a", "b"] {
        assert_eq!(
            outcome(&events, step),
            "cancelled",
            "{step} was stopped, not left to run: {}",
            out.stderr
        );
    }
    let stopped = events
        .iter()
        .find(|e| e["type"] == "step_finished" && e["step"] == "a")
        .unwrap();
    assert_eq!(
        stopped["error"]["message"],
        "the run reached its budget and stopped it"
    );
    let pids = fs_err::read_to_string(&pids).unwrap();
    assert_eq!(pids.lines().count(), 2);
    for pid in pids.lines() {
        assert!(!alive(pid.parse().unwrap()), "fake {pid} outlived the run");
    }
}

#[test]
fn worktreeinclude_files_are_part_of_the_key_of_the_steps_that_see_them() {
    let env = env();
    env.repo(&[
        (".gitignore", ".env\n"),
        (".worktreeinclude", ".env\n"),
        ("src/lib.rs", "fn x() {}\n"),
        (
            "missions/m.toml",
            "[steps.reads]\nrun = \"cat .env > seen.txt\"\n\n\
             [steps.blind]\ninputs = [\"src/**\"]\nrun = \"echo blind > blind.txt\"\n",
        ),
    ]);
    env.write(".env", "A=1\n");
    assert_eq!(env.run(&["run", "m"]).code, 0);
    env.write(".env", "A=2\n");
    let out = env.run(&["run", "m"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let events = env.journal();
    assert_eq!(
        outcome(&events, "reads"),
        "passed",
        "a changed .env reruns it"
    );
    assert_eq!(
        outcome(&events, "blind"),
        "cached",
        "its inputs do not see .env"
    );
    let branch = env.result_branches().last().unwrap().clone();
    assert_eq!(env.tree(&branch)["seen.txt"], "A=2\n");
    // Unchanged, it is reused.
    assert_eq!(env.run(&["run", "m"]).code, 0);
    assert_eq!(outcome(&env.journal(), "reads"), "cached");
}

#[test]
fn resume_keeps_the_runs_options_and_lists_the_steps_it_keeps() {
    let env = env();
    let dir = env.work().parent().unwrap().to_path_buf();
    let go = dir.join("go");
    env.repo(&[(
        "missions/m.toml",
        &format!(
            "[steps.a]\nrun = \"test -e {} && echo a > a.txt\"\nattempts = 1\n\n\
             [steps.b]\nrun = \"echo b > b.txt\"\n",
            go.display()
        ),
    )]);
    fs_err::write(&go, "").unwrap();
    assert_eq!(env.run(&["run", "m"]).code, 0, "a and b are in the cache");
    fs_err::remove_file(&go).unwrap();
    assert_eq!(env.run(&["run", "m", "--no-cache"]).code, 1);
    let out = env.run(&["resume", "last", "--output", "plain"]);
    assert_eq!(
        out.code, 1,
        "a ran again (no cache), and failed: {}",
        out.stderr
    );
    let run = runs(&env)[1].clone();
    let events = journal_of(&run);
    assert_eq!(
        outcome(&events, "a"),
        "failed",
        "the resumed run kept --no-cache"
    );
    assert!(
        out.stderr
            .contains("b: kept from before the resume (passed"),
        "{}",
        out.stderr
    );
    let record: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["no_cache"], true);
    assert_eq!(record["grace_ms"], serde_json::json!([300, 300]));
}

#[test]
fn resume_shows_why_the_recorded_mission_no_longer_compiles() {
    let env = env();
    env.repo(&[(
        "missions/m.toml",
        "[steps.a]\nrun = \"false\"\nattempts = 1\n",
    )]);
    assert_eq!(env.run(&["run", "m"]).code, 1);
    let run = runs(&env)[0].clone();
    let path = run.join("run.json");
    let mut record: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap();
    record["mission_source"] = "[steps.a]\nrun = \"false\"\nattemps = 1\n".into();
    fs_err::write(&path, record.to_string()).unwrap();
    let out = env.run(&["resume", "last"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no longer compiles"), "{}", out.stderr);
    assert!(
        out.stderr.contains("attemps"),
        "the real diagnostic: {}",
        out.stderr
    );
}

#[test]
fn a_failed_version_probe_is_a_warning_and_a_key_of_its_own() {
    let env = env();
    env.fakes(FAKE, &["claude"], "claude: write a.txt a\n");
    env.repo(&[(
        "missions/m.toml",
        "[steps.a]\nagent = \"claude\"\nprompt = \"A.\"\n",
    )]);
    let run = |version: &str| {
        let output = env
            .medley()
            .env("MEDLEY_FAKE_VERSION", version)
            .args(["run", "m", "--output", "plain"])
            .output()
            .unwrap();
        medley_tests::CommandOutput::new(output, env.work())
    };
    let out = run("no version here");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let warning = env
        .journal()
        .into_iter()
        .find(|e| e["type"] == "warning")
        .unwrap_or_else(|| panic!("no warning: {}", out.stderr));
    assert_eq!(warning["step"], "a");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("cannot learn the version of `claude`"),
        "{warning}"
    );
    assert!(out.stderr.contains("warning: "), "{}", out.stderr);
    // A known version is another key: the result of an unknown one is not taken for it.
    assert_eq!(run("2.1.330 (Claude Code)").code, 0);
    assert_eq!(outcome(&env.journal(), "a"), "passed");
    assert_eq!(env.fake_calls().len(), 2);
}

#[test]
fn a_result_that_cannot_be_cached_is_a_warning() {
    let env = env();
    env.repo(&[("missions/m.toml", "[steps.a]\nrun = \"echo a > a.txt\"\n")]);
    // The cache's directory cannot be made: a file is in its place.
    fs_err::create_dir_all(env.work().join(".git/medley")).unwrap();
    fs_err::write(env.work().join(".git/medley/cache"), "").unwrap();
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("a: its result could not be kept in the cache"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_diff_that_cannot_be_made_fails_the_step_that_renders_it() {
    let env = env();
    let dir = env.work().parent().unwrap().to_path_buf();
    let go = dir.join("go");
    env.repo(&[(
        "missions/m.toml",
        &format!(
            "[steps.a]\nrun = \"echo a > a.txt\"\n\n\
             [steps.b]\nneeds = [\"a\"]\nrun = \"printf %s {{{{ steps.a.diff }}}} > d.txt\"\n\
             gate = \"test -e {}\"\nattempts = 1\n",
            go.display()
        ),
    )]);
    assert_eq!(env.run(&["run", "m"]).code, 1);
    // The base a's diff is against is gone (as after a `git gc` of an unreferenced commit).
    let run = runs(&env)[0].clone();
    let journal = fs_err::read_to_string(run.join("events.jsonl")).unwrap();
    let edited: Vec<String> = journal
        .lines()
        .map(|line| {
            let mut event: serde_json::Value = serde_json::from_str(line).unwrap();
            if event["type"] == "step_ready" && event["step"] == "a" {
                event["base"] = "1111111111111111111111111111111111111111".into();
            }
            event.to_string()
        })
        .collect();
    fs_err::write(run.join("events.jsonl"), edited.join("\n") + "\n").unwrap();
    fs_err::write(&go, "").unwrap();
    let out = env.run(&["resume", "last", "--output", "plain"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot make the diff of step `a`"),
        "not an empty diff: {}",
        out.stderr
    );
}

#[test]
fn resume_says_when_the_runs_record_cannot_be_read() {
    let env = env();
    env.repo(&[(
        "missions/m.toml",
        "[steps.a]\nrun = \"false\"\nattempts = 1\n",
    )]);
    assert_eq!(env.run(&["run", "m"]).code, 1);
    let run = runs(&env)[0].clone();
    fs_err::write(run.join("run.json"), "{ torn").unwrap();
    let out = env.run(&["resume", "last"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot read what the run was asked"),
        "not \"made by an older medley\": {}",
        out.stderr
    );
}
