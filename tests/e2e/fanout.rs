//! Fan-out decided by an upstream step: a matrix read from `plan`'s `tasks.json`, its children
//! made when `plan` passes (`steps_expanded`), bad lists refused naming the file, the same
//! children again from a cached `plan` and after a resume, and `validate`'s checks.

use medley_tests::TestEnv;

use crate::agents::{events_of, finished};
use crate::env;
use crate::resume::{kill_groups, lines, signal_kill, wait_for};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-agent");

const TASKS: &str = r#"[{"id": "lexer", "title": "Split the lexer"}, {"id": "ast", "title": "Split the AST"}, {"id": "Parser", "title": "Split the parser"}]"#;

/// plan (the fake claude writes three tasks) -> one command child per task, each waiting
/// until all three have started -> review (the fake claude, shown every child's files).
fn mission(dir: &str) -> String {
    format!(
        r#"[steps.plan]
agent = "claude"
prompt = "List the tasks in tasks.json"

[steps.split]
needs = ["plan"]
matrix = {{ task = {{ from = "plan", file = "tasks.json" }} }}
run = "echo {{{{ matrix.task.id }}}} >> {dir}/started; n=0; while [ $(wc -l < {dir}/started) -lt 3 ]; do n=$((n+1)); [ $n -gt 6000 ] && exit 9; sleep 0.01; done; echo {{{{ matrix.task.title }}}} > {{{{ matrix.task.id }}}}.txt"

[steps.review]
needs = ["split"]
agent = "claude"
prompt = "Review {{{{ steps.split.files | join(', ') }}}} ({{{{ steps.split.outcome }}}})"
"#
    )
}

fn fan_env() -> (TestEnv, String) {
    let env = env();
    let dir = env.work().parent().unwrap().display().to_string();
    env.fakes(
        FAKE,
        &["claude"],
        &format!("claude: write tasks.json {TASKS}\nclaude: write review.txt ok\n"),
    );
    env.repo(&[
        ("missions/fan.toml", &mission(&dir)),
        ("README.md", "# x\n"),
    ]);
    (env, dir)
}

