//! The README's worked example, "plan → one worker per task → review", run as shipped
//! (`missions/plan-split-review.toml`, which the README quotes whole) with the fake CLIs: the
//! plan writes three tasks, two workers change the same lines, and review's merge agent
//! resolves their conflict before the reviewer sees all three changes.

use medley_tests::workspace_root;

use crate::agents::{events_of, fake_env, finished};

const SHIPPED: &str = "missions/plan-split-review.toml";

/// The shipped mission, checked to be the README's block word for word.
fn example() -> String {
    let source = fs_err::read_to_string(workspace_root().join(SHIPPED)).unwrap();
    let readme = fs_err::read_to_string(workspace_root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```toml\n{source}```\n")),
        "README.md quotes {SHIPPED} whole, in a ```toml block"
    );
    source
}

const TASKS: &str = r#"[{"id": "lexer", "title": "Move the lexer to src/lexer.rs"}, {"id": "ast", "title": "Move the AST to src/ast.rs"}, {"id": "parser", "title": "Keep the parser in src/parser.rs"}]"#;

/// claude (profile `planner`) plans, resolves the conflict and reviews (the run again asks it
/// nothing: the resolution is cached too); codex (`worker`) is told by its prompt which task
/// it has: lexer and ast each add a line at the same place of `src/lib.rs`.
fn script() -> String {
    format!(
        "claude: write tasks.json {TASKS}\n\
         claude: resolve src/lib.rs both\n\
         claude: write REVIEW.md Checked the three moves.\\n\n\
         codex[Move the lexer to src/lexer.rs]: write src/lexer.rs pub struct Lexer {{}}\\n; write src/lib.rs // lexer: src/lexer.rs\\n// parser: src/parser.rs\\n\n\
         codex[Move the AST to src/ast.rs]: write src/ast.rs pub enum Node {{}}\\n; write src/lib.rs // ast: src/ast.rs\\n// parser: src/parser.rs\\n\n\
         codex[Keep the parser in src/parser.rs]: write src/parser.rs pub fn parse() {{}}\\n\n"
    )
}

/// `src/lib.rs` as the merge agent leaves it: both workers' lines, lexer's first.
const RESOLVED: &str = "// lexer: src/lexer.rs\n// ast: src/ast.rs\n// parser: src/parser.rs\n";

