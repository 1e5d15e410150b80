//! `medley watch`: reruns on change, reusing what the change cannot alter.

use std::io::BufRead as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use medley_tests::TestEnv;

use crate::env;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-agent");

/// A running `medley watch`, its events collected as they come.
struct Watch {
    child: std::process::Child,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
    stderr: std::path::PathBuf,
}

impl Watch {
    fn start(env: &TestEnv, mission: &str) -> Watch {
        Watch::start_with(env, mission, &[])
    }

    fn start_with(env: &TestEnv, mission: &str, extra: &[&str]) -> Watch {
        let stderr = env.work().parent().unwrap().join("watch.stderr");
        let mut child = env
            .medley()
            .args(["watch", mission, "--debounce", "50ms", "--output", "json"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(fs_err::File::create(&stderr).unwrap().into_parts().0)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(event) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(event);
                }
            }
        });
        Watch {
            child,
            events,
            stderr,
        }
    }

    fn count(&self, kind: &str) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == kind)
            .count()
    }

    fn wait(&self, what: impl Fn(&Watch) -> bool) {
        for _ in 0..6000 {
            if what(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "waited a minute; stderr:\n{}",
            fs_err::read_to_string(&self.stderr).unwrap_or_default()
        );
    }

    fn wait_runs(&self, n: usize) {
        self.wait(|w| w.count("run_finished") >= n);
    }

    /// The outcome of `step` in the `n`th run (from 1).
    fn outcome(&self, n: usize, step: &str) -> String {
        let events = self.events.lock().unwrap();
        let mut run = 0;
        for e in events.iter() {
            if e["type"] == "run_started" {
                run += 1;
            }
            if run == n && e["type"] == "step_finished" && e["step"] == step {
                return e["outcome"].as_str().unwrap().to_owned();
            }
        }
        String::new()
    }

    fn stop(mut self) -> i32 {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

const TWO: &str = "[steps.a]\ninputs = [\"src/a.txt\"]\nrun = \"cat src/a.txt > out-a.txt\"\n\n[steps.b]\ninputs = [\"src/b.txt\"]\nrun = \"cat src/b.txt > out-b.txt\"\n";

#[test]
fn an_edit_reruns_what_it_affects_and_a_burst_reruns_once() {
    let env = env();
    env.repo(&[
        ("missions/m.toml", TWO),
        ("src/a.txt", "a\n"),
        ("src/b.txt", "b\n"),
        (".gitignore", "*.log\n"),
    ]);
    let watch = Watch::start(&env, "m");
    watch.wait_runs(1);
    env.write("src/a.txt", "a2\n");
    watch.wait_runs(2);
    assert_eq!(watch.outcome(2, "a"), "passed");
    assert_eq!(watch.outcome(2, "b"), "cached");
    // A burst of saves, an ignored file among them: one rerun.
    for i in 0..5 {
        env.write("src/b.txt", &format!("b{i}\n"));
        env.write("debug.log", &format!("{i}\n"));
    }
    watch.wait_runs(3);
    assert_eq!(watch.outcome(3, "b"), "passed");
    // A last edit to a file no step sees: if the burst had made two runs, this is the fifth.
    env.write("notes.txt", "x\n");
    watch.wait_runs(4);
    assert_eq!(
        watch.count("run_started"),
        4,
        "one rerun per change, one for the burst"
    );
    assert_eq!(watch.outcome(4, "a"), "cached");
    let stderr = fs_err::read_to_string(&watch.stderr).unwrap();
    assert!(stderr.contains("changed: `src/a.txt`"), "{stderr}");
    assert!(
        !stderr.contains("debug.log"),
        "ignored files do not count: {stderr}"
    );
    assert!(stderr.contains("ran: `a`; from the cache: `b`"), "{stderr}");
    // Each run ends by naming the command that shows what it did.
    assert!(
        stderr.contains("see what it did: `medley report "),
        "{stderr}"
    );
    assert_eq!(watch.stop(), 130);
}

#[test]
fn a_running_agent_step_runs_on_through_a_change_it_cannot_see() {
    let env = env();
    env.fakes(
        FAKE,
        &["claude"],
        "claude: sleep 1500; write lexer.done tidied\n",
    );
    env.repo(&[
        (
            "missions/m.toml",
            "[steps.lexer]\ninputs = [\"src/**\"]\nagent = \"claude\"\nprompt = \"Tidy.\"\n",
        ),
        ("src/lexer.rs", "fn lex() {}\n"),
        ("README.md", "# demo\n"),
    ]);
    let watch = Watch::start(&env, "m");
    watch.wait(|w| w.count("step_started") >= 1);
    env.write("README.md", "# demo, edited while the agent works\n");
    watch.wait_runs(2);
    assert_eq!(
        env.fake_calls().len(),
        1,
        "the agent was called once: its work was not thrown away"
    );
    assert_eq!(watch.outcome(1, "lexer"), "passed");
    assert_eq!(watch.outcome(2, "lexer"), "cached");
    let stderr = fs_err::read_to_string(&watch.stderr).unwrap();
    assert!(stderr.contains("`lexer` run on"), "{stderr}");
    let branch = env
        .result_branches()
        .into_iter()
        .max_by_key(|b| b.clone())
        .unwrap();
    let tree = env.tree(&branch);
    assert_eq!(tree["lexer.done"], "tidied");
    assert_eq!(tree["README.md"], "# demo, edited while the agent works\n");
    assert_eq!(watch.stop(), 130);
}

#[test]
fn a_broken_mission_shows_its_diagnostic_and_watch_goes_on() {
    let env = env();
    env.repo(&[
        ("missions/m.toml", TWO),
        ("src/a.txt", "a\n"),
        ("src/b.txt", "b\n"),
    ]);
    let watch = Watch::start(&env, "m");
    watch.wait_runs(1);
    env.write(
        "missions/m.toml",
        &format!("{TWO}\n[steps.c]\nneeds = [\"nope\"]\nrun = \"true\"\n"),
    );
    watch.wait(|w| {
        fs_err::read_to_string(&w.stderr)
            .unwrap_or_default()
            .contains("unknown step `nope`")
    });
    env.write(
        "missions/m.toml",
        &format!("{TWO}\n[steps.c]\nneeds = [\"a\"]\nrun = \"true\"\n"),
    );
    watch.wait_runs(2);
    assert_eq!(watch.outcome(2, "c"), "passed");
    assert_eq!(watch.outcome(2, "a"), "cached");
    assert_eq!(watch.stop(), 130);
}

#[test]
fn ctrl_c_stops_watch_and_leaves_no_process() {
    let env = env();
    let pids = env.work().parent().unwrap().join("pids");
    env.repo(&[(
        "missions/m.toml",
        &format!(
            "[steps.s]\nrun = \"echo $$ >> {}; sleep 300\"\n",
            pids.display()
        ),
    )]);
    let watch = Watch::start(&env, "m");
    watch.wait(|_| fs_err::read_to_string(&pids).is_ok_and(|t| t.ends_with('\n')));
    assert_eq!(watch.stop(), 130);
    for pid in fs_err::read_to_string(&pids).unwrap().split_whitespace() {
        let alive =
            fs_err::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
        assert!(!alive, "process {pid} outlived watch");
    }
}

#[test]
fn clear_clears_the_screen_before_each_rerun() {
    let env = env();
    env.repo(&[
        ("missions/m.toml", TWO),
        ("src/a.txt", "a\n"),
        ("src/b.txt", "b\n"),
    ]);
    let watch = Watch::start_with(&env, "m", &["--clear"]);
    watch.wait_runs(1);
    env.write("src/a.txt", "a2\n");
    watch.wait_runs(2);
    let stderr = fs_err::read_to_string(&watch.stderr).unwrap();
    assert!(stderr.contains("\x1b[2J\x1b[H"), "{stderr:?}");
    assert_eq!(watch.stop(), 130);
}

#[test]
fn a_step_waiting_on_a_person_is_not_rerun_for_an_unrelated_change() {
    let env = env();
    let count = env.work().parent().unwrap().join("plan.count");
    let mission = format!(
        "[steps.plan]\ninputs = [\"src/plan.txt\"]\nrun = \"echo x >> {}; cat src/plan.txt > PLAN.md\"\n\
         approve = \"Is the plan sound?\"\n\n\
         [steps.build]\nneeds = [\"plan\"]\nrun = \"cat PLAN.md > built.txt\"\n\n\
         [steps.b]\ninputs = [\"src/b.txt\"]\nrun = \"cat src/b.txt > out-b.txt\"\n",
        count.display()
    );
    env.repo(&[
        ("missions/m.toml", &mission),
        ("src/plan.txt", "p\n"),
        ("src/b.txt", "b\n"),
    ]);
    let watch = Watch::start(&env, "m");
    watch.wait_runs(1);
    assert_eq!(watch.count("approval_requested"), 1);
    env.write("src/b.txt", "b2\n");
    watch.wait_runs(2);
    assert_eq!(watch.outcome(2, "b"), "passed");
    assert_eq!(watch.outcome(2, "plan"), "cached", "not run again");
    assert_eq!(
        fs_err::read_to_string(&count).unwrap().lines().count(),
        1,
        "the waiting step's command ran once"
    );
    assert_eq!(watch.count("approval_requested"), 2, "it still waits");
    let outcomes: Vec<String> = watch
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "run_finished")
        .map(|e| e["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["waiting", "waiting"]);
    watch.stop();
}

#[test]
fn each_run_of_watch_expands_a_fan_out_from_its_plan_again() {
    let env = env();
    let mission = "[steps.plan]\ninputs = [\"list.json\"]\nrun = \"cp list.json tasks.json\"\n\n\
        [steps.split]\nneeds = [\"plan\"]\ninputs = [\"src/**\"]\n\
        matrix = { task = { from = \"plan\", file = \"tasks.json\" } }\n\
        run = \"cat src/{{ matrix.task }}.txt > out-{{ matrix.task }}.txt\"\n";
    env.repo(&[
        ("missions/fan.toml", mission),
        ("list.json", r#"["a", "b"]"#),
        ("src/a.txt", "a\n"),
        ("src/b.txt", "b\n"),
        ("src/c.txt", "c\n"),
    ]);
    let watch = Watch::start(&env, "fan");
    watch.wait_runs(1);
    assert_eq!(watch.outcome(1, "split.a"), "passed");
    // A change no step sees: `plan` is reused and makes the same children, reused too.
    env.write("notes.txt", "x\n");
    watch.wait_runs(2);
    assert_eq!(watch.outcome(2, "plan"), "cached");
    assert_eq!(watch.outcome(2, "split.a"), "cached");
    assert_eq!(watch.outcome(2, "split.b"), "cached");
    // A longer list: one more child; the others are reused.
    env.write("list.json", r#"["a", "b", "c"]"#);
    watch.wait_runs(3);
    assert_eq!(watch.outcome(3, "plan"), "passed");
    assert_eq!(watch.outcome(3, "split.b"), "cached");
    assert_eq!(watch.outcome(3, "split.c"), "passed");
    let expanded: Vec<serde_json::Value> = watch
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "steps_expanded")
        .map(|e| e["children"].clone())
        .collect();
    assert_eq!(
        expanded,
        [
            serde_json::json!(["split.a", "split.b"]),
            serde_json::json!(["split.a", "split.b"]),
            serde_json::json!(["split.a", "split.b", "split.c"]),
        ]
    );
    assert_eq!(watch.stop(), 130);
}
