//! The command line for daily use: failures that explain themselves and say what next, run ids
//! people can type, every data command in JSON, validate over every mission, completions.

use medley_tests::TestEnv;

use crate::env;

const HELLO: &str = include_str!("../../missions/hello.toml");

/// A gate that prints a test runner's report (its verdict last) and fails.
const CHECK: &str = "i=1\nwhile [ $i -le 30 ]; do echo \"test_$i ... ok\"; i=$((i+1)); done\n\
    echo 'test_last ... FAIL'\necho 'FAILED (failures=1)'\nexit 1\n";

const FIX: &str = "[steps.ok]\nrun = \"echo ok > ok.txt\"\n\n\
    [steps.fix]\nneeds = [\"ok\"]\nrun = \"echo x > x.txt\"\ngate = \"sh check.sh\"\nattempts = 2\n";

/// Snapshots with run ids, commits, durations and worktree paths replaced.
macro_rules! snapshot_run {
    ($name:expr, $value:expr) => {
        insta::with_settings!({
            snapshot_path => "../snapshots",
            prepend_module_to_snapshot => false,
            filters => vec![
                (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<run>"),
                (r"\b[0-9a-f]{40}\b", "<sha>"),
                (r"\b[0-9a-f]{10}\b", "<sha>"),
                (r"\b[0-9a-f]{8}(-[0-9a-f]{1,4})?\b", "<id>"),
                (r" +\d+(\.\d+)?(ms|s)\b", " <time>"),
                (r"(worktree kept at )\S+", "$1<worktree>"),
                (r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z?", "<date>"),
            ],
        }, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

fn failing(env: &TestEnv) {
    env.repo(&[
        ("missions/fix.toml", FIX),
        ("missions/hello.toml", HELLO),
        ("check.sh", CHECK),
    ]);
}

#[test]
fn a_failing_gate_shows_its_output_its_log_its_worktree_and_what_next() {
    let env = env();
    failing(&env);
    let out = env.run(&["run", "fix", "--output", "plain"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    // The verdict, the log's command and the kept worktree, under the step and at the end.
    assert!(
        out.stderr.contains("  | FAILED (failures=1)\n"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("test_1 ... ok"),
        "only the tail: {}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("\n1 failure:\n  fix: the gate `sh check.sh` exited with 1\n")
    );
    assert!(out.stderr.contains("next: `medley logs "), "{}", out.stderr);
    assert!(out.stderr.contains("`medley resume "), "{}", out.stderr);
    let worktree = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("  worktree kept at "))
        .unwrap();
    assert!(std::path::Path::new(worktree).join("x.txt").exists());
    snapshot_run!("run-failing-gate-plain", out.snapshot());

    // The hint's command works as written.
    let logs_hint = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("next: `"))
        .and_then(|l| l.split('`').next())
        .unwrap()
        .to_owned();
    let args: Vec<&str> = logs_hint.split(' ').skip(1).collect();
    let logs = env.run(&args);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert!(logs.stdout.contains("test_1 ... ok"), "{}", logs.stdout);
    assert!(
        logs.stdout.contains("==> fix: gate.2.log <=="),
        "{}",
        logs.stdout
    );

    // -q: only the failure and the run's end.
    let quiet = env.run(&["-q", "run", "fix"]);
    assert_eq!(quiet.code, 1);
    assert!(!quiet.stderr.contains("ok: passed"), "{}", quiet.stderr);
    assert!(!quiet.stderr.contains("ready on"), "{}", quiet.stderr);
    assert!(quiet.stderr.contains("fix: failed after 2 attempts"));
    assert!(quiet.stderr.contains("run failed in "));
}

#[test]
fn verbose_streams_each_steps_output_prefixed_by_its_id() {
    let env = env();
    env.repo(&[(
        "missions/talk.toml",
        "gate = \"echo the end\"\n[steps.a]\nrun = \"echo one; echo two >&2\"\ngate = \"echo checked\"\n",
    )]);
    let out = env.run(&["-v", "run", "talk"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for line in [
        "a | one\n",
        "a | two\n",
        "a | checked\n",
        "mission gate | the end\n",
    ] {
        assert!(out.stderr.contains(line), "{line}: {}", out.stderr);
    }
    let at = |text: &str| out.stderr.find(text).unwrap();
    assert!(at("a | checked") < at("a: gate passed"), "{}", out.stderr);
    assert!(
        at("a: passed") < at("mission gate | the end"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_passed_run_says_how_to_see_and_apply_its_result() {
    let env = env();
    env.repo(&[("missions/hello.toml", HELLO)]);
    let out = env.run(&["run", "hello", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let branch = &env.result_branches()[0];
    assert!(
        out.stderr.contains(&format!(" {branch}` shows the change")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("`medley apply "), "{}", out.stderr);
    // No agent ran: no tokens, no dollars anywhere.
    for text in [
        &out.stderr,
        &env.run(&["runs"]).stdout,
        &env.run(&["show"]).stdout,
    ] {
        assert!(!text.contains('$'), "{text}");
        assert!(!text.contains("tokens"), "{text}");
    }
}

#[test]
fn show_keeps_the_end_of_a_failure_and_full_keeps_all() {
    let env = env();
    failing(&env);
    assert_eq!(env.run(&["run", "fix"]).code, 1);
    let show = env.run(&["show"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(
        show.stdout.contains("| FAILED (failures=1)"),
        "{}",
        show.stdout
    );
    assert!(!show.stdout.contains("test_13 ... ok"), "{}", show.stdout);
    snapshot_run!("show-failure", show.snapshot());
    let full = env.run(&["show", "last", "--full"]);
    // The journal keeps a gate's last 20 lines: --full shows them all.
    assert!(full.stdout.contains("test_13 ... ok"), "{}", full.stdout);
    assert!(!full.stdout.contains("lines above"), "{}", full.stdout);
    assert!(
        full.stdout.contains("| FAILED (failures=1)"),
        "{}",
        full.stdout
    );
}

#[test]
fn runs_are_named_by_last_back_from_it_and_their_shortest_prefix() {
    let env = env();
    env.repo(&[("missions/hello.toml", HELLO)]);
    for _ in 0..3 {
        assert_eq!(env.run(&["run", "hello"]).code, 0);
    }
    let listed: serde_json::Value =
        serde_json::from_str(&env.run(&["runs", "--output", "json"]).stdout).unwrap();
    let ids: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    let runs = env.run(&["runs"]);
    let shown: Vec<String> = runs
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    for (id, short) in ids.iter().zip(&shown) {
        assert!(
            id.starts_with(short.as_str()) && short.len() < id.len(),
            "{short}"
        );
        // Each shown prefix names its run.
        let show = env.run(&["show", short]);
        assert_eq!(show.code, 0, "{}", show.stderr);
        assert!(show.stdout.starts_with(&format!("run {id} ({short})\n")));
    }
    let back = |arg: &str| {
        let show = env.run(&["show", arg]);
        assert_eq!(show.code, 0, "{}", show.stderr);
        show.stdout.lines().next().unwrap().to_owned()
    };
    assert!(back("last").contains(&ids[2]));
    assert!(back("last~1").contains(&ids[1]));
    assert!(back("last~2").contains(&ids[0]));
    let too_far = env.run(&["show", "last~3"]);
    assert_eq!(too_far.code, 2);
    snapshot_run!("run-id-too-far-back", too_far.snapshot());
    // `logs STEP` is the last run's step.
    let logs = env.run(&["logs", "gather"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
}

/// Asserts that `value` is an object with every one of `keys`.
fn has_keys(value: &serde_json::Value, keys: &[&str]) {
    for key in keys {
        assert!(value.get(key).is_some(), "no `{key}` in {value}");
    }
}

#[test]
fn every_data_command_speaks_json_and_the_others_say_they_do_not() {
    let env = env();
    failing(&env);
    assert_eq!(env.run(&["run", "fix"]).code, 1);
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = env.run(&all);
        assert!(
            out.code == 0 || args[0] == "validate",
            "{args:?}: {}",
            out.stderr
        );
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", out.stdout))
    };
    let runs = json(&["runs"]);
    let run = &runs.as_array().unwrap()[0];
    has_keys(
        run,
        &[
            "id",
            "short_id",
            "mission",
            "started",
            "status",
            "outcome",
            "duration_ms",
            "tokens",
            "cost_usd",
        ],
    );
    assert_eq!(run["status"], "failed");

    let show = json(&["show"]);
    has_keys(&show, &["id", "short_id", "status", "steps"]);
    let fix = &show["steps"]["fix"];
    has_keys(
        fix,
        &[
            "outcome",
            "attempts",
            "duration_ms",
            "commit",
            "error",
            "gate_output",
            "worktree",
        ],
    );
    assert_eq!(fix["outcome"], "failed");
    assert!(
        fix["gate_output"]
            .as_str()
            .unwrap()
            .ends_with("FAILED (failures=1)")
    );

    let logs = env.run(&["--output", "json", "logs", "last", "fix"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    let files: Vec<serde_json::Value> = logs
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!files.is_empty());
    for file in &files {
        has_keys(file, &["step", "kind", "attempt", "path", "text"]);
    }
    assert!(
        files
            .iter()
            .any(|f| f["text"].as_str().unwrap().contains("FAILED (failures=1)"))
    );

    let agents = json(&["agents"]);
    has_keys(&agents, &["runtimes", "profiles"]);
    has_keys(
        &agents["runtimes"][0],
        &[
            "runtime", "binary", "found", "version", "path", "verified", "install",
        ],
    );

    let graph = json(&["graph", "fix"]);
    assert_eq!(graph["steps"][1]["needs"], serde_json::json!(["ok"]));

    let missions = json(&["missions"]);
    has_keys(
        &missions[0],
        &["name", "path", "valid", "steps", "description"],
    );

    env.write(
        "missions/bad.toml",
        "[steps.a]\nrun = \"true\"\nneeds = [\"b\"]\n",
    );
    let validate = env.run(&["--output", "json", "validate"]);
    assert_eq!(validate.code, 2);
    let validate: serde_json::Value = serde_json::from_str(&validate.stdout).unwrap();
    let bad = &validate["missions"][0];
    assert_eq!(bad["valid"], false);
    let diagnostic = &bad["diagnostics"][0];
    assert_eq!(
        (
            &diagnostic["file"],
            &diagnostic["line"],
            &diagnostic["column"]
        ),
        (
            &serde_json::json!("missions/bad.toml"),
            &serde_json::json!(3),
            &serde_json::json!(10)
        )
    );
    has_keys(diagnostic, &["message", "help", "severity"]);
    assert_eq!(validate["missions"][1]["valid"], true);

    for command in [
        &["init"][..],
        &["clean"],
        &["apply"],
        &["completions", "bash"],
        &["man"],
    ] {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(command);
        let out = env.run(&all);
        assert_eq!(out.code, 2, "{command:?}");
        assert!(out.stdout.is_empty(), "{command:?}: {}", out.stdout);
        assert!(out.stderr.contains("has no JSON output"), "{}", out.stderr);
    }
}

#[test]
fn validate_with_no_argument_checks_every_mission_and_missions_lists_them() {
    let env = env();
    env.write("missions/hello.toml", HELLO);
    env.write(
        "missions/broken.toml",
        "description = \"half done\"\n[steps.a]\nrun = \"true\"\nneeds = [\"b\"]\n",
    );
    let out = env.run(&["validate"]);
    assert_eq!(out.code, 2);
    snapshot_run!("validate-every-mission", out.snapshot());
    let list = env.run(&["missions"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    snapshot_run!("missions-list", list.snapshot());
}

#[test]
fn completions_and_the_man_page_come_from_the_clap_definitions() {
    let env = env();
    let bash = env.run(&["completions", "bash"]);
    assert_eq!(bash.code, 0, "{}", bash.stderr);
    assert!(
        bash.stdout.contains("complete -F _medley"),
        "{}",
        bash.stdout
    );
    for sub in ["validate", "missions", "completions", "--quiet"] {
        assert!(bash.stdout.contains(sub), "{sub}");
    }
    crate::snapshot!("completions-bash", bash.stdout);
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let out = env.run(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        assert!(out.stdout.contains("medley"), "{shell}");
    }
    let man = env.run(&["man"]);
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(man.stdout.contains(".TH medley 1"), "{}", man.stdout);
    assert!(man.stdout.contains("medley\\-validate") || man.stdout.contains("validate"));
}

#[test]
fn an_interrupted_run_says_how_to_resume_it() {
    let env = env();
    let started = env.work().parent().unwrap().join("started");
    env.repo(&[(
        "missions/long.toml",
        &format!(
            "[steps.a]\nrun = \"echo go > {}; sleep 300\"\n",
            started.display()
        ),
    )]);
    let child = env
        .medley()
        .args(["run", "long", "--output", "plain"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::run::wait_for(&started);
    crate::run::signal(child.id() as i32, rustix::process::Signal::INT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("next: `medley resume ")
            && last.ends_with("` continues the run, keeping what passed"),
        "{stderr}"
    );
}

/// Runs `medley ARGS` on a pseudo-terminal 100 columns wide (util-linux `script`) of type `term`, and returns
/// what the terminal received; `None` where there is no `script`.
fn on_a_terminal(env: &TestEnv, term: &str, args: &str) -> Option<(i32, String)> {
    let script = std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("script"))
        .find(|p| p.is_file())?;
    let medley = env.medley();
    let command = format!(
        "stty cols 100 rows 40; exec {} {args}",
        medley.get_program().to_string_lossy()
    );
    let mut cmd = std::process::Command::new(script);
    cmd.env_clear().current_dir(env.work()).env("TERM", term);
    for (name, value) in medley.get_envs() {
        if let Some(value) = value
            && name != "NO_COLOR"
        {
            cmd.env(name, value);
        }
    }
    let out = cmd
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .output()
        .ok()?;
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace('\r', ""),
    ))
}

#[test]
fn a_terminal_that_cannot_draw_the_live_view_still_gets_every_line() {
    let env = env();
    env.repo(&[("missions/hello.toml", HELLO)]);
    let Some((code, screen)) = on_a_terminal(&env, "dumb", "run hello --color never") else {
        eprintln!("no `script` on PATH: skipped");
        return;
    };
    assert_eq!(code, 0, "{screen}");
    for line in [
        "\ngreet.en: passed in ",
        "\ngather: passed in ",
        "\nrun passed in ",
    ] {
        assert!(screen.contains(line), "{line}: {screen}");
    }
}

#[test]
fn the_live_view_counts_steps_and_ends_with_its_table_in_mission_order() {
    let env = env();
    env.repo(&[("missions/hello.toml", HELLO)]);
    let Some((code, screen)) = on_a_terminal(&env, "xterm", "run hello --color never") else {
        eprintln!("no `script` on PATH: skipped");
        return;
    };
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains(" done, "), "the overall count: {screen}");
    assert!(screen.contains(" waiting"), "{screen}");
    // After the run: the table, in the mission's order, then what next; no spinner row is left.
    let table = &screen[screen.rfind("\nstep ").expect("a summary table")..];
    let rows: Vec<&str> = table
        .lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        rows,
        ["greet.en", "greet.fr", "greet.de", "gather"],
        "{table}"
    );
    assert!(!table.contains("tokens"), "no agent ran: {table}");
    assert!(table.contains("\nnext: `git diff "), "{table}");
    for spinner in ['⠁', '⠉', '⠙', '⠚', '⠒', '⠂', '⠲', '⠴', '⠤'] {
        assert!(!table.contains(spinner), "{table}");
    }
}