#[test]
fn a_plan_of_three_tasks_runs_three_children_at_once_and_review_sees_them_all() {
    let (env, dir) = fan_env();
    let out = env.run(&["run", "fan"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let expanded = events_of(&env, "steps_expanded");
    assert_eq!(expanded.len(), 1, "{expanded:?}");
    assert_eq!(expanded[0]["step"], "split");
    assert_eq!(expanded[0]["from"], "plan");
    assert_eq!(expanded[0]["file"], "tasks.json");
    assert_eq!(
        expanded[0]["children"],
        serde_json::json!(["split.lexer", "split.ast", "split.parser"])
    );
    // Each child waited for the other two to start: they ran at once.
    assert_eq!(
        lines(std::path::Path::new(&dir).join("started").as_path()),
        3
    );
    for child in ["split.lexer", "split.ast", "split.parser"] {
        assert_eq!(finished(&env, child)["outcome"], "passed");
    }
    let review = env
        .fake_calls()
        .into_iter()
        .find(|c| c["prompt"].as_str().unwrap_or("").starts_with("Review"))
        .expect("review called claude");
    assert_eq!(
        review["prompt"], "Review lexer.txt, ast.txt, Parser.txt (passed)",
        "review sees every child"
    );
    let branch = &env.result_branches()[0];
    let tree = env.tree(branch);
    assert_eq!(tree["ast.txt"], "Split the AST\n");
    assert_eq!(tree["Parser.txt"], "Split the parser\n");
    assert!(
        out.stderr
            .contains("split: 3 children from `tasks.json` of `plan`"),
        "{}",
        out.stderr
    );

    // The report shows the children in the run's graph, not the step they were made from.
    let report = env.run(&["report", "last", "--format", "markdown"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    assert!(
        report.stdout.contains("| `split.ast` | ✅ passed"),
        "{}",
        report.stdout
    );
    assert!(!report.stdout.contains("| `split` |"), "{}", report.stdout);
    assert!(
        report.stdout.contains("subgraph m0[\"split (matrix)\"]"),
        "{}",
        report.stdout
    );

    // Again: `plan` is cached, and its cached result makes the same children (all cached).
    fs_err::remove_file(std::path::Path::new(&dir).join("started")).unwrap();
    let again = env.run(&["run", "fan"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(finished(&env, "plan")["outcome"], "cached");
    let expanded_again = events_of(&env, "steps_expanded");
    assert_eq!(expanded_again[0]["children"], expanded[0]["children"]);
    for child in ["split.lexer", "split.ast", "split.parser"] {
        assert_eq!(finished(&env, child)["outcome"], "cached");
    }
}

/// `plan` copies `lists/<vars.list>` to `tasks.json`; `split` may make at most 3 children.
fn bad_list_env() -> TestEnv {
    let mission = r#"[vars]
list = "ok.json"

[steps.plan]
run = "cp lists/{{ vars.list }} tasks.json"

[steps.split]
needs = ["plan"]
max_children = 3
matrix = { task = { from = "plan", file = "tasks.json" } }
run = "echo {{ matrix.task }} > out.txt"
"#;
    let env = env();
    env.repo(&[
        ("missions/bad.toml", mission),
        ("lists/ok.json", r#"["a"]"#),
        ("lists/empty.json", "[]"),
        ("lists/twice.json", r#"["a", "b", "A"]"#),
        ("lists/object.json", r#"{"tasks": ["a"]}"#),
        ("lists/text.json", "a, b, c"),
        ("lists/long.json", r#"["a", "b", "c", "d"]"#),
    ]);
    env
}

#[test]
fn a_bad_list_fails_the_step_that_reads_it_naming_the_file_and_the_step() {
    let env = bad_list_env();
    for (list, why) in [
        ("empty.json", "is an empty list"),
        (
            "twice.json",
            "makes two children with the same id `split.a` (items 1 and 3)",
        ),
        ("object.json", "holds an object, not a list"),
        ("text.json", "is not JSON"),
        ("long.json", "lists 4 items, more than `max_children` (3)"),
    ] {
        let out = env.run(&["run", "bad", "--set", &format!("list={list}")]);
        assert_eq!(out.code, 1, "{list}: {}", out.stderr);
        let end = finished(&env, "split");
        assert_eq!(end["outcome"], "failed", "{list}");
        assert_eq!(end["error"]["kind"], "matrix", "{list}");
        let message = end["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("`tasks.json` in the result of step `plan` "),
            "{list}: {message}"
        );
        assert!(message.contains(why), "{list}: {message}");
        assert!(out.stderr.contains(why), "{list}: {}", out.stderr);
        // Nothing of `split` ran: no log is offered, the run's steps are.
        assert!(
            !out.stderr.contains("medley logs"),
            "{list}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("shows each step's outcome"),
            "{list}: {}",
            out.stderr
        );
        assert!(events_of(&env, "steps_expanded").is_empty(), "{list}");
    }
    let out = env.run(&["run", "bad"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn a_run_killed_mid_fan_out_resumes_with_the_same_children() {
    let env = env();
    let dir = env.work().parent().unwrap().to_path_buf();
    let d = dir.display();
    // `a` passes at once; `b` and `c` hang (writing their shell's pid) until `go` exists.
    let mission = format!(
        r#"[steps.plan]
run = "echo plan >> {d}/plan.count; echo '[\"a\", \"b\", \"c\"]' > tasks.json"

[steps.split]
needs = ["plan"]
cache = false                        # what passed is kept by the resume, not found in the cache
matrix = {{ task = {{ from = "plan", file = "tasks.json" }} }}
run = "echo x >> {d}/{{{{ matrix.task }}}}.count; if [ {{{{ matrix.task }}}} != a ] && [ ! -e {d}/go ]; then echo $$ >> {d}/pids; sleep 300; fi; echo {{{{ matrix.task }}}} > {{{{ matrix.task }}}}.txt"

[steps.review]
needs = ["split"]
run = "cat a.txt b.txt c.txt > review.txt"
"#
    );
    env.repo(&[("missions/fan.toml", &mission), ("README.md", "# x\n")]);
    let mut child = env
        .medley()
        .args(["run", "fan"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let a_passed = |env: &TestEnv| {
        let runs = env.work().join(".git/medley/runs");
        fs_err::read_dir(&runs)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                fs_err::read_to_string(e.path().join("events.jsonl")).is_ok_and(|t| {
                    t.lines().any(|l| {
                        l.contains("\"type\":\"step_finished\"")
                            && l.contains("\"step\":\"split.a\"")
                    })
                })
            })
    };
    wait_for(|| lines(&dir.join("pids")) >= 2 && a_passed(&env));
    signal_kill(child.id());
    child.wait().unwrap();
    kill_groups(&dir.join("pids"));
    fs_err::write(dir.join("go"), "").unwrap();

    let out = env.run(&["resume", "last"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(lines(&dir.join("plan.count")), 1, "plan is kept");
    assert_eq!(lines(&dir.join("a.count")), 1, "the passed child is kept");
    let kept: Vec<String> = events_of(&env, "step_kept")
        .iter()
        .map(|e| e["step"].as_str().unwrap().to_owned())
        .collect();
    assert!(kept.contains(&"split.a".to_owned()), "{kept:?}");
    assert_eq!(
        lines(&dir.join("b.count")),
        2,
        "the killed child runs again"
    );
    assert_eq!(lines(&dir.join("c.count")), 2);
    // Only the three children were ever made, in both segments of the run.
    let mut children: Vec<String> = env
        .journal()
        .iter()
        .filter_map(|e| e["step"].as_str())
        .filter(|s| s.starts_with("split."))
        .map(str::to_owned)
        .collect();
    children.sort();
    children.dedup();
    assert_eq!(children, ["split.a", "split.b", "split.c"]);
    let tree = env.tree(&env.result_branches()[0]);
    assert_eq!(tree["review.txt"], "a\nb\nc\n");
}

#[test]
fn validate_checks_templates_against_the_dynamic_axis() {
    let env = env();
    env.repo(&[("README.md", "# x\n")]);
    let write = |body: &str| {
        env.write(
            "missions/v.toml",
            &format!("[steps.plan]\nrun = \"true\"\n\n[steps.split]\nneeds = [\"plan\"]\n{body}\n"),
        );
        env.run(&["validate", "missions/v.toml"])
    };
    // Any field of an item is allowed (object items have fields)...
    let ok = write(
        "matrix = { task = { from = \"plan\", file = \"tasks.json\" } }\nrun = \"echo {{ matrix.task }} {{ matrix.task.title }}\"",
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    // ...but not an axis the matrix does not have.
    let out = write(
        "matrix = { task = { from = \"plan\", file = \"tasks.json\" } }\nprompt = \"Do {{ matrix.title }}\"\nagent = \"claude\"",
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("undefined matrix axis `matrix.title` in `prompt` of step `split`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("its one axis is `task`, read from a step: an object item's fields are `matrix.task.title`"),
        "{}",
        out.stderr
    );
    // The step it reads from must be one it needs.
    env.write(
        "missions/w.toml",
        "[steps.plan]\nrun = \"true\"\n[steps.split]\nmatrix = { task = { from = \"plan\", file = \"tasks.json\" } }\nrun = \"true\"\nmax_children = 0\n",
    );
    let out = env.run(&["validate", "missions/w.toml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("step `split` reads its matrix from `plan`, which it does not need"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("`max_children` must be at least 1"),
        "{}",
        out.stderr
    );
    // Graph and dry run show the step as `split.*` from `plan`.
    env.write(
        "missions/v.toml",
        "[steps.plan]\nrun = \"true\"\n[steps.split]\nneeds = [\"plan\"]\nmatrix = { task = { from = \"plan\", file = \"tasks.json\" } }\nrun = \"true\"\n",
    );
    let graph = env.run(&["graph", "missions/v.toml", "--format", "mermaid"]);
    assert_eq!(graph.code, 0, "{}", graph.stderr);
    assert!(
        graph.stdout.contains("split.* from plan"),
        "{}",
        graph.stdout
    );
    let json = env.run(&["graph", "missions/v.toml", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["steps"][1]["dynamic"]["from"], "plan");
    assert_eq!(json["steps"][1]["dynamic"]["max_children"], 50);
    let dry = env.run(&["run", "missions/v.toml", "--dry-run"]);
    assert!(dry.stdout.contains("split.* from plan"), "{}", dry.stdout);
    assert!(
        dry.stdout
            .contains("one child per item of `tasks.json` in the result of `plan` (at most 50)"),
        "{}",
        dry.stdout
    );
}

#[test]
fn the_json_of_a_fan_out_is_pinned() {
    let env = env();
    env.repo(&[(
        "missions/pin.toml",
        "[steps.plan]\nrun = \"echo '[\\\"a\\\", \\\"b\\\"]' > tasks.json\"\n\n[steps.split]\nneeds = [\"plan\"]\nmatrix = { task = { from = \"plan\", file = \"tasks.json\" } }\nrun = \"echo {{ matrix.task }} > {{ matrix.task }}.txt\"\n",
    )]);
    let out = env.run(&["run", "pin", "--output", "json", "--max-parallel", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let expanded: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("\"type\":\"steps_expanded\""))
        .collect();
    assert_eq!(expanded.len(), 1, "{}", out.stdout);
    let run = env.journal()[0]["run"].as_str().unwrap().to_owned();
    let text = expanded[0].replace(&run, "<run>");
    insta::with_settings!({
        snapshot_path => "../snapshots",
        prepend_module_to_snapshot => false,
        filters => vec![(r#""ts":"[^"]+""#, r#""ts":"<ts>""#)],
    }, {
        insta::assert_snapshot!("run-events-steps-expanded-json", text);
    });
}

#[test]
fn a_failed_plan_skips_the_fan_out_and_an_if_is_each_childs() {
    let env = env();
    let mission = r#"[vars]
fail = "no"

[steps.plan]
run = "[ {{ vars.fail }} = no ] && echo '[\"a\", \"b\"]' > tasks.json"

[steps.split]
needs = ["plan"]
if = "matrix.task != 'b'"
matrix = { task = { from = "plan", file = "tasks.json" } }
run = "echo {{ matrix.task }} > {{ matrix.task }}.txt"

[steps.review]
needs = ["split"]
if = "steps.split.outcome != 'failed'"
run = "ls *.txt > review.txt"
"#;
    env.repo(&[("missions/if.toml", mission)]);
    let out = env.run(&["run", "if"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(finished(&env, "split.a")["outcome"], "passed");
    let skipped = events_of(&env, "step_skipped");
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["step"], "split.b");
    assert_eq!(finished(&env, "review")["outcome"], "passed");
    let tree = env.tree(&env.result_branches()[0]);
    assert_eq!(tree["review.txt"], "a.txt\n");

    let out = env.run(&["run", "if", "--set", "fail=yes"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let skipped: Vec<String> = events_of(&env, "step_skipped")
        .iter()
        .map(|e| e["step"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        skipped,
        ["split"],
        "review's `if` runs it whatever split's end"
    );
    assert!(events_of(&env, "steps_expanded").is_empty());
    assert_eq!(finished(&env, "plan")["outcome"], "failed");
    finished(&env, "review");
}
