//! `medley report`: the HTML page (parsed with a real HTML parser, and rendered by a real
//! browser with no network), the Markdown summary (snapshot), JUnit (checked against the
//! common JUnit schema's shape), escaping of everything a run brings, `--open`, and the README's
//! CI recipe.

use std::path::{Path, PathBuf};

use medley_tests::TestEnv;
use scraper::{ElementRef, Html, Selector};

use crate::{env, snapshot};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-agent");
const HELLO: &str = include_str!("../../missions/hello.toml");

fn sel(css: &str) -> Selector {
    Selector::parse(css).unwrap_or_else(|e| panic!("selector {css}: {e:?}"))
}

fn text(e: ElementRef<'_>) -> String {
    e.text().collect()
}

/// The HTML report of the newest run, parsed.
fn html(env: &TestEnv) -> (String, Html) {
    let out = env.run(&["report"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = Html::parse_document(&out.stdout);
    (out.stdout, doc)
}

/// The `<article>` of a step.
fn step<'a>(doc: &'a Html, id: &str) -> ElementRef<'a> {
    doc.select(&sel(&format!("article.step[data-step=\"{id}\"]")))
        .next()
        .unwrap_or_else(|| panic!("no section for step {id}"))
}

fn outcomes(doc: &Html) -> Pairs {
    doc.select(&sel("article.step"))
        .map(|a| {
            (
                a.attr("data-step").unwrap().to_owned(),
                a.attr("data-outcome").unwrap().to_owned(),
            )
        })
        .collect()
}

/// The SVG's nodes (step, outcome) and edges (from, to).
/// Pairs of strings: (step, outcome) or (from, to).
type Pairs = Vec<(String, String)>;

fn graph(doc: &Html) -> (Pairs, Pairs) {
    let nodes = doc
        .select(&sel("#graph svg g.node"))
        .map(|g| {
            (
                g.attr("data-step").unwrap().to_owned(),
                g.attr("data-outcome").unwrap().to_owned(),
            )
        })
        .collect();
    let edges = doc
        .select(&sel("#graph svg path.edge"))
        .map(|p| {
            (
                p.attr("data-from").unwrap().to_owned(),
                p.attr("data-to").unwrap().to_owned(),
            )
        })
        .collect();
    (nodes, edges)
}

