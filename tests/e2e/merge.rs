//! Merge agents with the fake CLIs: two steps edit the same lines, and a merge agent resolves
//! the conflict (the fake edits the markers out), leaves markers (retried, then failed), hands
//! over to the next agent of its chain, or resolves the final merge of the leaves.

use crate::agents::{events_of, fake_env, finished};

/// Two command steps changing the same line of `shared.txt`, and `join` merging them (with
/// `MERGE` as its `merge` table) into `joined.txt`.
fn join_mission(merge: &str) -> String {
    format!(
        "[steps.left]\nrun = \"printf 'one\\\\nleft\\\\nthree\\\\n' > shared.txt\"\n\n\
         [steps.right]\nrun = \"printf 'one\\\\nright\\\\nthree\\\\n' > shared.txt\"\n\n\
         [steps.join]\nneeds = [\"left\", \"right\"]\nrun = \"cp shared.txt joined.txt\"\n{merge}\n"
    )
}

const BASE: (&str, &str) = ("shared.txt", "one\ntwo\nthree\n");

#[test]
fn a_merge_agent_resolves_a_conflict_between_needs_and_the_step_builds_on_it() {
    let mission =
        join_mission("merge = { agent = \"claude\", prompt = \"Keep both lines, left first.\" }");
    let env = fake_env(
        &["claude"],
        "claude: resolve shared.txt both\n",
        &[("missions/m.toml", &mission), BASE],
    );
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("join: merge conflict between `left`, `right` in `shared.txt`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("join: merge resolved by `claude`"),
        "{}",
        out.stderr
    );

    // The step ran on the resolution: both lines, no marker.
    let tree = env.tree(&env.result_branches()[0]);
    assert_eq!(tree["joined.txt"], "one\nleft\nright\nthree\n");
    assert_eq!(tree["shared.txt"], "one\nleft\nright\nthree\n");

    let conflict = &events_of(&env, "merge_conflict")[0];
    assert_eq!(conflict["step"], "join");
    assert_eq!(conflict["files"], serde_json::json!(["shared.txt"]));
    assert_eq!(conflict["steps"], serde_json::json!(["left", "right"]));
    let resolved = &events_of(&env, "merge_resolved")[0];
    assert_eq!(resolved["step"], "join");
    assert_eq!(resolved["agent"], "claude");
    assert_eq!(resolved["attempts"], 1);
    assert_eq!(resolved["ours"]["steps"], serde_json::json!(["left"]));
    assert_eq!(resolved["theirs"]["steps"], serde_json::json!(["right"]));
    // The resolution is a merge commit of both sides, and the step's base.
    let commit = resolved["commit"].as_str().unwrap();
    let parents = env.git(&["rev-list", "--parents", "-n", "1", commit]);
    let parents: Vec<&str> = parents.split_whitespace().skip(1).collect();
    assert_eq!(
        parents,
        [
            resolved["ours"]["commit"].as_str().unwrap(),
            resolved["theirs"]["commit"].as_str().unwrap()
        ]
    );
    for side in ["ours", "theirs"] {
        let sha = resolved[side]["commit"].as_str().unwrap();
        let tree = env.git(&["rev-parse", &format!("{sha}^{{tree}}")]);
        assert_eq!(tree.trim(), resolved[side]["tree"], "{side}");
    }
    let ready = events_of(&env, "step_ready")
        .into_iter()
        .find(|e| e["step"] == "join")
        .unwrap();
    assert_eq!(ready["base"], resolved["commit"]);

    // The agent saw the markers, and was told the files, both sides and what they did.
    let calls = env.fake_calls();
    assert_eq!(calls.len(), 1);
    let prompt = calls[0]["prompt"].as_str().unwrap();
    for words in [
        "Keep both lines, left first.",
        "- `shared.txt`",
        "`<<<<<<< left`",
        "`>>>>>>> right`",
        "## Step `left`",
        "## Step `right`",
        "printf 'one\\nright\\nthree\\n' > shared.txt",
        "+left",
        "-two",
    ] {
        assert!(prompt.contains(words), "{words}:\n{prompt}");
    }
    // The prompt is archived beside the step's own.
    let archive = env
        .work()
        .join(".git/medley/runs")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("prompts/join.1.merge-claude.txt");
    assert_eq!(fs_err::read_to_string(archive).unwrap(), prompt);

    // The merge agent's attempt is the step's, said to be a merge's, and the report shows it
    // with its prompt.
    let started: Vec<serde_json::Value> = events_of(&env, "step_started")
        .into_iter()
        .filter(|e| e["step"] == "join")
        .collect();
    assert_eq!(started.len(), 2);
    assert_eq!(started[0]["merge"], true);
    assert_eq!(started[0]["agent"], "claude");
    assert!(started[1].get("merge").is_none(), "{}", started[1]);
    let report = env.work().join("report.html");
    let out = env.run(&["report", "--format", "html", "-o", report.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let logs = env.run(&["logs", "last", "join"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert!(
        logs.stdout.contains("==> join: merge/claude.1.jsonl <=="),
        "{}",
        logs.stdout
    );
    assert!(logs.stdout.contains("to `merge-claude`"), "{}", logs.stdout);
    let html = fs_err::read_to_string(report).unwrap();
    assert!(html.contains("merge agent claude"), "{html}");
    assert!(html.contains("Keep both lines, left first."), "{html}");
}

#[test]
fn a_merge_agent_that_leaves_markers_is_retried_then_the_step_fails() {
    let mission = join_mission("attempts = 2\nmerge = { agent = \"claude\" }");
    let env = fake_env(
        &["claude"],
        "claude: ok\n",
        &[("missions/m.toml", &mission), BASE],
    );
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let failed = events_of(&env, "attempt_failed");
    assert_eq!(failed.len(), 2, "{failed:?}");
    for f in &failed {
        assert_eq!(f["step"], "join");
        assert_eq!(f["reason"], "unresolved");
        assert_eq!(f["message"], "conflict markers are left in `shared.txt`");
    }
    // The retry said what was wrong.
    let calls = env.fake_calls();
    assert_eq!(calls.len(), 2);
    let retry = calls[1]["prompt"].as_str().unwrap();
    assert!(
        retry.contains("conflict markers are left in `shared.txt`"),
        "{retry}"
    );
    let join = finished(&env, "join");
    assert_eq!(join["outcome"], "failed");
    assert_eq!(join["attempts"], 2);
    // What the merge agent used is the failed step's.
    assert_eq!(join["agent"], "claude");
    assert_eq!(join["tokens"], events_of(&env, "run_finished")[0]["tokens"]);
    assert!(join["tokens"]["input"].as_u64().unwrap() > 0, "{join}");
    assert_eq!(join["error"]["kind"], "merge_conflict");
    assert_eq!(join["error"]["files"], serde_json::json!(["shared.txt"]));
    assert_eq!(join["error"]["steps"], serde_json::json!(["left", "right"]));
    let message = join["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the merge agent did not resolve the conflict in `shared.txt`"),
        "{message}"
    );
    assert!(events_of(&env, "merge_resolved").is_empty());
    assert!(env.result_branches().is_empty());
}

#[test]
fn a_merge_agents_gate_and_chain_decide_the_resolution() {
    // claude keeps only the left line: the merge's gate refuses it, twice; codex keeps both.
    let mission = join_mission(
        "merge = { agent = [\"claude\", \"codex\"], gate = \"grep -q right shared.txt\" }",
    );
    let env = fake_env(
        &["claude", "codex"],
        "claude: resolve shared.txt ours\ncodex: resolve shared.txt both\n",
        &[("missions/m.toml", &mission), BASE],
    );
    let dry = env.run(&["run", "m", "--dry-run", "--color", "never"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let shown = format!("{}{}", dry.stdout, dry.stderr);
    assert!(
        shown.contains("   merge: a conflict goes to [claude, codex]\n   merge gate: grep -q right shared.txt\n"),
        "{shown}"
    );
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let switched = events_of(&env, "agent_switched");
    assert_eq!(switched[0]["step"], "join");
    assert_eq!(switched[0]["from"], "claude");
    assert_eq!(switched[0]["to"], "codex");
    let resolved = &events_of(&env, "merge_resolved")[0];
    assert_eq!(resolved["agent"], "codex");
    assert_eq!(resolved["attempts"], 3);
    let tree = env.tree(&env.result_branches()[0]);
    assert_eq!(tree["joined.txt"], "one\nleft\nright\nthree\n");
}

#[test]
fn the_mission_merge_resolves_the_final_merge_of_the_leaves() {
    let mission = "gate = \"grep -q left shared.txt && grep -q right shared.txt\"\n\
                   merge = { agent = \"claude\", gate = \"! grep -q '<<<' shared.txt\" }\n\n\
                   [steps.left]\nrun = \"printf 'one\\\\nleft\\\\nthree\\\\n' > shared.txt\"\n\n\
                   [steps.right]\nrun = \"printf 'one\\\\nright\\\\nthree\\\\n' > shared.txt\"\n";
    let env = fake_env(
        &["claude"],
        "claude: resolve shared.txt both\n",
        &[("missions/m.toml", mission), BASE],
    );
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let conflict = &events_of(&env, "merge_conflict")[0];
    assert_eq!(conflict["step"], serde_json::Value::Null);
    assert_eq!(conflict["steps"], serde_json::json!(["left", "right"]));
    let resolved = &events_of(&env, "merge_resolved")[0];
    assert_eq!(resolved["step"], "_final");
    // The merge's gate, then the mission's, on the resolution.
    let gates: Vec<serde_json::Value> = events_of(&env, "gate_started")
        .iter()
        .map(|g| g["step"].clone())
        .collect();
    assert_eq!(
        gates,
        [serde_json::json!("_final"), serde_json::Value::Null]
    );
    let branch = &env.result_branches()[0];
    let tree = env.tree(branch);
    assert_eq!(tree["shared.txt"], "one\nleft\nright\nthree\n");
    let head = env.git(&["rev-parse", branch]);
    assert_eq!(head.trim(), resolved["commit"]);
    // The final merge's attempts are not a step of the run.
    let show = env.run(&["show", "--output", "json"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    let show: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert!(show["steps"].get("_final").is_none(), "{show}");
    // Its cost is the run's: in `merge_resolved`, counted by `show` as by `run_finished`.
    let end = &events_of(&env, "run_finished")[0];
    assert!(
        resolved["tokens"]["input"].as_u64().unwrap() > 0,
        "{resolved}"
    );
    assert_eq!(resolved["tokens"], end["tokens"]);
    assert_eq!(show["tokens"], end["tokens"], "{show}");
    assert_eq!(show["steps"]["left"]["outcome"], "passed", "{show}");
}

#[test]
fn without_a_merge_agent_the_final_merge_still_fails_on_a_conflict() {
    let mission = "[steps.left]\nrun = \"printf 'one\\\\nleft\\\\nthree\\\\n' > shared.txt\"\n\n\
                   [steps.right]\nrun = \"printf 'one\\\\nright\\\\nthree\\\\n' > shared.txt\"\n";
    let env = fake_env(&["claude"], "", &[("missions/m.toml", mission), BASE]);
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(events_of(&env, "merge_conflict").is_empty());
    let end = &events_of(&env, "run_finished")[0];
    assert_eq!(
        end["reason"],
        "the results of steps left, right conflict in shared.txt"
    );
    assert!(env.fake_calls().is_empty());
}

#[test]
fn a_markdown_underline_left_in_a_resolved_file_is_not_a_conflict_marker() {
    let mission = "[steps.left]\nrun = \"printf 'Title\\\\n=======\\\\nleft\\\\n' > notes.md\"\n\n\
                   [steps.right]\nrun = \"printf 'Title\\\\n=======\\\\nright\\\\n' > notes.md\"\n\n\
                   [steps.join]\nneeds = [\"left\", \"right\"]\nrun = \"true\"\n\
                   attempts = 1\nmerge = { agent = \"claude\" }\n";
    let env = fake_env(
        &["claude"],
        "claude: resolve notes.md both\n",
        &[
            ("missions/m.toml", mission),
            ("notes.md", "Title\n=======\nbase\n"),
        ],
    );
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tree = env.tree(&env.result_branches()[0]);
    assert_eq!(tree["notes.md"], "Title\n=======\nleft\nright\n");
    assert!(events_of(&env, "attempt_failed").is_empty());
}

#[test]
fn a_merge_agent_that_is_not_installed_is_a_warning_and_its_chain_moves_on() {
    let mission = join_mission("merge = { agent = [\"qwen\", \"claude\"] }");
    let env = fake_env(
        &["claude"],
        "claude: resolve shared.txt theirs\n",
        &[("missions/m.toml", &mission), BASE],
    );
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("step `join`: merge agent `qwen` is not installed"),
        "{}",
        out.stderr
    );
    let switched = &events_of(&env, "agent_switched")[0];
    assert_eq!(switched["from"], "qwen");
    assert_eq!(switched["to"], "claude");
    let resolved = &events_of(&env, "merge_resolved")[0];
    assert_eq!(resolved["agent"], "claude");
    let tree = env.tree(&env.result_branches()[0]);
    assert_eq!(tree["joined.txt"], "one\nright\nthree\n");
}

#[test]
fn each_conflict_of_three_needs_is_resolved_in_turn() {
    let write = |id: &str| {
        format!("[steps.{id}]\nrun = \"printf 'one\\\\n{id}\\\\nthree\\\\n' > shared.txt\"\n\n")
    };
    let mission = format!(
        "{}{}{}[steps.join]\nneeds = [\"a\", \"b\", \"c\"]\nrun = \"cp shared.txt joined.txt\"\n\
         merge = {{ agent = \"claude\" }}\n",
        write("a"),
        write("b"),
        write("c")
    );
    let env = fake_env(
        &["claude"],
        "claude: resolve shared.txt both\n",
        &[("missions/m.toml", &mission), BASE],
    );
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let conflicts = events_of(&env, "merge_conflict");
    let resolved = events_of(&env, "merge_resolved");
    assert_eq!(conflicts.len(), 2, "{conflicts:?}");
    assert_eq!(conflicts[0]["steps"], serde_json::json!(["a", "b"]));
    assert_eq!(conflicts[1]["steps"], serde_json::json!(["a", "b", "c"]));
    assert_eq!(resolved[1]["ours"]["steps"], serde_json::json!(["a", "b"]));
    assert_eq!(resolved[1]["theirs"]["steps"], serde_json::json!(["c"]));
    // The second conflict is between the first's resolution and `c`.
    assert_eq!(resolved[1]["ours"]["commit"], resolved[0]["commit"]);
    let tree = env.tree(&env.result_branches()[0]);
    assert_eq!(tree["joined.txt"], "one\na\nb\nc\nthree\n");
}

#[test]
fn a_resumed_run_asks_the_merge_agent_again() {
    let mission = join_mission("attempts = 1\nmerge = { agent = \"claude\" }");
    let env = fake_env(
        &["claude"],
        "claude: ok\nclaude: resolve shared.txt both\n",
        &[("missions/m.toml", &mission), BASE],
    );
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(finished(&env, "join")["error"]["kind"], "merge_conflict");
    let out = env.run(&["resume", "last", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let kept: Vec<serde_json::Value> = events_of(&env, "step_kept");
    assert_eq!(kept.len(), 2, "left and right keep their results: {kept:?}");
    assert_eq!(events_of(&env, "merge_conflict").len(), 2);
    assert_eq!(events_of(&env, "merge_resolved").len(), 1);
    let tree = env.tree(&env.result_branches()[0]);
    assert_eq!(tree["joined.txt"], "one\nleft\nright\nthree\n");
}

/// The run id of the newest run's journal.
fn run_id(env: &medley_tests::TestEnv) -> String {
    events_of(env, "run_started")[0]["run"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_resolution_is_reused_until_its_prompt_or_a_side_changes() {
    // `vars.order` goes into the merge prompt, `vars.left` into the left side's change: either
    // can change while the base stays the same.
    let mission = format!(
        "[vars]\norder = \"left first\"\nleft = \"left\"\n\n{}",
        join_mission(
            "merge = { agent = \"claude\", prompt = \"Keep both lines, {{ vars.order }}.\" }"
        )
        .replace("one\\\\nleft", "one\\\\n{{ vars.left }}")
    );
    let env = fake_env(
        &["claude"],
        "claude: resolve shared.txt both\n",
        &[("missions/m.toml", &mission), BASE],
    );
    let calls = |env: &medley_tests::TestEnv| env.fake_calls().len();
    let run = |args: &[&str]| {
        let out = env.run(&[&["run", "m", "--output", "plain"], args].concat());
        assert_eq!(out.code, 0, "{}", out.stderr);
        out
    };
    let resolved = |env: &medley_tests::TestEnv| {
        let all = events_of(env, "merge_resolved");
        assert_eq!(all.len(), 1, "{all:?}");
        all[0].clone()
    };
    run(&[]);
    let first = run_id(&env);
    assert_eq!(calls(&env), 1);
    assert!(resolved(&env)["cached_from"].is_null());

    // Nothing changed: the resolution is reused, no agent is asked.
    let out = run(&[]);
    assert_eq!(calls(&env), 1, "the merge agent was not asked again");
    let reused = resolved(&env);
    assert_eq!(reused["cached_from"], first.as_str());
    assert_eq!(reused["attempts"], 0);
    assert_eq!(reused["agent"], "claude");
    assert!(
        out.stderr
            .contains(&format!("join: merge reused from run {first}")),
        "{}",
        out.stderr
    );
    assert_eq!(
        env.tree(&env.result_branches()[1])["joined.txt"],
        "one\nleft\nright\nthree\n"
    );

    // `--no-cache` asks it again.
    run(&["--no-cache"]);
    assert_eq!(calls(&env), 2);
    assert!(resolved(&env)["cached_from"].is_null());

    // A changed merge prompt asks it again, and is reused in turn.
    run(&["--set", "order=right first"]);
    assert_eq!(calls(&env), 3);
    assert!(resolved(&env)["cached_from"].is_null());
    let prompt = env.fake_calls()[2]["prompt"].as_str().unwrap().to_owned();
    assert!(prompt.contains("Keep both lines, right first."), "{prompt}");
    let changed = run_id(&env);
    run(&["--set", "order=right first"]);
    assert_eq!(calls(&env), 3);
    assert_eq!(resolved(&env)["cached_from"], changed.as_str());

    // A changed side asks it again.
    run(&["--set", "left=LEFT"]);
    assert_eq!(calls(&env), 4);
    assert!(resolved(&env)["cached_from"].is_null());
    assert_eq!(
        env.tree(env.result_branches().last().unwrap())["joined.txt"],
        "one\nLEFT\nright\nthree\n"
    );

    // `medley clean --cache` forgets resolutions with results. Three were cached (the
    // `--no-cache` run keeps none).
    let pinned = env.git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/medley/cache/merges/",
    ]);
    assert_eq!(pinned.lines().count(), 3, "{pinned}");
    let clean = env.run(&["clean", "--cache"]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    let left = env.git(&["for-each-ref", "--format=%(refname)", "refs/medley/cache/"]);
    assert_eq!(left, "", "every entry's ref is gone");
    run(&[]);
    assert_eq!(calls(&env), 5);
    assert!(resolved(&env)["cached_from"].is_null());
}

#[test]
fn a_step_with_cache_false_asks_its_merge_agent_every_run() {
    let mission = join_mission("cache = false\nmerge = { agent = \"claude\" }");
    let env = fake_env(
        &["claude"],
        "claude: resolve shared.txt both\n",
        &[("missions/m.toml", &mission), BASE],
    );
    for n in 1..=2 {
        let out = env.run(&["run", "m", "--output", "plain"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(env.fake_calls().len(), n);
        assert!(events_of(&env, "merge_resolved")[0]["cached_from"].is_null());
    }
}

#[test]
fn the_final_merges_resolution_is_reused_on_a_rerun() {
    let mission = "merge = { agent = \"claude\" }\n\n\
         [steps.left]\nrun = \"printf 'one\\\\nleft\\\\nthree\\\\n' > shared.txt\"\n\n\
         [steps.right]\nrun = \"printf 'one\\\\nright\\\\nthree\\\\n' > shared.txt\"\n";
    let env = fake_env(
        &["claude"],
        "claude: resolve shared.txt both\n",
        &[("missions/m.toml", mission), BASE],
    );
    let out = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let first = run_id(&env);
    assert_eq!(env.fake_calls().len(), 1);
    let again = env.run(&["run", "m", "--output", "plain"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        env.fake_calls().len(),
        1,
        "the merge agent was not asked again"
    );
    let resolved = &events_of(&env, "merge_resolved")[0];
    assert_eq!(resolved["step"], "_final");
    assert_eq!(resolved["cached_from"], first.as_str());
    assert!(
        again
            .stderr
            .contains(&format!("merge reused from run {first}")),
        "{}",
        again.stderr
    );
    let tree = env.tree(env.result_branches().last().unwrap());
    assert_eq!(tree["shared.txt"], "one\nleft\nright\nthree\n");
}
