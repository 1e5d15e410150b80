//! Secrets stay out of what medley writes: a secret printed by a step, its gate or an agent
//! never reaches the journal, the logs, `show`, `logs` or `--output json`; the prompt archive
//! keeps what was sent, verbatim.

use std::path::Path;

use crate::env;

const KEY: &str = "sk-live-abcdef123456";
const TOKEN: &str = "tok-987654321";

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(KEY),
        "{what} holds the mission's secret:\n{text}"
    );
    assert!(
        !text.contains(TOKEN),
        "{what} holds the profile's token:\n{text}"
    );
}

#[test]
fn a_secret_printed_by_a_step_a_gate_or_an_agent_is_masked_everywhere_but_the_prompts() {
    let env = env();
    let mission = r#"secrets = ["MY_API_KEY"]

[agents.bot]
runtime = "command"
program = ["sh", "-c", "cat; echo \"agent says $SERVICE_TOKEN and $MY_API_KEY, short $SHORT_KEY\"; echo \"agent err $SERVICE_TOKEN\" >&2"]
env = { SERVICE_TOKEN = "tok-987654321", SHORT_KEY = "abc12" }

[steps.cmd]
run = "echo out $MY_API_KEY; echo err $MY_API_KEY >&2"
gate = "echo gate $MY_API_KEY; test -e ok || { touch ok; exit 1; }"

[steps.use]
needs = ["cmd"]
run = "echo {{ steps.cmd.output }} > o.txt"

[steps.talk]
agent = "bot"
prompt = "Say {{ vars.word }}"

[vars]
word = "hi"
"#;
    env.repo(&[("missions/s.toml", mission), (".gitignore", "ok\n")]);
    let run = env
        .medley()
        .env("MY_API_KEY", KEY)
        .args([
            "run",
            "s",
            "--output",
            "json",
            "--set",
            &format!("word={TOKEN}"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert_clean("`run --output json`", &stdout);
    assert_clean("the run's stderr", &stderr);

    let runs = env.work().join(".git/medley/runs");
    let dirs: Vec<_> = fs_err::read_dir(&runs).unwrap().flatten().collect();
    let dir = dirs[0].path();
    let journal = fs_err::read_to_string(dir.join("events.jsonl")).unwrap();
    assert_clean("the journal", &journal);
    assert!(journal.contains("gate ***"), "{journal}");
    let mut logs = String::new();
    for file in files_under(&dir.join("logs")) {
        logs.push_str(&String::from_utf8_lossy(&fs_err::read(&file).unwrap()));
    }
    assert_clean("the logs", &logs);
    for seen in [
        "out ***",
        "err ***",
        "gate ***",
        "agent says *** and ***",
        "agent err ***",
    ] {
        assert!(logs.contains(seen), "the logs lack `{seen}`:\n{logs}");
    }
    assert!(
        logs.contains("short abc12"),
        "a value shorter than 6 characters is left as it is:\n{logs}"
    );
    // What a later step sees of the output is masked too.
    let branch = &env.result_branches()[0];
    assert_eq!(env.git(&["show", &format!("{branch}:o.txt")]), "out ***\n");
    for args in [&["show", "last"][..], &["logs", "last"], &["runs"]] {
        let out = env.run(args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_clean(&format!("`{}`", args.join(" ")), &out.stdout);
    }
    // The prompt archive keeps what was sent.
    let prompts: String = files_under(&dir.join("prompts"))
        .iter()
        .map(|f| fs_err::read_to_string(f).unwrap())
        .collect();
    assert!(prompts.contains(&format!("Say {TOKEN}")), "{prompts}");
    // The plan printed by a dry run masks the profile's token.
    let dry = env.run(&["run", "s", "--dry-run", "--output", "json"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_clean("`run --dry-run`", &dry.stdout);
}
