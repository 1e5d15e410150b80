//! Agent steps with the fake CLIs: retries that resume with the gate's words, fallback, race,
//! the network-wait rule, the prompt archive, costs and the budget, preflight.

use std::time::Duration;

use medley_tests::{CommandOutput, TestEnv};

use crate::env;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-agent");

/// A test environment with the fake CLIs `clis` following `script`, and a repository holding
/// `files`.
pub(crate) fn fake_env(clis: &[&str], script: &str, files: &[(&str, &str)]) -> TestEnv {
    let env = env();
    env.fakes(FAKE, clis, script);
    env.repo(files);
    env
}

/// Runs `medley ARGS...` with the environment variables `vars` set too.
pub(crate) fn run_with(env: &TestEnv, vars: &[(&str, &str)], args: &[&str]) -> CommandOutput {
    let output = env
        .medley()
        .envs(vars.iter().copied())
        .args(args)
        .output()
        .unwrap();
    CommandOutput::new(output, env.work())
}

/// The journal's events of one type.
pub(crate) fn events_of(env: &TestEnv, kind: &str) -> Vec<serde_json::Value> {
    env.journal()
        .into_iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

/// The `step_finished` event of `step`.
pub(crate) fn finished(env: &TestEnv, step: &str) -> serde_json::Value {
    events_of(env, "step_finished")
        .into_iter()
        .find(|e| e["step"] == step)
        .unwrap_or_else(|| panic!("no step_finished for {step}"))
}

/// The argv a fake CLI was called with.
pub(crate) fn argv(call: &serde_json::Value) -> Vec<String> {
    call["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// Asserts that `text` says `words`, showing `text` when it does not.
fn assert_contains(text: &str, words: &str) {
    assert!(text.contains(words), "{text}");
}

fn argv_has(call: &serde_json::Value, flag: &str, value: &str) -> bool {
    argv(call).windows(2).any(|w| w[0] == flag && w[1] == value)
}

#[test]
fn a_gate_failure_is_fed_back_into_the_resumed_session() {
    let env = fake_env(
        &["claude"],
        "claude: write notes.txt first\nclaude: write done.txt ok\n",
        &[(
            "missions/fix.toml",
            "[steps.fix]\nagent = \"claude\"\nprompt = \"Make done.txt.\"\ngate = \"echo checked; test -f done.txt\"\n",
        )],
    );
    let out = env.run(&["run", "fix", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let calls = env.fake_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let first = argv(&calls[0]);
    assert!(first.iter().any(|a| a == "--session-id"));
    let session = first
        .iter()
        .skip_while(|a| *a != "--session-id")
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        argv_has(&calls[1], "--resume", &session),
        "the retry resumes the session: {}",
        calls[1]
    );
    let retry = calls[1]["prompt"].as_str().unwrap();
    assert!(retry.contains("echo checked; test -f done.txt"), "{retry}");
    assert!(retry.contains("exit code 1"), "{retry}");
    assert!(
        retry.contains("checked"),
        "the gate's output reaches the agent: {retry}"
    );
    let fix = finished(&env, "fix");
    assert_eq!(fix["agent"], "claude");
    assert_eq!(fix["attempts"], 2);
    assert_eq!(
        fix["tokens"],
        serde_json::json!({"input": 400, "output": 80})
    );
    // claude reports the whole session's cost after a resume: 0.0016 + (0.0032 - 0.0016).
    assert!(
        (fix["cost_usd"].as_f64().unwrap() - 0.0032).abs() < 1e-9,
        "{fix}"
    );
    let tree = env.tree(&env.result_branches()[0]);
    assert_eq!(tree["done.txt"], "ok");
    assert_eq!(tree["notes.txt"], "first");
}

#[test]
fn the_prompt_archive_holds_exactly_what_each_agent_received() {
    let env = fake_env(
        &["claude", "codex"],
        "claude: 401\ncodex: write a.txt x\n",
        &[(
            "missions/p.toml",
            "[vars]\nwho = \"O'Brien $HOME `x`\"\n\n[steps.s]\nagent = [\"claude\", \"codex\"]\nprompt = \"\"\"\nGreet {{ vars.who }}.\n  Keep   spacing; and a trailing newline.\n\"\"\"\n",
        )],
    );
    let out = env.run(&["run", "p"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let runs = env.work().join(".git/medley/runs");
    let run = fs_err::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for (call, agent) in env.fake_calls().iter().zip(["claude", "codex"]) {
        let archived =
            fs_err::read_to_string(run.join(format!("prompts/s.1.{agent}.txt"))).unwrap();
        assert_eq!(call["prompt"].as_str().unwrap(), archived, "{agent}");
        assert_eq!(
            archived,
            "Greet O'Brien $HOME `x`.\n  Keep   spacing; and a trailing newline.\n"
        );
    }
}

#[test]
fn an_auth_error_moves_on_to_the_next_agent_at_once() {
    let env = fake_env(
        &["claude", "codex"],
        "claude: 401\ncodex: write out.txt by codex\n",
        &[(
            "missions/f.toml",
            "[steps.s]\nagent = [\"claude\", \"codex\"]\nattempts = 3\nprompt = \"Write out.txt.\"\n",
        )],
    );
    let out = env.run(&["run", "f", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let calls: Vec<String> = env
        .fake_calls()
        .iter()
        .map(|c| c["cli"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        calls,
        ["claude", "codex"],
        "no second claude attempt after a 401"
    );
    let failed = events_of(&env, "attempt_failed");
    assert_eq!(failed[0]["reason"], "auth");
    assert!(
        failed[0]["message"]
            .as_str()
            .unwrap()
            .contains("ANTHROPIC_API_KEY"),
        "{}",
        failed[0]
    );

    assert!(
        failed[0]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid API key"),
        "{}",
        failed[0]
    );
    let switched = events_of(&env, "agent_switched");
    assert_eq!(switched[0]["from"], "claude");
    assert_eq!(switched[0]["to"], "codex");
    assert_eq!(switched[0]["reason"], "auth");
    assert_eq!(finished(&env, "s")["agent"], "codex");
    assert_contains(&out.stderr, "switching from `claude` to `codex`");
    // codex ran in its own worktree (a pool slot of its own), in its own CLI's sandbox mode.
    let calls = env.fake_calls();
    let codex = &calls[1];
    assert!(argv_has(codex, "--sandbox", "workspace-write"), "{codex}");
    assert_ne!(codex["cwd"], calls[0]["cwd"], "{codex}");
    assert!(
        codex["cwd"].as_str().unwrap().contains("/pool/s"),
        "{codex}"
    );
}

#[test]
fn a_codex_waiting_for_the_network_is_stopped_and_the_chain_moves_on() {
    let env = fake_env(
        &["claude", "codex"],
        "codex: unreachable\nclaude: write ok.txt yes\n",
        &[(
            "missions/n.toml",
            "[steps.s]\nagent = [\"codex\", \"claude\"]\nprompt = \"Write ok.txt.\"\ntimeout = \"10m\"\n",
        )],
    );
    let out = env.run(&["run", "n"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let failed = events_of(&env, "attempt_failed");
    assert_eq!(failed[0]["reason"], "unreachable");
    assert_eq!(finished(&env, "s")["agent"], "claude");
}

#[test]
fn a_race_is_won_by_the_first_to_pass_and_the_loser_is_stopped() {
    let env = env();
    let pids = env.work().parent().unwrap().join("claude.pids");
    env.fakes(
        FAKE,
        &["claude", "codex"],
        &format!(
            // codex wins only once claude is running, so the loser has a process to stop.
            "claude: pid {}; hang\ncodex: await {}; write won.txt codex\n",
            pids.display(),
            pids.display()
        ),
    );
    env.repo(&[(
        "missions/r.toml",
        "[steps.s]\nagent = [\"claude\", \"codex\"]\nstrategy = \"race\"\nprompt = \"Race.\"\n",
    )]);
    let out = env.run(&["run", "r"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(finished(&env, "s")["agent"], "codex");
    let pid = fs_err::read_to_string(&pids)
        .unwrap()
        .trim()
        .parse::<i32>()
        .unwrap();
    let alive =
        fs_err::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
    assert!(!alive, "the losing claude ({pid}) outlived the race");
    // The loser's attempt stays visible in the journal.
    assert!(
        events_of(&env, "step_started")
            .iter()
            .any(|e| e["agent"] == "claude")
    );
    assert_eq!(env.tree(&env.result_branches()[0])["won.txt"], "codex");
}

#[test]
fn costs_add_up_and_unknown_costs_are_said_to_be_unknown() {
    let env = fake_env(
        &["claude", "codex"],
        "claude: write a.txt a\ncodex: write b.txt b\n",
        &[(
            "missions/c.toml",
            "[steps.a]\nagent = \"claude\"\nprompt = \"A.\"\n\n[steps.b]\nneeds = [\"a\"]\nagent = \"codex\"\nprompt = \"B.\"\n",
        )],
    );
    let out = env.run(&["run", "c", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!((finished(&env, "a")["cost_usd"].as_f64().unwrap() - 0.0016).abs() < 1e-9);
    assert_eq!(
        finished(&env, "b")["cost_usd"],
        serde_json::Value::Null,
        "codex reports no cost: null, never 0"
    );
    let end = &events_of(&env, "run_finished")[0];
    assert_eq!(end["unpriced_steps"], 1);
    assert_eq!(
        end["tokens"],
        serde_json::json!({"input": 400, "output": 80})
    );
    assert_contains(&out.stderr, "`codex`, tokens 200/40, cost unknown");
    assert_contains(&out.stderr, "tokens 400/80, cost $0.0016 + unknown");
    let show = env.run(&["show", "last"]);
    let row = |step: &str| {
        show.stdout
            .lines()
            .find(|l| l.starts_with(step))
            .unwrap()
            .to_owned()
    };
    assert!(
        row("a ").contains("claude") && row("a ").contains("$0.0016"),
        "{}",
        show.stdout
    );
    assert!(
        row("b ").contains("codex") && row("b ").contains("unknown"),
        "{}",
        show.stdout
    );
    assert_contains(&show.stdout, "(unknown for 1 step)");
}

#[test]
fn a_budget_stops_the_run_when_costs_reach_it() {
    let env = fake_env(
        &["claude"],
        "claude: write a.txt a\n",
        &[(
            "missions/b.toml",
            "budget_usd = 0.001\n\n[steps.a]\nagent = \"claude\"\nprompt = \"A.\"\n\n[steps.b]\nneeds = [\"a\"]\nagent = \"claude\"\nprompt = \"B.\"\n",
        )],
    );
    let out = env.run(&["run", "b", "--output", "plain"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let end = &events_of(&env, "run_finished")[0];
    assert_eq!(end["outcome"], "failed");
    assert_eq!(end["reason"], "budget reached");
    assert_eq!(
        env.fake_calls().len(),
        1,
        "no attempt starts once the budget is reached"
    );
    assert_contains(&out.stderr, "budget reached");
}

#[test]
fn a_budget_with_an_agent_of_unknown_cost_is_refused_before_anything_starts() {
    let env = fake_env(
        &["codex"],
        "codex: ok\n",
        &[(
            "missions/b.toml",
            "budget_usd = 1.0\n\n[steps.a]\nagent = \"codex\"\nprompt = \"A.\"\n",
        )],
    );
    let out = env.run(&["run", "b"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_contains(&out.stderr, "cannot know what `codex` cost");
    assert_contains(&out.stderr, "input_per_mtok = 1.25");
    assert!(env.fake_calls().is_empty());
}

#[test]
fn preflight_names_missing_agents_and_how_to_install_them() {
    let env = fake_env(
        &["codex"],
        "codex: write a.txt a\n",
        &[
            (
                "missions/m.toml",
                "[steps.a]\nagent = [\"gemini\", \"qwen\"]\nprompt = \"A.\"\n",
            ),
            (
                "missions/w.toml",
                "[steps.a]\nagent = [\"claude\", \"codex\"]\nprompt = \"A.\"\n",
            ),
        ],
    );
    let missing = env.run(&["run", "m"]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert_contains(&missing.stderr, "`a` needs `gemini` or `qwen`");
    assert_contains(&missing.stderr, "npm install -g @google/gemini-cli");
    // A missing agent later in a chain is warned about and skipped.
    let warned = env.run(&["run", "w", "--output", "plain"]);
    assert_eq!(warned.code, 0, "{}", warned.stderr);
    assert_contains(
        &warned.stderr,
        "warning: step `a`: agent `claude` is not installed",
    );
    assert_eq!(finished(&env, "a")["agent"], "codex");
}

#[test]
fn claude_bypass_refused_as_root_says_how_to_fix_it() {
    let env = fake_env(
        &["claude"],
        "claude: ok\n",
        &[(
            "missions/r.toml",
            "[steps.a]\nagent = \"claude\"\nattempts = 1\nprompt = \"A.\"\n",
        )],
    );
    let out = env
        .medley()
        .env_remove("IS_SANDBOX")
        .env("MEDLEY_FAKE_ROOT", "1")
        .args(["run", "r", "--output", "plain"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let a = finished(&env, "a");
    let message = a["error"]["message"].as_str().unwrap();
    assert!(message.contains("IS_SANDBOX=1"), "{message}");
    assert!(message.contains("acceptEdits"), "{message}");
}

#[test]
fn agents_lists_each_runtime() {
    let env = env();
    env.fakes(FAKE, &["claude"], "");
    let out = env.run(&["agents"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let claude = out
        .stdout
        .lines()
        .find(|l| l.starts_with("claude"))
        .unwrap()
        .to_owned();
    assert!(claude.contains(" yes "), "{claude}");
    let cursor = out
        .stdout
        .lines()
        .find(|l| l.starts_with("cursor"))
        .unwrap()
        .to_owned();
    assert!(
        cursor.contains("cursor-agent") && cursor.contains(" no "),
        "{cursor}"
    );
    let _ = Duration::ZERO;
}

#[test]
fn a_cli_that_lingers_after_its_final_event_is_stopped_and_its_result_stands() {
    let env = fake_env(
        &["cursor-agent"],
        "cursor-agent: write c.txt cursor; linger\n",
        &[(
            "missions/l.toml",
            "[steps.s]\nagent = \"cursor\"\nprompt = \"Write c.txt.\"\ntimeout = \"5m\"\n",
        )],
    );
    let out = env.run(&["run", "l", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = finished(&env, "s");
    assert_eq!(s["agent"], "cursor");
    assert_eq!(s["attempts"], 1);
    assert_eq!(s["cost_usd"], serde_json::Value::Null);
    assert_eq!(env.tree(&env.result_branches()[0])["c.txt"], "cursor");
    let call = &env.fake_calls()[0];
    assert!(argv_has(call, "--output-format", "stream-json"), "{call}");
    assert!(argv(call).iter().any(|a| a == "--force"), "{call}");
}

#[test]
fn a_cli_of_an_untested_version_is_warned_about() {
    let env = fake_env(
        &["codex"],
        "codex: write a.txt a\n",
        &[(
            "missions/v.toml",
            "[steps.a]\nagent = \"codex\"\nprompt = \"A.\"\n",
        )],
    );
    let out = run_with(
        &env,
        &[("MEDLEY_FAKE_VERSION", "codex-cli 0.200.1")],
        &["run", "v", "--output", "plain"],
    );
    let stderr = out.stderr;
    assert_eq!(out.code, 0, "{stderr}");
    assert!(
        stderr.contains(
            "`codex` is version 0.200.1; medley's codex adapter was verified against 0.169.0"
        ),
        "{stderr}"
    );
    // The tested version draws no warning (a new environment: versions are cached by binary).
    let env = fake_env(
        &["codex"],
        "codex: write a.txt a\n",
        &[(
            "missions/v.toml",
            "[steps.a]\nagent = \"codex\"\nprompt = \"A.\"\n",
        )],
    );
    let quiet = env.run(&["run", "v", "--output", "plain"]);
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert!(!quiet.stderr.contains("warning"), "{}", quiet.stderr);
}
