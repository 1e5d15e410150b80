//! The step cache: what reruns, what is reused, and what is replayed onto a new base.

use medley_tests::TestEnv;

use crate::env;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-agent");

fn outcomes(env: &TestEnv) -> Vec<(String, String)> {
    env.journal()
        .into_iter()
        .filter(|e| e["type"] == "step_finished")
        .map(|e| {
            (
                e["step"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn outcome_of(env: &TestEnv, step: &str) -> String {
    outcomes(env)
        .into_iter()
        .find(|(s, _)| s == step)
        .map(|(_, o)| o)
        .unwrap_or_default()
}

const MISSION: &str = r#"
[steps.lexer]
inputs = ["src/lexer.rs"]
agent = "claude"
prompt = "Tidy src/lexer.rs."
gate = "test -f lexer.done"

[steps.parser]
inputs = ["src/parser.rs"]
run = "echo parsed >> parser.done"

[steps.join]
needs = ["lexer", "parser"]
inputs = ["src/**", "*.done"]
run = "cat lexer.done parser.done > joined.txt"
"#;

fn setup() -> TestEnv {
    let env = env();
    env.fakes(FAKE, &["claude"], "claude: write lexer.done tidied\n");
    env.repo(&[
        ("missions/m.toml", MISSION),
        ("src/lexer.rs", "fn lex() {}\n"),
        ("src/parser.rs", "fn parse() {}\n"),
        ("README.md", "# demo\n"),
    ]);
    let first = env.run(&["run", "m"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    env
}

#[test]
fn an_unchanged_mission_reruns_entirely_from_the_cache() {
    let env = setup();
    assert_eq!(env.fake_calls().len(), 1);
    let first_run = env.journal()[0]["run"].as_str().unwrap().to_owned();
    let again = env.run(&["run", "m"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    for (step, outcome) in outcomes(&env) {
        assert_eq!(outcome, "cached", "{step}");
    }
    assert_eq!(env.fake_calls().len(), 1, "no agent was called");
    let lexer = env
        .journal()
        .into_iter()
        .find(|e| e["type"] == "step_finished" && e["step"] == "lexer")
        .unwrap();
    assert_eq!(lexer["cached_from"], first_run.as_str());
    assert_eq!(
        env.tree(&env.result_branches().last().unwrap().clone())["joined.txt"],
        "tidiedparsed\n"
    );
    // --no-cache runs everything again.
    let fresh = env.run(&["run", "m", "--no-cache"]);
    assert_eq!(fresh.code, 0, "{}", fresh.stderr);
    assert!(outcomes(&env).iter().all(|(_, o)| o == "passed"));
    assert_eq!(env.fake_calls().len(), 2);
}

#[test]
fn an_edit_reruns_only_the_steps_that_see_it_and_what_follows() {
    let env = setup();
    env.write("src/parser.rs", "fn parse() { /* edited */ }\n");
    let out = env.run(&["run", "m"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(outcome_of(&env, "lexer"), "cached");
    assert_eq!(outcome_of(&env, "parser"), "passed");
    assert_eq!(outcome_of(&env, "join"), "passed");
    assert_eq!(
        env.fake_calls().len(),
        1,
        "the agent step did not run again"
    );
}

#[test]
fn an_edit_outside_every_input_replays_the_cached_work_onto_it() {
    let env = setup();
    env.write("README.md", "# demo, edited\n");
    let out = env.run(&["run", "m"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (step, outcome) in outcomes(&env) {
        assert_eq!(outcome, "cached", "{step}");
    }
    assert_eq!(env.fake_calls().len(), 1);
    // The replayed lexer result had its gate run again, on the new base.
    assert!(
        env.journal()
            .iter()
            .any(|e| e["type"] == "gate_finished" && e["step"] == "lexer" && e["passed"] == true)
    );
    let tree = env.tree(&env.result_branches().last().unwrap().clone());
    assert_eq!(
        tree["README.md"], "# demo, edited\n",
        "the edit is in the result"
    );
    assert_eq!(tree["lexer.done"], "tidied", "and so is the cached work");
    assert_eq!(tree["joined.txt"], "tidiedparsed\n");
}

#[test]
fn failed_steps_and_uncacheable_steps_are_never_reused() {
    let env = env();
    env.repo(&[(
        "missions/f.toml",
        "[steps.flaky]\nrun = \"test -f ok\"\nattempts = 1\n\n[steps.side]\nrun = \"echo side\"\ncache = false\n\n[steps.good]\nrun = \"echo good > good.txt\"\n",
    )]);
    assert_eq!(env.run(&["run", "f"]).code, 1);
    assert_eq!(env.run(&["run", "f"]).code, 1);
    assert_eq!(
        outcome_of(&env, "flaky"),
        "failed",
        "a failure is not cached"
    );
    assert_eq!(outcome_of(&env, "side"), "passed", "cache = false reruns");
    assert_eq!(outcome_of(&env, "good"), "cached");
    let cleaned = env.run(&["clean", "--cache"]);
    assert!(
        cleaned.stderr.contains("emptied the cache (1 result)"),
        "{}",
        cleaned.stderr
    );
    let again = env.run(&["clean", "--cache"]);
    assert!(
        again.stderr.starts_with("nothing to clean\n"),
        "{}",
        again.stderr
    );
    assert_eq!(env.run(&["run", "f"]).code, 1);
    assert_eq!(
        outcome_of(&env, "good"),
        "passed",
        "an emptied cache reuses nothing"
    );
}

#[test]
fn validate_warns_when_a_cacheable_step_renders_the_run_id() {
    let env = env();
    env.write("missions/v.toml", "[steps.a]\nrun = \"echo {{ run.id }} > id.txt\"\n\n[steps.b]\nrun = \"echo {{ run.id }}\"\ncache = false\n");
    let out = env.run(&["validate", "v"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("warning: `missions/v.toml`: step `a` renders `run.id`"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("step `b`"), "{}", out.stderr);
}

/// A value passed to a command as a variable still keys the cache: the same command with
/// another value runs again (issue 10).
#[test]
fn a_changed_value_in_a_command_misses_the_cache() {
    let env = env();
    env.repo(&[
        (
            "missions/v.toml",
            "[vars]\nx = \"a\"\n\n[steps.echo]\nrun = \"printf '%s' \\\"{{ vars.x }}\\\" > x.txt\"\ngate = \"test \\\"$(cat x.txt)\\\" = '{{ vars.x }}'\"\n",
        ),
        ("README.md", "# demo\n"),
    ]);
    for (value, outcome) in [
        ("a", "passed"),
        ("a", "cached"),
        ("b", "passed"),
        ("b", "cached"),
    ] {
        let out = env.run(&["run", "v", "--set", &format!("x={value}")]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(outcome_of(&env, "echo"), outcome, "x={value}");
        let last = env.result_branches().last().unwrap().clone();
        assert_eq!(env.tree(&last)["x.txt"], value);
    }
}
