//! Kimi Code end to end, with the fake `kimi` replaying the real CLI's captured samples: retries
//! that resume with `-S`, errors classified by Kimi Code's own codes, the network wait, the
//! legacy stub and an old Node refused before anything starts.

use crate::agents::{argv, events_of, fake_env, finished, run_with};

/// A step of kimi alone.
const ONE: &str = "[steps.fix]\nagent = \"kimi\"\nprompt = \"Make done.txt.\"\n";
/// A step of kimi, then codex.
const FIX: &str = "[steps.fix]\nagent = [\"kimi\", \"codex\"]\nprompt = \"Make done.txt.\"\ngate = \"echo checked; test -f done.txt\"\n";

#[test]
fn a_retry_resumes_the_kimi_session_with_the_gates_output() {
    let env = fake_env(
        &["kimi", "codex"],
        "kimi: write notes.txt first\nkimi: write done.txt ok\n",
        &[("missions/fix.toml", FIX)],
    );
    let out = env.run(&["run", "fix", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let calls = env.fake_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let first = argv(&calls[0]);
    assert_eq!(
        first[..4],
        ["-p", "Make done.txt.", "--output-format", "stream-json"]
    );
    assert!(!first.contains(&"-S".to_owned()));
    let second = argv(&calls[1]);
    let at = second.iter().position(|a| a == "-S").expect("a resume");
    assert!(second[at + 1].starts_with("session_"), "{second:?}");
    let retry = calls[1]["prompt"].as_str().unwrap();
    assert!(retry.contains("echo checked; test -f done.txt"), "{retry}");
    assert!(retry.contains("checked"), "{retry}");
    let fix = finished(&env, "fix");
    assert_eq!(fix["agent"], "kimi");
    assert_eq!(fix["attempts"], 2);
    assert!(fix["cost_usd"].is_null(), "{fix}");
    // Kimi Code reports no usage: unknown, never 0.
    assert!(fix["tokens"].is_null(), "{fix}");
    let run = env
        .journal()
        .into_iter()
        .find(|e| e["type"] == "run_finished")
        .unwrap();
    assert_eq!(run["uncounted_steps"], 1, "{run}");
    assert_eq!(run["unpriced_steps"], 1, "{run}");
    let show = env.run(&["show", "last"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    let row = show.stdout.lines().find(|l| l.starts_with("fix ")).unwrap();
    assert!(row.contains("unknown"), "{row}");
    assert!(!row.contains("0/0"), "{row}");
    assert!(
        show.stdout.contains("(unknown for 1 step)"),
        "{}",
        show.stdout
    );
    let runs = env.run(&["runs"]);
    assert!(!runs.stdout.contains(" 0 "), "{}", runs.stdout);
    assert!(runs.stdout.contains("unknown"), "{}", runs.stdout);
}

#[test]
fn a_401_moves_on_to_the_next_agent_at_once() {
    let env = fake_env(
        &["kimi", "codex"],
        "kimi: 401\ncodex: write done.txt ok\n",
        &[("missions/fix.toml", FIX)],
    );
    let out = env.run(&["run", "fix", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let calls: Vec<String> = env
        .fake_calls()
        .iter()
        .map(|c| c["cli"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(calls, ["kimi", "codex"], "a 401 is not retried");
    let failed = events_of(&env, "attempt_failed");
    assert_eq!(failed[0]["reason"], "auth", "{failed:?}");
    let message = failed[0]["message"].as_str().unwrap();
    assert!(message.contains("provider.auth_error: 401"), "{message}");
    assert!(!message.contains("See log"), "{message}");
    assert_eq!(finished(&env, "fix")["agent"], "codex");
}

#[test]
fn a_missing_key_says_how_to_configure_a_provider() {
    for case in ["nokey", "noconfig"] {
        let env = fake_env(
            &["kimi"],
            &format!("kimi: {case}\n"),
            &[("missions/fix.toml", ONE)],
        );
        let out = env.run(&["run", "fix", "--output", "plain"]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert_eq!(
            env.fake_calls().len(),
            1,
            "{case}: a setup error is not retried"
        );
        let failed = events_of(&env, "attempt_failed");
        assert_eq!(failed[0]["reason"], "auth", "{case}: {failed:?}");
        let message = failed[0]["message"].as_str().unwrap();
        assert!(message.contains("KIMI_MODEL_API_KEY"), "{case}: {message}");
        assert!(out.stderr.contains("KIMI_MODEL_BASE_URL"), "{}", out.stderr);
    }
}

#[test]
fn an_unreachable_model_service_is_given_up_after_the_network_wait() {
    let env = fake_env(
        &["kimi", "codex"],
        "kimi: unreachable\ncodex: write done.txt ok\n",
        &[("missions/fix.toml", FIX)],
    );
    // The test environment sets MEDLEY_NETWORK_WAIT=1s; the fake kimi would retry forever.
    let out = env.run(&["run", "fix", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let failed = events_of(&env, "attempt_failed");
    assert_eq!(failed[0]["reason"], "unreachable", "{failed:?}");
    assert_eq!(finished(&env, "fix")["agent"], "codex");
}

#[test]
fn the_legacy_kimi_cli_is_refused_before_anything_starts() {
    let env = fake_env(&["kimi"], "kimi: ok\n", &[("missions/fix.toml", ONE)]);
    let out = run_with(
        &env,
        &[("MEDLEY_FAKE_KIMI", "legacy")],
        &["run", "fix", "--output", "plain"],
    );
    let stderr = out.stderr;
    assert_eq!(out.code, 2, "{stderr}");
    assert!(stderr.contains("legacy Python kimi-cli 1.52.0"), "{stderr}");
    assert!(stderr.contains("install Kimi Code instead"), "{stderr}");
    assert!(env.fake_calls().is_empty(), "no prompt was sent");

    let agents = run_with(&env, &[("MEDLEY_FAKE_KIMI", "legacy")], &["agents"]);
    let listed = agents.stdout;
    assert!(
        listed.contains("kimi: cannot start: ") && listed.contains("legacy Python kimi-cli"),
        "{listed}"
    );
}

#[test]
fn a_node_too_old_for_kimi_code_is_named_by_preflight_and_agents() {
    let env = fake_env(&["kimi"], "kimi: ok\n", &[("missions/fix.toml", ONE)]);
    // The `node` on PATH is 20, as on the machine where Kimi Code 2.1.0 fails to load.
    let bin = env.home().parent().unwrap().join("bin");
    let node = bin.join("node");
    fs_err::write(&node, "#!/bin/sh\necho v20.20.2\n").unwrap();
    let mut perms = fs_err::metadata(&node).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs_err::set_permissions(&node, perms).unwrap();
    let out = run_with(
        &env,
        &[("MEDLEY_FAKE_KIMI", "old-node")],
        &["run", "fix", "--output", "plain"],
    );
    let stderr = out.stderr;
    assert_eq!(out.code, 2, "{stderr}");
    assert!(stderr.contains("needs Node 22.19 or newer"), "{stderr}");
    assert!(stderr.contains("20.20.2"), "{stderr}");
    let agents = run_with(&env, &[("MEDLEY_FAKE_KIMI", "old-node")], &["agents"]);
    let listed = agents.stdout;
    assert!(listed.contains("needs Node 22.19 or newer"), "{listed}");
}