fn pairs(list: &[(&str, &str)]) -> Pairs {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

fn run_id(env: &TestEnv) -> String {
    env.journal()[0]["run"].as_str().unwrap().to_owned()
}

#[test]
fn a_passed_run_shows_every_step_its_diff_the_graph_and_how_to_apply_it() {
    let env = env();
    env.repo(&[("README.md", "# demo\n"), ("missions/hello.toml", HELLO)]);
    let out = env.run(&["run", "hello", "--output", "plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = run_id(&env);
    // The run ends by saying how to see what it did (by the run's shortest unique id).
    let said = out
        .stderr
        .split("`medley report ")
        .nth(1)
        .and_then(|rest| rest.split(" --open`").next())
        .unwrap_or_else(|| panic!("no report line in:\n{}", out.stderr));
    assert!(id.starts_with(said) && said.len() >= 8, "{}", out.stderr);
    let (_, doc) = html(&env);
    assert_eq!(
        outcomes(&doc),
        pairs(&[
            ("greet.en", "passed"),
            ("greet.fr", "passed"),
            ("greet.de", "passed"),
            ("gather", "passed"),
        ])
    );
    let (nodes, edges) = graph(&doc);
    assert_eq!(nodes, outcomes(&doc), "a node per step, with its outcome");
    assert_eq!(
        edges,
        pairs(&[
            ("greet.en", "gather"),
            ("greet.fr", "gather"),
            ("greet.de", "gather"),
        ]),
        "an edge per need"
    );
    // The matrix children are grouped in one box.
    let groups: Vec<&str> = doc
        .select(&sel("#graph svg g.group"))
        .map(|g| g.attr("data-group").unwrap())
        .collect();
    assert_eq!(groups, ["greet"]);
    // Each step's diff against its base, file by file.
    let fr = step(&doc, "greet.fr");
    let file = fr
        .select(&sel("details.diff details.file"))
        .next()
        .expect("greet.fr's diff");
    assert_eq!(file.attr("data-path"), Some("greetings/fr.txt"));
    let added: Vec<String> = file.select(&sel("span.add")).map(text).collect();
    assert!(added.contains(&"+Bonjour, world!".to_owned()), "{added:?}");
    // The command it ran, and its gate.
    assert!(text(fr.select(&sel("pre.command")).next().unwrap()).contains("Bonjour"));
    let gate = text(fr.select(&sel(".gate.passed")).next().unwrap());
    assert!(gate.contains("test -s greetings/fr.txt"), "{gate}");
    let gather = step(&doc, "gather");
    let gathered = text(gather.select(&sel("details.diff")).next().unwrap());
    assert!(gathered.contains("+Hallo, world!"), "{gathered}");
    // Totals: the result branch and the command that applies it.
    let result = text(doc.select(&sel("#summary dd.result")).next().unwrap());
    assert!(result.contains(&format!("medley/hello/{id}")), "{result}");
    assert!(result.contains(&format!("medley apply {id}")), "{result}");
    let mission_gate = text(doc.select(&sel("#mission-gate")).next().unwrap());
    assert!(
        mission_gate.contains("test -s greetings/all.txt") && mission_gate.contains("passed"),
        "{mission_gate}"
    );
    // The page makes no request: no script, no external reference, a policy that forbids them.
    assert_eq!(
        doc.select(&sel("script, link, img, iframe, object"))
            .count(),
        0
    );
    let csp = doc
        .select(&sel("meta[http-equiv=\"Content-Security-Policy\"]"))
        .next()
        .expect("a content security policy");
    assert!(
        csp.attr("content")
            .unwrap()
            .starts_with("default-src 'none'")
    );
}

/// A mission whose steps fail in each way: an agent error (claude 401), a gate that fails, a
/// command that fails, and a step skipped because its need failed.
fn failing(env: &TestEnv) {
    env.fakes(FAKE, &["claude"], "claude: 401\n");
    env.repo(&[(
        "missions/broken.toml",
        r#"[steps.prep]
run = "echo prepared > prep.txt"

[steps.agent]
needs = ["prep"]
agent = "claude"
attempts = 1
prompt = "Write notes.txt."

[steps.check]
needs = ["prep"]
attempts = 1
run = "echo checked > check.txt"
gate = "echo 'expected 3 widgets, found 2'; exit 4"

[steps.crash]
attempts = 1
run = "echo 'to stdout'; echo 'disk on fire' >&2; exit 3"

[steps.after]
needs = ["check"]
run = "true"
"#,
    )]);
    let out = env.run(&["run", "broken", "--output", "plain"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
}

#[test]
fn a_failed_run_shows_what_failed_why_and_what_was_skipped() {
    let env = env();
    failing(&env);
    let (_, doc) = html(&env);
    assert_eq!(
        outcomes(&doc),
        pairs(&[
            ("prep", "passed"),
            ("agent", "failed"),
            ("check", "failed"),
            ("crash", "failed"),
            ("after", "skipped"),
        ])
    );
    let (nodes, edges) = graph(&doc);
    assert_eq!(nodes.len(), 5);
    assert_eq!(
        edges,
        pairs(&[("prep", "agent"), ("prep", "check"), ("check", "after")])
    );
    assert_eq!(
        doc.select(&sel("#summary"))
            .next()
            .unwrap()
            .attr("data-outcome"),
        Some("failed")
    );
    // The agent's failure: its prompt, what the CLI said, and why the attempt failed.
    let agent = step(&doc, "agent");
    let attempt = agent.select(&sel("details.attempt")).next().unwrap();
    assert_eq!(attempt.attr("data-agent"), Some("claude"));
    assert_eq!(
        text(attempt.select(&sel("pre.prompt")).next().unwrap()),
        "Write notes.txt."
    );
    assert!(attempt.select(&sel("ol.agent-output li")).count() > 0);
    let failure = text(attempt.select(&sel(".failure")).next().unwrap());
    assert!(failure.contains("Invalid API key"), "{failure}");
    // The gate's failure: its command, exit code and output.
    let check = step(&doc, "check");
    let gate = text(check.select(&sel(".gate.failed")).next().unwrap());
    assert!(gate.contains("exit 4"), "{gate}");
    assert!(gate.contains("expected 3 widgets, found 2"), "{gate}");
    let why = text(check.select(&sel(".why")).next().unwrap());
    assert!(why.contains("expected 3 widgets, found 2"), "{why}");
    // A failed step's diff is what its attempt committed.
    let diff = check.select(&sel("details.file")).next().unwrap();
    assert_eq!(diff.attr("data-path"), Some("check.txt"));
    // A failed command: what it printed, both streams.
    let crash = step(&doc, "crash");
    assert!(text(crash.select(&sel("pre.stderr")).next().unwrap()).contains("disk on fire"));
    assert!(text(crash.select(&sel("pre.stdout")).next().unwrap()).contains("to stdout"));
    // Skipped: why.
    let after = text(
        step(&doc, "after")
            .select(&sel(".why.skipped"))
            .next()
            .unwrap(),
    );
    assert!(after.contains("it needs `check`, which failed"), "{after}");
    let result = text(doc.select(&sel("#summary dd.result")).next().unwrap());
    assert_eq!(result, "no result branch");
}

/// Run ids, durations, commit ids and dates: what differs between two runs of one mission.
fn stable(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_inclusive(|c: char| c.is_whitespace() || "`()|*,".contains(c)) {
        let (body, tail) = word.split_at(
            word.trim_end_matches(|c: char| c.is_whitespace() || "`()|*,".contains(c))
                .len(),
        );
        let uuid = body.len() == 36 && body.chars().filter(|&c| c == '-').count() == 4;
        let time = body
            .strip_suffix("ms")
            .or_else(|| body.strip_suffix('s'))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '.'));
        if uuid {
            out.push_str("[RUN]");
        } else if let Some(branch) = body.strip_prefix("medley/broken/") {
            let _ = branch;
            out.push_str("medley/broken/[RUN]");
        } else if time {
            out.push_str("[TIME]");
        } else {
            out.push_str(body);
        }
        out.push_str(tail);
    }
    out
}

#[test]
fn markdown_sums_up_for_a_ci_summary() {
    let env = env();
    failing(&env);
    let out = env.run(&["report", "last", "--format", "markdown"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    snapshot!("report-markdown-failed", stable(&out.stdout));
}

#[test]
fn junit_has_the_shape_of_the_common_junit_schema() {
    let env = env();
    failing(&env);
    let path = env.work().join("medley.xml");
    let out = env.run(&["report", "--format", "junit", "-o", "medley.xml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "", "with -o, nothing on stdout");
    let xml = fs_err::read_to_string(&path).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let num = |n: roxmltree::Node<'_, '_>, attr: &str| -> usize {
        n.attribute(attr)
            .unwrap_or_else(|| panic!("<{}> has no {attr}", n.tag_name().name()))
            .parse()
            .unwrap_or_else(|_| panic!("{attr} is not a count"))
    };
    let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    assert_eq!(suites.len(), 1);
    let suite = suites[0];
    assert_eq!(suite.tag_name().name(), "testsuite");
    assert_eq!(suite.attribute("name"), Some("broken"));
    for attr in ["time", "timestamp"] {
        assert!(suite.attribute(attr).is_some(), "testsuite has no {attr}");
    }
    suite
        .attribute("time")
        .unwrap()
        .parse::<f64>()
        .expect("time is seconds");
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    // Besides test cases, a suite holds only what the schema allows.
    for child in suite.children().filter(|n| n.is_element()) {
        assert!(
            ["properties", "testcase", "system-out", "system-err"]
                .contains(&child.tag_name().name()),
            "{:?}",
            child.tag_name()
        );
    }
    let names: Vec<&str> = cases.iter().map(|c| c.attribute("name").unwrap()).collect();
    assert_eq!(names, ["prep", "agent", "check", "crash", "after"]);
    let (mut failures, mut skipped, mut errors) = (0, 0, 0);
    for case in &cases {
        assert_eq!(case.attribute("classname"), Some("medley.broken"));
        case.attribute("time").unwrap().parse::<f64>().unwrap();
        for child in case.children().filter(|n| n.is_element()) {
            match child.tag_name().name() {
                "failure" => {
                    failures += 1;
                    assert!(child.attribute("message").is_some());
                    assert!(child.attribute("type").is_some());
                }
                "skipped" => skipped += 1,
                "error" => errors += 1,
                "system-out" | "system-err" => {}
                other => panic!("<testcase> may not hold <{other}>"),
            }
        }
    }
    assert_eq!((failures, skipped, errors), (3, 1, 0));
    assert_eq!(num(suite, "tests"), cases.len());
    assert_eq!(num(suite, "failures"), failures);
    assert_eq!(num(suite, "skipped"), skipped);
    assert_eq!(num(suite, "errors"), errors);
    assert_eq!(num(root, "tests"), cases.len());
    assert_eq!(num(root, "failures"), failures);
    // The gate's output is the failure's text.
    let check = cases
        .iter()
        .find(|c| c.attribute("name") == Some("check"))
        .unwrap();
    let failure = check
        .children()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    assert!(
        failure
            .text()
            .unwrap_or("")
            .contains("expected 3 widgets, found 2"),
        "{failure:?}"
    );
    let after = cases
        .iter()
        .find(|c| c.attribute("name") == Some("after"))
        .unwrap();
    let skip = after
        .children()
        .find(|n| n.has_tag_name("skipped"))
        .unwrap();
    assert!(skip.attribute("message").unwrap().contains("`check`"));
    // A failed command's stderr.
    let crash = cases
        .iter()
        .find(|c| c.attribute("name") == Some("crash"))
        .unwrap();
    let err = crash
        .children()
        .find(|n| n.has_tag_name("system-err"))
        .expect("the command's stderr");
    assert!(err.text().unwrap().contains("disk on fire"));
}

#[test]
fn secrets_are_masked_in_the_prompts_shown() {
    let env = env();
    env.fakes(FAKE, &["claude"], "claude: write a.txt x\n");
    env.repo(&[(
        "missions/s.toml",
        "secrets = [\"DEPLOY_TOKEN\"]\n\n[vars]\ntoken = \"tok-4242-secret\"\n\n\
         [steps.s]\nagent = \"claude\"\nprompt = \"Deploy with {{ vars.token }}.\"\n",
    )]);
    let with_secret = |args: &[&str]| {
        let out = env
            .medley()
            .env("DEPLOY_TOKEN", "tok-4242-secret")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    with_secret(&["run", "s"]);
    let page = with_secret(&["report"]);
    let doc = Html::parse_document(&page);
    let prompt = text(step(&doc, "s").select(&sel("pre.prompt")).next().unwrap());
    assert_eq!(prompt, "Deploy with ***.");
    assert!(!page.contains("tok-4242-secret"));
}

#[test]
fn a_cached_run_says_where_its_results_come_from() {
    let env = env();
    env.repo(&[("README.md", "# demo\n"), ("missions/hello.toml", HELLO)]);
    assert_eq!(env.run(&["run", "hello"]).code, 0);
    let first = run_id(&env);
    assert_eq!(env.run(&["run", "hello"]).code, 0);
    let (_, doc) = html(&env);
    assert!(outcomes(&doc).iter().all(|(_, o)| o == "cached"));
    let (nodes, edges) = graph(&doc);
    assert_eq!((nodes.len(), edges.len()), (4, 3));
    let gather = step(&doc, "gather");
    let cached = text(gather.select(&sel("p.cached")).next().unwrap());
    assert!(cached.contains(&first), "{cached}");
    // Its diff is the reused result's, against this run's base.
    let diff = text(gather.select(&sel("details.diff")).next().unwrap());
    assert!(diff.contains("+Bonjour, world!"), "{diff}");
    // An older run still reports, by the start of its id.
    let out = env.run(&["report", &first[..13], "--format", "markdown"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("| `gather` | ✅ passed |"),
        "{}",
        out.stdout
    );
}

/// What a step's section says of its approval.
fn approval_of(doc: &Html, id: &str) -> String {
    let approval = step(doc, id).select(&sel("p.approval")).next();
    text(approval.unwrap_or_else(|| panic!("step {id} says nothing of an approval")))
}

#[test]
fn a_result_waiting_for_a_person_and_the_decision_are_shown() {
    let env = env();
    env.repo(&[(
        "missions/m.toml",
        "[steps.plan]\nrun = \"echo plan > PLAN.md\"\napprove = \"Is <the> plan sound?\"\n\n\
         [steps.build]\nneeds = [\"plan\"]\nrun = \"cat PLAN.md > built.txt\"\n",
    )]);
    assert_eq!(env.run(&["run", "m"]).code, 3);
    let (_, doc) = html(&env);
    assert_eq!(
        outcomes(&doc),
        pairs(&[("plan", "waiting"), ("build", "not run")])
    );
    let approval = approval_of(&doc, "plan");
    assert!(
        approval.starts_with("waits for a person's approval")
            && approval.ends_with("Is <the> plan sound?"),
        "{approval}"
    );
    let markdown = env.run(&["report", "--format", "markdown"]).stdout;
    assert!(markdown.contains("| `plan` | ✋ waiting |"), "{markdown}");
    let junit = env.run(&["report", "--format", "junit"]).stdout;
    assert!(
        junit.contains("<skipped message=\"waits for a person"),
        "{junit}"
    );

    assert_eq!(env.run(&["approve", "plan"]).code, 0);
    let (_, doc) = html(&env);
    assert_eq!(
        outcomes(&doc),
        pairs(&[("plan", "kept"), ("build", "passed")])
    );
    let approval = approval_of(&doc, "plan");
    assert!(approval.starts_with("approved by "), "{approval}");
    let markdown = env.run(&["report", "--format", "markdown"]).stdout;
    assert!(markdown.contains("### Approvals"), "{markdown}");
}

#[test]
fn the_final_results_approval_is_shown_with_the_run() {
    let env = env();
    env.repo(&[(
        "missions/m.toml",
        "approve = \"Ship it?\"\n\n[steps.a]\nrun = \"echo a > a.txt\"\n",
    )]);
    assert_eq!(env.run(&["run", "m"]).code, 3);
    let (_, doc) = html(&env);
    let fact = |doc: &Html| text(doc.select(&sel("dd.approval")).next().unwrap());
    assert!(
        fact(&doc).starts_with("waits for a person's approval") && fact(&doc).ends_with("Ship it?"),
        "{}",
        fact(&doc)
    );
    assert_eq!(env.run(&["approve", "@result"]).code, 0);
    let (_, doc) = html(&env);
    assert!(fact(&doc).starts_with("approved by "), "{}", fact(&doc));
    let markdown = env.run(&["report", "--format", "markdown"]).stdout;
    assert!(
        markdown.contains("- the result: approved by "),
        "{markdown}"
    );
}

#[test]
fn a_resumed_run_shows_its_kept_steps_and_both_starts() {
    let env = env();
    let go = env.work().parent().unwrap().join("go");
    env.repo(&[(
        "missions/chain.toml",
        &format!(
            "[steps.a]\nrun = \"echo a > a.txt\"\n\n[steps.b]\nneeds = [\"a\"]\nattempts = 1\n\
             run = \"echo b > b.txt\"\ngate = \"echo looking for go; test -e {}\"\n",
            go.display()
        ),
    )]);
    assert_eq!(env.run(&["run", "chain"]).code, 1);
    fs_err::write(&go, "").unwrap();
    let out = env.run(&["resume", "last"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, doc) = html(&env);
    assert_eq!(outcomes(&doc), pairs(&[("a", "kept"), ("b", "passed")]));
    let wall = text(doc.select(&sel("#summary dd.wall-time")).next().unwrap());
    assert!(wall.contains("over 2 starts (resumed)"), "{wall}");
    assert!(step(&doc, "a").select(&sel("p.kept")).next().is_some());
    // b's failed attempt before the resume and its passing one after it.
    let b = step(&doc, "b");
    let gates: Vec<String> = b
        .select(&sel("details.attempt .gate"))
        .map(|g| g.attr("class").unwrap().to_owned())
        .collect();
    assert_eq!(gates, ["gate failed", "gate passed"]);
    let (_, edges) = graph(&doc);
    assert_eq!(edges, pairs(&[("a", "b")]));
    assert!(
        doc.select(&sel("#summary dd.result"))
            .next()
            .map(text)
            .unwrap()
            .contains("medley apply")
    );
}

#[test]
fn a_race_shows_every_agent_that_ran() {
    let env = env();
    let pids = env.work().parent().unwrap().join("claude.pids");
    env.fakes(
        FAKE,
        &["claude", "codex"],
        &format!(
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
    let (_, doc) = html(&env);
    assert_eq!(outcomes(&doc), pairs(&[("s", "passed")]));
    let s = step(&doc, "s");
    let mut agents: Vec<&str> = s
        .select(&sel("details.attempt"))
        .map(|a| a.attr("data-agent").unwrap())
        .collect();
    agents.sort();
    assert_eq!(agents, ["claude", "codex"]);
    for attempt in s.select(&sel("details.attempt")) {
        assert_eq!(
            text(attempt.select(&sel("pre.prompt")).next().unwrap()),
            "Race."
        );
    }
    let meta = text(s.select(&sel("p.meta")).next().unwrap());
    assert!(meta.contains("claude | codex (race)"), "{meta}");
    let node = doc.select(&sel("#graph g.node")).next().map(text).unwrap();
    assert!(node.contains("codex"), "the winner is on the node: {node}");
    let diff = s.select(&sel("details.file")).next().unwrap();
    assert_eq!(diff.attr("data-path"), Some("won.txt"));
}

const NASTY: &str = "</details></script><script>alert(1)</script>\"><img src=x onerror=alert(2)>";

/// A run whose prompt, agent output, command output, gate output and file names carry markup.
fn injected(env: &TestEnv) {
    env.fakes(
        FAKE,
        &["claude"],
        "claude: write notes.txt </script><img src=x onerror=alert(3)>\n",
    );
    let quoted = NASTY.replace('\\', "\\\\").replace('"', "\\\"");
    env.repo(&[(
        "missions/x.toml",
        &format!(
            "description = \"{quoted}\"\n\n\
             [steps.writes]\nrun = \"printf '%s\\\\n' '<b>bold</b>' > '\\\"><img src=x onerror=alert(4)>.txt'\"\n\n\
             [steps.talks]\nagent = \"claude\"\nprompt = \"\"\"{NASTY}\"\"\"\n\n\
             [steps.fails]\nattempts = 1\nrun = \"true\"\ngate = \"echo '<script>alert(5)</script></details>'; exit 1\"\n"
        ),
    )]);
    let out = env.run(&["run", "x"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
}

#[test]
fn markup_in_prompts_outputs_and_file_names_is_shown_as_text() {
    let env = env();
    injected(&env);
    let (raw, doc) = html(&env);
    // Nothing the run brought became an element or an attribute.
    assert_eq!(doc.select(&sel("script, img, b")).count(), 0, "{raw}");
    for element in doc
        .root_element()
        .descendants()
        .filter_map(ElementRef::wrap)
    {
        for (name, _) in element.value().attrs() {
            assert!(!name.starts_with("on"), "an `{name}` attribute got in");
        }
    }
    // Every step still has its section: a `</details>` closed nothing early.
    assert_eq!(
        outcomes(&doc),
        pairs(&[
            ("writes", "passed"),
            ("talks", "passed"),
            ("fails", "failed")
        ])
    );
    // And the text is there, as the run had it.
    let prompt = text(
        step(&doc, "talks")
            .select(&sel("pre.prompt"))
            .next()
            .unwrap(),
    );
    assert_eq!(prompt, NASTY);
    let description = text(doc.select(&sel("p.description")).next().unwrap());
    assert_eq!(description, NASTY);
    let file = step(&doc, "writes")
        .select(&sel("details.file"))
        .next()
        .unwrap();
    assert_eq!(
        file.attr("data-path"),
        Some("\"><img src=x onerror=alert(4)>.txt")
    );
    assert!(text(file).contains("+<b>bold</b>"));
    let gate = text(
        step(&doc, "fails")
            .select(&sel(".gate.failed"))
            .next()
            .unwrap(),
    );
    assert!(
        gate.contains("<script>alert(5)</script></details>"),
        "{gate}"
    );
    let talks = text(step(&doc, "talks"));
    assert!(
        talks.contains("</script><img src=x onerror=alert(3)>"),
        "{talks}"
    );
    // Markdown and JUnit carry it safely too.
    // Markdown: outside code blocks and spans (where text is text), no markup at all.
    let md = env.run(&["report", "--format", "markdown"]).stdout;
    let mut fence: Option<String> = None;
    for line in md.lines() {
        let ticks: String = line.chars().take_while(|&c| c == '`').collect();
        match &fence {
            Some(open) if ticks.len() >= open.len() && line.trim() == ticks => fence = None,
            Some(_) => {}
            None if ticks.len() >= 3 => fence = Some(ticks),
            None => {
                // Code spans show their content as text: what is left must hold no markup.
                let outside: String = line
                    .split('`')
                    .enumerate()
                    .filter(|(i, _)| i % 2 == 0)
                    .map(|(_, part)| part)
                    .collect();
                let outside = outside.replace("<sub>", "").replace("</sub>", "");
                assert!(!outside.contains('<'), "{line}");
            }
        }
    }
    assert!(
        md.contains("<script>alert(5)</script>"),
        "the gate's words, in a block: {md}"
    );
    let junit = env.run(&["report", "--format", "junit"]).stdout;
    let xml = roxmltree::Document::parse(&junit).expect("well-formed XML");
    let failure = xml
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    assert!(
        failure
            .text()
            .unwrap()
            .contains("<script>alert(5)</script>")
    );
}

#[test]
fn open_hands_the_page_to_the_browser() {
    let env = env();
    env.repo(&[("README.md", "# demo\n"), ("missions/hello.toml", HELLO)]);
    assert_eq!(env.run(&["run", "hello"]).code, 0);
    let bin = env.work().parent().unwrap().join("bin");
    fs_err::create_dir_all(&bin).unwrap();
    let opened = env.work().parent().unwrap().join("opened");
    let opener = bin.join("xdg-open");
    fs_err::write(
        &opener,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", opened.display()),
    )
    .unwrap();
    fs_err::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = env.run(&["report", "--open"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let page = PathBuf::from(fs_err::read_to_string(&opened).unwrap());
    assert!(
        page.ends_with(format!("medley/runs/{}/report.html", run_id(&env))),
        "{}",
        page.display()
    );
    let doc = Html::parse_document(&fs_err::read_to_string(&page).unwrap());
    assert_eq!(doc.select(&sel("article.step")).count(), 4);
    // Only HTML opens in a browser.
    let out = env.run(&["report", "--open", "--format", "junit"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    // No run yet: said so, with what to do.
    let empty = crate::env();
    empty.repo(&[("README.md", "# x\n")]);
    let out = empty.run(&["report"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("has no runs yet"), "{}", out.stderr);
}

/// The browser to render with: Debian's `chromium` (`.ci/run` installs it).
fn browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    if std::env::var_os("CI").is_some_and(|v| v == "true") {
        panic!("no browser on CI: `.ci/run` installs Debian's chromium (apt-get install chromium)");
    }
    // A skipped test says why, where the test runner shows it.
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "skipped: no chromium on PATH to render the report with (`apt-get install chromium`)"
        );
    }
    None
}

/// Runs headless chromium on `page` with every network route closed, recording its network
/// log; returns stdout and the URLs it asked for.
fn render(chromium: &Path, page: &Path, mode: &[&str]) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let netlog = dir.path().join("net.json");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            // No network at all: no proxy reaches anything, no name resolves.
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--window-size=1280,1600",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--log-net-log={}", netlog.display()))
        .args(mode)
        .arg(format!("file://{}", page.display()))
        .env("HOME", dir.path())
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        page_requests(&netlog),
    )
}

/// The URLs of the requests a page made, from chromium's network log: each request job names
/// its initiator, and the browser's own background requests (updates, sign-in) have none
/// (`not an origin`), where a `file://` page's have its opaque origin, `null`.
fn page_requests(netlog: &Path) -> Vec<String> {
    let log: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(netlog).unwrap()).expect("a network log");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].clone();
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["type"] == start_job
                && e["params"]["url"].is_string()
                && e["params"]["initiator"] != "not an origin"
        })
        .map(|e| e["params"]["url"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn page_of(env: &TestEnv) -> PathBuf {
    let page = env.work().parent().unwrap().join("report.html");
    let out = env.run(&["report", "-o", page.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    page
}

#[test]
fn a_browser_with_no_network_shows_the_steps_the_graph_and_markup_as_text() {
    let Some(chromium) = browser() else {
        return;
    };
    let env = env();
    injected(&env);
    let page = page_of(&env);
    let (dom, urls) = render(&chromium, &page, &["--dump-dom"]);
    let doc = Html::parse_document(&dom);
    // What the browser built: every step, with its outcome, and a node for each.
    assert_eq!(
        outcomes(&doc),
        pairs(&[
            ("writes", "passed"),
            ("talks", "passed"),
            ("fails", "failed")
        ])
    );
    assert_eq!(graph(&doc).0.len(), 3);
    let title = doc.select(&sel("title")).next().map(text).unwrap();
    assert_eq!(title, "medley run x: failed");
    // Nothing ran: no element came out of the run's text, even after the browser's parsing.
    assert_eq!(doc.select(&sel("script, img, b")).count(), 0, "{dom}");
    assert_eq!(
        text(
            step(&doc, "talks")
                .select(&sel("pre.prompt"))
                .next()
                .unwrap()
        ),
        NASTY
    );
    // No request of any kind: the page is the only thing the browser loaded...
    assert!(urls.is_empty(), "the page asked for {urls:?}");
    // ...where a page that does ask for something is seen doing so.
    let probe = env.work().parent().unwrap().join("probe.html");
    fs_err::write(
        &probe,
        "<!DOCTYPE html><img src=\"http://example.invalid/x.png\">",
    )
    .unwrap();
    let (_, urls) = render(&chromium, &probe, &["--dump-dom"]);
    assert_eq!(urls, ["http://example.invalid/x.png"]);
}

#[test]
fn a_screenshot_shows_the_graph_in_its_outcome_colours() {
    let Some(chromium) = browser() else {
        return;
    };
    let env = env();
    failing(&env);
    let page = page_of(&env);
    let shot = env.work().parent().unwrap().join("shot.png");
    let (_, urls) = render(
        &chromium,
        &page,
        &[&format!("--screenshot={}", shot.display())],
    );
    assert!(urls.is_empty(), "the page asked for {urls:?}");
    let decoder = png::Decoder::new(std::io::BufReader::new(fs_err::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let count = |rgb: [u8; 3]| {
        pixels
            .chunks(channels)
            .filter(|p| {
                p.iter()
                    .zip(rgb)
                    .all(|(&a, b)| (i16::from(a) - i16::from(b)).abs() <= 3)
            })
            .count()
    };
    // The nodes are drawn (200x66 each) in their outcome's colour: green for the one that
    // passed, red for the three that failed, grey for the one skipped.
    let (green, red, grey) = (
        count([0x1a, 0x7f, 0x37]),
        count([0xcf, 0x22, 0x2e]),
        count([0x6e, 0x77, 0x81]),
    );
    assert!(green > 5000, "green pixels: {green}");
    assert!(red > 3 * 5000, "red pixels: {red}");
    assert!(grey > 5000, "grey pixels: {grey}");
    // And not just colour: most of the page is the white background, the text dark on it.
    let white = count([0xff, 0xff, 0xff]);
    assert!(white > pixels.len() / channels / 3, "white pixels: {white}");
}

/// The README's CI recipe: its YAML parses, and every `medley` command in it exists, with
/// the flags it uses.
#[test]
fn the_readme_ci_recipe_parses_and_names_only_real_commands() {
    let readme = fs_err::read_to_string(crate::workspace_root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim_start().starts_with("```yaml") => current = Some(String::new()),
            Some(block) if line.trim_start().starts_with("```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    assert!(
        blocks.len() >= 2,
        "the README has a GitHub and a GitLab recipe"
    );
    let cli = medley_cli::command();
    let mut commands = Vec::new();
    for block in &blocks {
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(block)
            .unwrap_or_else(|e| panic!("the README's YAML does not parse: {e}\n{block}"));
        let mut scripts = Vec::new();
        collect_scripts(&yaml, &mut scripts);
        for script in scripts {
            for line in script.lines() {
                let words = shell_words(line);
                for (i, word) in words.iter().enumerate() {
                    if word == "medley" {
                        commands.push(words[i + 1..].to_vec());
                    }
                }
            }
        }
    }
    let names: Vec<&str> = commands
        .iter()
        .filter_map(|c| c.first().map(String::as_str))
        .collect();
    for needed in ["run", "report"] {
        assert!(names.contains(&needed), "the recipe runs `medley {needed}`");
    }
    let globals: Vec<String> = cli
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    for command in &commands {
        let name = &command[0];
        let sub = cli
            .find_subcommand(name)
            .unwrap_or_else(|| panic!("the recipe runs `medley {name}`, which does not exist"));
        let flags: Vec<String> = sub
            .get_arguments()
            .flat_map(|a| {
                a.get_long()
                    .map(|l| format!("--{l}"))
                    .into_iter()
                    .chain(a.get_short().map(|s| format!("-{s}")))
            })
            .chain(globals.iter().cloned())
            .collect();
        for word in command
            .iter()
            .skip(1)
            .take_while(|w| !["|", ">", ">>", "&&", ";"].contains(&w.as_str()))
        {
            if word.starts_with('-') {
                let flag = word.split('=').next().unwrap();
                assert!(
                    flags.iter().any(|f| f == flag),
                    "`medley {name}` has no `{flag}`"
                );
            }
        }
    }
    // And the recipe keeps the events, writes the summary and uploads the page.
    let all = blocks.concat();
    for needed in [
        "--output json",
        "--format markdown",
        "GITHUB_STEP_SUMMARY",
        "actions/upload-artifact",
        "artifacts:",
    ] {
        assert!(all.contains(needed), "the recipe has no `{needed}`");
    }
}

/// Every string under a `run:` or `script:` key (a YAML string or a list of them).
fn collect_scripts(value: &serde_yaml_ng::Value, out: &mut Vec<String>) {
    use serde_yaml_ng::Value;
    match value {
        Value::Mapping(map) => {
            for (key, value) in map {
                let key = key.as_str().unwrap_or("");
                match (key, value) {
                    ("run" | "script" | "before_script" | "after_script", Value::String(s)) => {
                        out.push(s.clone())
                    }
                    (
                        "run" | "script" | "before_script" | "after_script",
                        Value::Sequence(items),
                    ) => out.extend(items.iter().filter_map(|i| i.as_str().map(str::to_owned))),
                    _ => collect_scripts(value, out),
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| collect_scripts(i, out)),
        _ => {}
    }
}

/// A shell line's words, roughly (quotes removed; enough to find commands and flags).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[test]
fn a_killed_run_reports_what_it_got_to() {
    let env = env();
    let dir = env.work().parent().unwrap().to_path_buf();
    let pids = dir.join("pids");
    env.repo(&[(
        "missions/k.toml",
        &format!(
            "[steps.a]\nrun = \"echo a > a.txt\"\n\n[steps.b]\nneeds = [\"a\"]\n\
             run = \"echo $$ >> {}; sleep 300\"\n\n[steps.c]\nneeds = [\"b\"]\nrun = \"true\"\n",
            pids.display()
        ),
    )]);
    let mut child = env
        .medley()
        .args(["run", "k"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once `b` runs and the journal says so (its writer runs behind the steps).
    for _ in 0..6000 {
        if fs_err::read_to_string(&pids).is_ok_and(|p| p.ends_with('\n'))
            && env
                .journal()
                .iter()
                .any(|e| e["type"] == "step_started" && e["step"] == "b")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let pid = |n: u32| rustix::process::Pid::from_raw(n as i32).unwrap();
    rustix::process::kill_process(pid(child.id()), rustix::process::Signal::KILL).unwrap();
    child.wait().unwrap();
    // What the kill left running (the step's process group).
    for p in fs_err::read_to_string(&pids).unwrap().split_whitespace() {
        let _ = rustix::process::kill_process_group(
            pid(p.parse().unwrap()),
            rustix::process::Signal::KILL,
        );
    }
    let (_, doc) = html(&env);
    assert_eq!(
        doc.select(&sel("#summary"))
            .next()
            .unwrap()
            .attr("data-outcome"),
        Some("killed")
    );
    assert_eq!(
        outcomes(&doc),
        pairs(&[("a", "passed"), ("b", "unfinished"), ("c", "not run")])
    );
    let (nodes, edges) = graph(&doc);
    assert_eq!(nodes.len(), 3);
    assert_eq!(edges, pairs(&[("a", "b"), ("b", "c")]));
    let b = step(&doc, "b");
    assert_eq!(
        text(b.select(&sel("details.attempt summary")).next().unwrap()),
        "attempt 1 · command · did not finish"
    );
    let junit = env.run(&["report", "--format", "junit"]).stdout;
    let xml = roxmltree::Document::parse(&junit).unwrap();
    let case = |name: &str| {
        xml.descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
            .unwrap()
    };
    assert!(case("b").children().any(|n| n.has_tag_name("error")));
    assert!(case("c").children().any(|n| n.has_tag_name("skipped")));
}
