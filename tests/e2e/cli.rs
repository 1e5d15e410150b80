//! The command line: help, finding missions, init, schema, graph and dry runs.

use crate::{env, snapshot};

const HELLO: &str = include_str!("../../missions/hello.toml");

#[test]
fn clap_definition_is_consistent() {
    medley_cli::command().debug_assert();
}

#[test]
fn help_of_every_command() {
    let env = env();
    let mut commands = vec![vec!["--help"], vec!["-h"]];
    for sub in medley_cli::command().get_subcommands() {
        let name = sub.get_name().to_owned();
        if name != "help" {
            commands.push(vec![Box::leak(name.into_boxed_str()), "--help"]);
        }
    }
    for args in commands {
        let out = env.run(&args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        let name = match args.as_slice() {
            ["--help"] => "help-medley".to_owned(),
            ["-h"] => "help-medley-short".to_owned(),
            [sub, _] => format!("help-{sub}"),
            _ => unreachable!("help is asked with one flag"),
        };
        snapshot!(name, out.snapshot());
    }
}

#[test]
fn a_mission_is_found_by_path_by_name_or_as_the_only_one() {
    let env = env();
    let none = env.run(&["validate"]);
    assert_eq!(none.code, 2);
    assert!(
        none.stderr.contains("there is none in `missions`"),
        "{}",
        none.stderr
    );
    assert!(none.stderr.contains("medley init"), "{}", none.stderr);

    env.write("missions/hello.toml", HELLO);
    assert_eq!(env.run(&["validate"]).code, 0);
    assert_eq!(env.run(&["validate", "hello"]).code, 0);
    assert_eq!(env.run(&["validate", "missions/hello.toml"]).code, 0);
    // From a subdirectory, missions/ is found above it.
    fs_err::create_dir_all(env.work().join("src/deep")).unwrap();
    let out = env
        .medley()
        .current_dir(env.work().join("src/deep"))
        .args(["validate", "hello"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    env.write("missions/other.toml", "[steps.a]\nrun = \"true\"\n");
    let several = env.run(&["graph"]);
    assert_eq!(several.code, 2);
    snapshot!("mission-several", several.snapshot());
    let unknown = env.run(&["run", "helo", "--dry-run"]);
    assert_eq!(unknown.code, 2);
    snapshot!("mission-not-found", unknown.snapshot());
    let missing = env.run(&["validate", "missions/nope.toml"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("no mission file at `missions/nope.toml`"),
        "{}",
        missing.stderr
    );
}

#[test]
fn validate_reports_the_problems_of_every_file() {
    let env = env();
    env.write("missions/hello.toml", HELLO);
    env.write(
        "missions/a.toml",
        "[steps.a]\nrun = \"true\"\nneeds = [\"b\"]\n",
    );
    env.write("missions/b.toml", "[steps.b]\nprompt = \"x\"\n");
    let out = env.run(&["validate", "a", "hello", "b"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("[missions/a.toml:3:10]"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("valid `missions/hello.toml`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("[missions/b.toml:1:8]"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn init_writes_hello_and_its_schema_and_never_overwrites() {
    let env = env();
    let out = env.run(&["init"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.read("missions/hello.toml"), HELLO);
    assert!(HELLO.starts_with("#:schema mission.schema.json\n"));
    assert!(
        HELLO.contains("# [steps.review]"),
        "hello carries a commented agent step"
    );
    assert_eq!(
        env.read("missions/mission.schema.json"),
        medley_engine::schema::mission_schema()
    );
    let dry = env.run(&["run", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);

    env.write("missions/hello.toml", "# mine\n");
    let again = env.run(&["init"]);
    assert_eq!(again.code, 2);
    assert!(
        again
            .stderr
            .contains("`missions/hello.toml` already exists"),
        "{}",
        again.stderr
    );
    assert_eq!(env.read("missions/hello.toml"), "# mine\n");

    fs_err::remove_file(env.work().join("missions/hello.toml")).unwrap();
    env.write("missions/mission.schema.json", "{}");
    assert_eq!(env.run(&["init"]).code, 2);
    assert!(!env.work().join("missions/hello.toml").exists());
    assert_eq!(env.read("missions/mission.schema.json"), "{}");
}

#[test]
fn schema_write_puts_the_schema_beside_the_missions() {
    let env = env();
    let out = env.run(&["schema", "--write"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "data goes to the file, not stdout");
    assert_eq!(
        env.read("missions/mission.schema.json"),
        medley_engine::schema::mission_schema()
    );
}

#[test]
fn graph_shows_matrix_children_and_agents() {
    let env = env();
    env.write("missions/hello.toml", HELLO);
    env.write(
        "missions/fix.toml",
        "[steps.plan]\nagent = \"claude\"\nprompt = \"Plan.\"\n\n\
         [steps.fix]\nneeds = [\"plan\"]\nmatrix = { part = [\"lexer\", \"ast\"] }\n\
         agent = [\"claude\", \"codex\"]\nprompt = \"Fix {{ matrix.part }}.\"\n\n\
         [steps.check]\nneeds = [\"fix\"]\nrun = \"cargo test\"\n",
    );
    let dot = env.run(&["graph", "fix"]);
    assert_eq!(dot.code, 0, "{}", dot.stderr);
    snapshot!("graph-dot", dot.snapshot());
    let mermaid = env.run(&["graph", "fix", "--format", "mermaid"]);
    assert_eq!(mermaid.code, 0, "{}", mermaid.stderr);
    assert!(mermaid.stdout.starts_with("```mermaid\nflowchart LR\n"));
    assert!(mermaid.stdout.ends_with("```\n"));
    snapshot!("graph-mermaid", mermaid.snapshot());
}

#[test]
fn dry_run_prints_the_plan_and_runs_nothing() {
    let env = env();
    env.write("missions/hello.toml", HELLO);
    let out = env.run(&["run", "hello", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    snapshot!("dry-run-hello", out.snapshot());
    assert!(
        !env.work().join("greetings").exists(),
        "a dry run runs nothing"
    );

    let set = env.run(&["run", "hello", "--dry-run", "--set", "who=there; rm -rf /"]);
    assert_eq!(set.code, 0, "{}", set.stderr);
    assert!(
        set.stdout
            .contains(r#""$word" 'there; rm -rf /' > greetings/en.txt"#),
        "{}",
        set.stdout
    );

    let only = env.run(&["run", "hello", "--dry-run", "--only", "greet.fr"]);
    assert_eq!(only.code, 0, "{}", only.stderr);
    assert!(only.stdout.contains("1 step,"), "{}", only.stdout);
    let gather = env.run(&["run", "hello", "--dry-run", "--only", "gather"]);
    assert!(gather.stdout.contains("4 steps"), "{}", gather.stdout);
    let bad_only = env.run(&["run", "hello", "--dry-run", "--only", "gahter"]);
    assert_eq!(bad_only.code, 2);
    assert!(
        bad_only.stderr.contains("did you mean `gather`?"),
        "{}",
        bad_only.stderr
    );

    let json = env.run(&["run", "hello", "--dry-run", "--output", "json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(plan["steps"][3]["id"], "gather");
    assert_eq!(plan["steps"][3]["needs"].as_array().unwrap().len(), 3);
}

#[test]
fn set_of_an_undeclared_var_names_it_and_the_declared_ones() {
    let env = env();
    env.write("missions/hello.toml", HELLO);
    let out = env.run(&["run", "hello", "--dry-run", "--set", "woh=there"]);
    assert_eq!(out.code, 2);
    snapshot!("set-unknown-var", out.snapshot());
    env.write(
        "missions/n.toml",
        "[vars]\nretries = 3\n\n[steps.a]\nrun = \"echo {{ vars.retries }}\"\n",
    );
    let bad = env.run(&["run", "n", "--dry-run", "--set", "retries=many"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("`retries` is a whole number"),
        "{}",
        bad.stderr
    );
    let good = env.run(&["run", "n", "--dry-run", "--set", "retries=5"]);
    assert!(good.stdout.contains("run: echo 5"), "{}", good.stdout);
    let malformed = env.run(&["run", "n", "--dry-run", "--set", "retries"]);
    assert_eq!(malformed.code, 2);
    assert!(
        malformed.stderr.contains("NAME=VALUE"),
        "{}",
        malformed.stderr
    );
}