#[test]
fn the_readme_example_plans_three_tasks_resolves_the_workers_conflict_and_reviews_all() {
    let mission = example();
    let env = fake_env(
        &["claude", "codex"],
        &script(),
        &[
            ("missions/plan-split-review.toml", &mission),
            ("src/lib.rs", "// parser: src/parser.rs\n"),
            ("src/parser.rs", "pub struct Lexer {}\npub enum Node {}\n"),
        ],
    );
    let valid = env.run(&["validate", "plan-split-review"]);
    assert_eq!(valid.code, 0, "{}", valid.stderr);

    let out = env.run(&["run", "plan-split-review", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(events_of(&env, "run_finished")[0]["outcome"], "passed");

    // The plan made three children, and each ran its own task.
    let expanded = events_of(&env, "steps_expanded");
    assert_eq!(expanded.len(), 1, "{expanded:?}");
    assert_eq!(expanded[0]["step"], "split");
    assert_eq!(expanded[0]["from"], "plan");
    assert_eq!(
        expanded[0]["children"],
        serde_json::json!(["split.lexer", "split.ast", "split.parser"])
    );
    let calls = env.fake_calls();
    let workers: Vec<&str> = calls
        .iter()
        .filter(|c| c["cli"] == "codex")
        .map(|c| c["prompt"].as_str().unwrap())
        .collect();
    assert_eq!(workers.len(), 3, "{workers:?}");
    for child in ["split.lexer", "split.ast", "split.parser"] {
        assert_eq!(finished(&env, child)["outcome"], "passed", "{child}");
    }
    assert!(
        workers
            .iter()
            .any(|p| p.contains("Your part of it: Move the AST to src/ast.rs.")),
        "{workers:?}"
    );

    // lexer and ast conflicted in src/lib.rs when review's base was merged; claude resolved it.
    let conflicts = events_of(&env, "merge_conflict");
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0]["step"], "review");
    assert_eq!(conflicts[0]["files"], serde_json::json!(["src/lib.rs"]));
    let sides = conflicts[0]["steps"].to_string();
    assert!(
        sides.contains("split.lexer") && sides.contains("split.ast"),
        "{sides}"
    );
    let resolved = events_of(&env, "merge_resolved");
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0]["step"], "review");
    assert_eq!(resolved[0]["agent"], "planner");
    let merge_prompt = calls
        .iter()
        .find(|c| {
            c["prompt"]
                .as_str()
                .unwrap()
                .contains("keep what each of them added")
        })
        .expect("the merge agent was called with the mission's merge prompt");
    assert_eq!(merge_prompt["cli"], "claude");

    // Review started on all three workers' changes, the conflict resolved, and was told them.
    let ready = events_of(&env, "step_ready")
        .into_iter()
        .find(|e| e["step"] == "review")
        .unwrap();
    let base = env.tree(ready["base"].as_str().unwrap());
    assert_eq!(base["src/lexer.rs"], "pub struct Lexer {}\n");
    assert_eq!(base["src/ast.rs"], "pub enum Node {}\n");
    assert_eq!(base["src/parser.rs"], "pub fn parse() {}\n");
    assert_eq!(base["src/lib.rs"], RESOLVED);
    let review = calls
        .iter()
        .find(|c| {
            c["prompt"]
                .as_str()
                .unwrap()
                .contains("Workers did it in parts")
        })
        .expect("review called claude");
    let prompt = review["prompt"].as_str().unwrap();
    for file in ["src/ast.rs", "src/lexer.rs", "src/lib.rs", "src/parser.rs"] {
        assert!(prompt.contains(file), "{file}: {prompt}");
    }
    assert!(prompt.contains("+pub fn parse() {}"), "{prompt}");
    assert_eq!(finished(&env, "review")["outcome"], "passed");

    // The result holds the resolution, with no marker, and the review.
    let branches = env.result_branches();
    assert_eq!(branches.len(), 1, "{branches:?}");
    let tree = env.tree(&branches[0]);
    assert_eq!(tree["src/lib.rs"], RESOLVED);
    assert!(
        tree.values()
            .all(|text| !text.contains("<<<<<<<") && !text.contains(">>>>>>>")),
        "{tree:?}"
    );
    assert_eq!(tree["REVIEW.md"], "Checked the three moves.\n");
    assert!(
        out.stderr
            .contains("split: 3 children from `tasks.json` of `plan`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("review: merge resolved by `planner`"),
        "{}",
        out.stderr
    );

    // Again, with nothing changed: plan and the workers are reused, their results conflict
    // again, and the resolution is reused from the cache; review's base is the same tree, so
    // review is reused too. No agent is called at all: nothing is paid for twice.
    let first_run = events_of(&env, "run_started")[0]["run"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = env.run(&["run", "plan-split-review", "--output", "plain"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    for step in ["plan", "split.lexer", "split.ast", "split.parser", "review"] {
        assert_eq!(finished(&env, step)["outcome"], "cached", "{step}");
    }
    assert_eq!(events_of(&env, "merge_conflict").len(), 1);
    let reused = events_of(&env, "merge_resolved");
    assert_eq!(reused.len(), 1, "{reused:?}");
    assert_eq!(reused[0]["step"], "review");
    assert_eq!(reused[0]["cached_from"], first_run.as_str());
    assert_eq!(reused[0]["agent"], "planner");
    assert_eq!(reused[0]["attempts"], 0);
    assert!(reused[0]["tokens"].is_null(), "{reused:?}");
    assert_eq!(
        env.tree(reused[0]["commit"].as_str().unwrap())["src/lib.rs"],
        RESOLVED
    );
    // This run's sides are its parents.
    let parents = env.git(&[
        "rev-list",
        "--parents",
        "-n",
        "1",
        reused[0]["commit"].as_str().unwrap(),
    ]);
    assert_eq!(
        parents.split_whitespace().skip(1).collect::<Vec<_>>(),
        [
            reused[0]["ours"]["commit"].as_str().unwrap(),
            reused[0]["theirs"]["commit"].as_str().unwrap()
        ]
    );
    assert_eq!(
        env.fake_calls().len(),
        calls.len(),
        "no agent was called again"
    );
    let prompts = newest_run_dir(&env).join("prompts");
    let sent: Vec<_> = fs_err::read_dir(&prompts)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(sent.is_empty(), "no prompt was sent: {sent:?}");
    assert!(
        again
            .stderr
            .contains(&format!("review: merge reused from run {first_run}")),
        "{}",
        again.stderr
    );
    assert!(
        events_of(&env, "step_started").is_empty(),
        "nothing ran: {:?}",
        events_of(&env, "step_started")
    );
    assert_eq!(env.tree(&env.result_branches()[1])["src/lib.rs"], RESOLVED);
}

/// The newest run's directory (`<git dir>/medley/runs/<run>`).
fn newest_run_dir(env: &medley_tests::TestEnv) -> std::path::PathBuf {
    let git_dir = env.git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]);
    let mut runs: Vec<_> =
        fs_err::read_dir(std::path::Path::new(git_dir.trim()).join("medley/runs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    runs.sort();
    runs.pop().unwrap()
}
