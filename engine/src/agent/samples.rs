//! Every captured sample of the real CLIs (`tests/samples/<case>.*`), parsed by its adapter.
//! [`SAMPLES`] is one table: a row per captured stream, with the adapter that parses it and
//! what the parse must yield (outcome, session, final message, error, tokens, cost, denial, tool
//! lines). [`STARTUPS`] holds the `kimi --version` samples that [`kimi::startup_problem`] reads,
//! and [`NOT_PARSED`] the samples nothing parses (documentation of the real CLI). A test checks
//! that every file in `tests/samples/` is in one of the three.
//!
//! Over 600 lines because it is one table: a row per sample, read side by side.

use std::collections::BTreeSet;

use super::AgentOutcome::{AgentError, AuthError, Unreachable, UsageLimit};
use super::claude::Claude;
use super::codex::Codex;
use super::gemini::Gemini;
use super::kimi::{self, Kimi};
use super::qwen::Qwen;
use super::{Adapter, AgentOutcome, AgentResult, Output, OutputKind, SessionTotals, parse_all};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/samples");

/// What a text must be.
#[derive(Debug, Clone, Copy)]
enum Text {
    /// Not checked.
    Any,
    /// Absent.
    No,
    /// Present, whatever it says.
    Some,
    Is(&'static str),
    StartsWith(&'static str),
    Contains(&'static str),
}

impl Text {
    fn check(self, what: &str, case: &str, text: Option<&str>) {
        let holds = match self {
            Text::Any => true,
            Text::No => text.is_none(),
            Text::Some => text.is_some(),
            Text::Is(want) => text == Some(want),
            Text::StartsWith(want) => text.is_some_and(|t| t.starts_with(want)),
            Text::Contains(want) => text.is_some_and(|t| t.contains(want)),
        };
        assert!(holds, "{case}: {what} is {text:?}, expected {self:?}");
    }
}

/// A value that is checked, or not.
#[derive(Debug, Clone, Copy)]
enum Expect<T> {
    Any,
    Is(T),
}

/// What the tool lines (outputs of kind `Tool`) must be.
#[derive(Debug, Clone, Copy)]
enum Tools {
    Any,
    /// The first tool line.
    First(Text),
    /// All of them, in order.
    Are(&'static [&'static str]),
}

/// How many outputs the stream yields.
#[derive(Debug, Clone, Copy)]
enum Lines {
    Any,
    AtLeastOne,
    Exactly(usize),
}

/// One captured stream and what its adapter makes of it.
struct Sample {
    case: &'static str,
    adapter: &'static dyn Adapter,
    /// What earlier attempts of the session reported (the resume samples).
    previous: Option<SessionTotals>,
    outcome: AgentOutcome,
    session: Text,
    message: Text,
    error: Text,
    /// Input and output tokens.
    tokens: Expect<(Option<u64>, Option<u64>)>,
    /// Input tokens alone (when only they are checked).
    input: Expect<Option<u64>>,
    cost: Expect<Option<f64>>,
    denial: Expect<bool>,
    tools: Tools,
    lines: Lines,
    /// Whether the parser waits for the network once it has read the whole stdout.
    waiting: Expect<bool>,
    /// What else the outputs must show.
    also: fn(&[Output]),
}

/// A row's defaults: nothing checked but the outcome.
const ROW: Sample = Sample {
    case: "",
    adapter: &Claude,
    previous: None,
    outcome: AgentOutcome::Ok,
    session: Text::Any,
    message: Text::Any,
    error: Text::Any,
    tokens: Expect::Any,
    input: Expect::Any,
    cost: Expect::Any,
    denial: Expect::Any,
    tools: Tools::Any,
    lines: Lines::Any,
    waiting: Expect::Any,
    also: |_| {},
};

/// The scripted model's usage for one call (tests/samples/README.md).
const ONE_CALL: Expect<(Option<u64>, Option<u64>)> = Expect::Is((Some(200), Some(40)));

/// Kimi Code reports no usage: unknown, never zero.
const KIMI: Sample = Sample {
    adapter: &Kimi,
    tokens: Expect::Is((None, None)),
    cost: Expect::Is(None),
    lines: Lines::AtLeastOne,
    ..ROW
};

const KIMI_SESSION: &str = "session_d9f2ee36-6d32-4057-8d10-d3617e3d19fa";

const SAMPLES: &[Sample] = &[
    // Claude Code 2.1.330.
    Sample {
        case: "claude-bypass",
        session: Text::Is("ab1bbae7-87b5-4d9f-b309-ec108fc37550"),
        message: Text::StartsWith("Created hello_claude.txt."),
        error: Text::No,
        tokens: ONE_CALL,
        cost: Expect::Is(Some(0.0016)),
        denial: Expect::Is(false),
        tools: Tools::First(Text::Is("Write hello_claude.txt")),
        also: |outputs| {
            assert!(outputs.iter().all(|o| o.session_id.is_some()));
            assert!(outputs.iter().any(|o| o.kind == OutputKind::Message));
            assert_eq!(outputs.last().map(|o| o.kind), Some(OutputKind::Usage));
        },
        ..ROW
    },
    // `total_cost_usd` after a resume covers the session: only this invocation is counted.
    Sample {
        case: "claude-resume",
        previous: Some(SessionTotals {
            input_tokens: 200,
            output_tokens: 40,
            cost_usd: 0.0016,
        }),
        session: Text::Is("ab1bbae7-87b5-4d9f-b309-ec108fc37550"),
        message: Text::StartsWith("Created second_claude.txt."),
        tokens: ONE_CALL,
        cost: Expect::Is(Some(0.0016)),
        ..ROW
    },
    Sample {
        case: "claude-shell",
        session: Text::Is("7e072f00-be70-42e0-83c0-da395fcea5a7"),
        message: Text::Is("Created hello_claude.txt. (tool said: (Bash completed with no output))"),
        tools: Tools::First(Text::StartsWith(
            "Bash: printf '%s\\n' medley-acceptance-ok > ",
        )),
        ..ROW
    },
    Sample {
        case: "claude-acceptedits",
        session: Text::Is("a9302da1-81c3-419b-aa11-1040bb272438"),
        tokens: ONE_CALL,
        denial: Expect::Is(false),
        ..ROW
    },
    // `--output-format json`: a single result line.
    Sample {
        case: "claude-json",
        session: Text::Is("bc8e6d89-1d3b-4008-ad37-21de5df5fbf5"),
        message: Text::StartsWith("Created hello_claude.txt."),
        tokens: ONE_CALL,
        cost: Expect::Is(Some(0.0016)),
        lines: Lines::Exactly(1),
        ..ROW
    },
    Sample {
        case: "claude-default-denied",
        session: Text::Is("da91e2bb-adfe-4ed4-b35c-fc4bdb9104fc"),
        denial: Expect::Is(true),
        also: |outputs| {
            assert!(
                outputs
                    .iter()
                    .any(|o| o.summary == "permission denied: Write")
            );
        },
        ..ROW
    },
    Sample {
        case: "claude-401",
        outcome: AuthError,
        session: Text::Is("598f8e1d-7d71-422f-b2bc-75877e06d167"),
        message: Text::No,
        error: Text::Is("Invalid API key · Fix external API key"),
        cost: Expect::Is(Some(0.0)),
        ..ROW
    },
    Sample {
        case: "claude-unreachable",
        outcome: Unreachable,
        session: Text::Is("5a508fc1-62b0-48a1-bc45-85c0c83c50af"),
        message: Text::No,
        error: Text::Contains("ECONNREFUSED"),
        ..ROW
    },
    // Codex CLI 0.169.0: no cost.
    Sample {
        case: "codex-patch",
        adapter: &Codex,
        session: Text::Is("01a20c2d-fabc-7d82-a6c4-e9e416259269"),
        message: Text::StartsWith("Created hello_codex.txt."),
        tokens: ONE_CALL,
        cost: Expect::Is(None),
        denial: Expect::Is(false),
        tools: Tools::First(Text::Is("apply_patch hello_codex.txt (add)")),
        also: |outputs| {
            assert_eq!(
                outputs[0].session_id.as_deref(),
                Some("01a20c2d-fabc-7d82-a6c4-e9e416259269")
            );
        },
        ..ROW
    },
    // `usage` after a resume covers the thread: earlier attempts' tokens are subtracted.
    Sample {
        case: "codex-resume",
        adapter: &Codex,
        previous: Some(SessionTotals {
            input_tokens: 200,
            output_tokens: 40,
            cost_usd: 0.0,
        }),
        session: Text::Is("01a20c2d-fabc-7d82-a6c4-e9e416259269"),
        message: Text::StartsWith("Created second_codex.txt."),
        tokens: ONE_CALL,
        cost: Expect::Is(None),
        ..ROW
    },
    Sample {
        case: "codex-shell",
        adapter: &Codex,
        session: Text::Some,
        tokens: ONE_CALL,
        tools: Tools::Are(CODEX_SHELL),
        ..ROW
    },
    Sample {
        case: "codex-yolo-cflags",
        adapter: &Codex,
        session: Text::Some,
        tokens: ONE_CALL,
        tools: Tools::Are(CODEX_SHELL),
        ..ROW
    },
    Sample {
        case: "codex-readonly-denied",
        adapter: &Codex,
        session: Text::Is("01a20c2e-01d9-7f23-b336-444b2733c243"),
        tokens: ONE_CALL,
        denial: Expect::Is(true),
        ..ROW
    },
    Sample {
        case: "codex-401",
        adapter: &Codex,
        outcome: AuthError,
        session: Text::Is("01a20c2e-0652-7e33-b7b4-9891125db8f0"),
        message: Text::No,
        error: Text::StartsWith("unexpected status 401 Unauthorized"),
        input: Expect::Is(None),
        ..ROW
    },
    Sample {
        case: "codex-unreachable",
        adapter: &Codex,
        outcome: Unreachable,
        session: Text::Is("01a20c2e-0855-7852-85d3-f1beaa023d47"),
        message: Text::No,
        error: Text::StartsWith("Reconnecting... waiting for network"),
        waiting: Expect::Is(true),
        ..ROW
    },
    // Gemini CLI 0.61.0: no cost.
    Sample {
        case: "gemini-yolo",
        adapter: &Gemini,
        session: Text::Is("e1aef7d2-e925-44e4-aa1d-47e2e70911a9"),
        message: Text::Is("Created hello_gemini.txt."),
        // Three model calls (a router call first): 300 / 60.
        tokens: Expect::Is((Some(300), Some(60))),
        cost: Expect::Is(None),
        denial: Expect::Is(false),
        tools: Tools::First(Text::Is("write_file hello_gemini.txt")),
        also: |outputs| {
            assert_eq!(
                outputs[0].session_id.as_deref(),
                Some("e1aef7d2-e925-44e4-aa1d-47e2e70911a9")
            );
        },
        ..ROW
    },
    Sample {
        case: "gemini-model",
        adapter: &Gemini,
        session: Text::Is("96bbb174-ed40-41b7-87a6-2e1eac187db1"),
        message: Text::Is("Created hello_gemini.txt."),
        tokens: ONE_CALL,
        cost: Expect::Is(None),
        ..ROW
    },
    Sample {
        case: "gemini-401",
        adapter: &Gemini,
        outcome: AuthError,
        session: Text::Is("bc16971f-056b-43f6-95bd-d2beb745653c"),
        message: Text::No,
        error: Text::Contains("UNAUTHENTICATED"),
        ..ROW
    },
    Sample {
        case: "gemini-unreachable",
        adapter: &Gemini,
        outcome: Unreachable,
        session: Text::Is("8f91c923-72d5-4142-984c-aa42e48ffe41"),
        message: Text::No,
        error: Text::Is("[API Error: exception TypeError: fetch failed sending request]"),
        ..ROW
    },
    // Qwen Code 0.24.4: no cost.
    Sample {
        case: "qwen-yolo",
        adapter: &Qwen,
        session: Text::Is("1fa1add8-d0cb-492a-aa8b-195d24eded93"),
        message: Text::Is("Created hello_qwen.txt."),
        tokens: ONE_CALL,
        cost: Expect::Is(None),
        denial: Expect::Is(false),
        tools: Tools::First(Text::Is("write_file hello_qwen.txt")),
        also: |outputs| {
            assert!(outputs.iter().all(|o| o.session_id.is_some()));
            assert!(outputs.iter().all(|o| o.raw["type"] != "stream_event"));
        },
        ..ROW
    },
    Sample {
        case: "qwen-401",
        adapter: &Qwen,
        outcome: AuthError,
        session: Text::Is("f1d1efa8-b24e-4739-82de-742b2acd65a2"),
        message: Text::No,
        error: Text::Is("[API Error: 401 Incorrect API key provided: dummy. (mockllm)]"),
        ..ROW
    },
    Sample {
        case: "qwen-unreachable",
        adapter: &Qwen,
        outcome: Unreachable,
        session: Text::Is("f3cc8b3d-c396-492f-88b9-e76ece5aa180"),
        message: Text::No,
        also: |outputs| assert!(outputs.iter().any(|o| o.kind == OutputKind::Error)),
        ..ROW
    },
    // Kimi Code 2.1.0: errors classified by its own codes; the `See log:` path is never part
    // of what is said (checked for every row).
    Sample {
        case: "kimi-ok",
        session: Text::Is(KIMI_SESSION),
        message: Text::Is("Created hello_kimi.txt."),
        // Named as the real CLI names its tool.
        tools: Tools::Are(&["Write <RUN>/kimi-ok/repo/hello_kimi.txt"]),
        ..KIMI
    },
    Sample {
        case: "kimi-resume",
        session: Text::Is(KIMI_SESSION),
        message: Text::Is("Created second_kimi.txt."),
        ..KIMI
    },
    Sample {
        case: "kimi-env",
        message: Text::Is("Created hello_kimi.txt."),
        ..KIMI
    },
    Sample {
        case: "kimi-401",
        outcome: AuthError,
        message: Text::No,
        error: Text::Contains("provider.auth_error: 401 Incorrect API key"),
        ..KIMI
    },
    // A rate-limit retry is not a network wait.
    Sample {
        case: "kimi-429",
        outcome: UsageLimit,
        message: Text::No,
        error: Text::Contains("provider.rate_limit: 429"),
        waiting: Expect::Is(false),
        ..KIMI
    },
    Sample {
        case: "kimi-unreachable",
        outcome: Unreachable,
        message: Text::No,
        error: Text::Contains("provider.connection_error"),
        ..KIMI
    },
    Sample {
        case: "kimi-unreachable-defaultretries",
        outcome: Unreachable,
        message: Text::No,
        error: Text::Contains("provider.connection_error"),
        ..KIMI
    },
    Sample {
        case: "kimi-nokey",
        outcome: AuthError,
        message: Text::No,
        error: Text::Contains("KIMI_MODEL_API_KEY"),
        ..KIMI
    },
    Sample {
        case: "kimi-noconfig",
        outcome: AuthError,
        message: Text::No,
        error: Text::Contains("KIMI_MODEL_NAME"),
        ..KIMI
    },
    Sample {
        case: "kimi-model-bad",
        outcome: AuthError,
        message: Text::No,
        error: Text::Contains("not a model id"),
        ..KIMI
    },
    Sample {
        case: "kimi-env-m",
        outcome: AuthError,
        message: Text::No,
        error: Text::Contains("leave `model` out"),
        ..KIMI
    },
    Sample {
        case: "kimi-resume-unknown",
        outcome: AgentError,
        message: Text::No,
        error: Text::Contains("not found"),
        ..KIMI
    },
    Sample {
        case: "kimi-resume-othercwd",
        outcome: AgentError,
        message: Text::No,
        error: Text::Contains("different directory"),
        ..KIMI
    },
    // The legacy Python kimi-cli: a stub whose notice is never taken for a result, and not an
    // agent error to retry (it moves on at once, saying what to install).
    Sample {
        case: "kimi-legacy-print",
        adapter: &Kimi,
        outcome: AuthError,
        error: Text::Contains("@moonshot-ai/kimi-code"),
        ..ROW
    },
];

/// The shell call of the codex shell samples, started then completed.
const CODEX_SHELL: &[&str] = &[
    "shell: printf '%s\\n' medley-acceptance-ok > hello_codex.txt",
    "shell: printf '%s\\n' medley-acceptance-ok > hello_codex.txt (exit 0)",
];

/// `kimi --version` samples, as [`kimi::startup_problem`] reads them (it succeeded; `node
/// --version` said `v22.22.0`), and what the problem must say (`None`: it can start).
const STARTUPS: &[(&str, Option<&[&str]>)] = &[
    ("kimi-version", None),
    (
        "kimi-legacy-version",
        Some(&[
            "legacy Python kimi-cli 1.52.0",
            "npm install -g @moonshot-ai/kimi-code",
        ]),
    ),
];

/// Samples no adapter parses: what the real CLI documents of itself.
const NOT_PARSED: &[&str] = &["kimi-help"];

fn read(case: &str, ext: &str) -> String {
    fs_err::read_to_string(format!("{DIR}/{case}.{ext}")).unwrap_or_else(|e| panic!("{e}"))
}

/// The sample's stdout: a JSONL stream, or text where the CLI printed no JSON.
fn stdout(case: &str) -> String {
    fs_err::read_to_string(format!("{DIR}/{case}.stdout.jsonl"))
        .unwrap_or_else(|_| read(case, "stdout.txt"))
}

/// Parses a captured sample, `tests/samples/<case>.*`, with `adapter`.
fn parse_sample(
    adapter: &dyn Adapter,
    case: &str,
    previous: Option<SessionTotals>,
) -> (Vec<Output>, AgentResult) {
    let exit_code: i32 = read(case, "exitcode").trim().parse().expect("an exit code");
    parse_all(
        adapter,
        &stdout(case),
        &read(case, "stderr.txt"),
        Some(exit_code),
        previous,
    )
}

fn check(sample: &Sample) {
    let case = sample.case;
    let (outputs, result) = parse_sample(sample.adapter, case, sample.previous);
    assert_eq!(result.outcome, Some(sample.outcome), "{case}: {result:?}");
    sample
        .session
        .check("session id", case, result.session_id.as_deref());
    sample
        .message
        .check("final message", case, result.final_message.as_deref());
    sample.error.check("error", case, result.error.as_deref());
    let said = result.error.as_deref().unwrap_or("");
    assert!(!said.contains("See log"), "{case}: {said}");
    if let Expect::Is(tokens) = sample.tokens {
        let got = (result.input_tokens, result.output_tokens);
        assert_eq!(got, tokens, "{case}: tokens");
    }
    if let Expect::Is(input) = sample.input {
        assert_eq!(result.input_tokens, input, "{case}: input tokens");
    }
    match (sample.cost, result.cost_usd) {
        (Expect::Any, _) | (Expect::Is(None), None) => {}
        (Expect::Is(Some(want)), Some(got)) => {
            assert!(
                (got - want).abs() < 1e-9,
                "{case}: cost {got}, expected {want}"
            );
        }
        (Expect::Is(want), got) => panic!("{case}: cost {got:?}, expected {want:?}"),
    }
    if let Expect::Is(denial) = sample.denial {
        assert_eq!(result.denial, denial, "{case}: denial");
    }
    let tools: Vec<&str> = outputs
        .iter()
        .filter(|o| o.kind == OutputKind::Tool)
        .map(|o| o.summary.as_str())
        .collect();
    match sample.tools {
        Tools::Any => {}
        Tools::First(text) => text.check("first tool", case, tools.first().copied()),
        Tools::Are(want) => assert_eq!(tools, want, "{case}: tools"),
    }
    match sample.lines {
        Lines::Any => {}
        Lines::AtLeastOne => assert!(!outputs.is_empty(), "{case}: no outputs"),
        Lines::Exactly(n) => assert_eq!(outputs.len(), n, "{case}: {outputs:?}"),
    }
    if let Expect::Is(waiting) = sample.waiting {
        let mut parser = sample.adapter.parser(sample.previous);
        for line in stdout(case).lines() {
            parser.stdout_line(line);
        }
        assert_eq!(
            parser.waiting_for_network(),
            waiting,
            "{case}: network wait"
        );
    }
    (sample.also)(&outputs);
}

#[test]
fn every_captured_stream_parses_as_its_row_says() {
    for sample in SAMPLES {
        check(sample);
    }
}

#[test]
fn every_sample_file_is_in_a_table() {
    let listed: BTreeSet<&str> = SAMPLES
        .iter()
        .map(|s| s.case)
        .chain(STARTUPS.iter().map(|(case, _)| *case))
        .chain(NOT_PARSED.iter().copied())
        .collect();
    let mut found = BTreeSet::new();
    for entry in fs_err::read_dir(DIR).unwrap_or_else(|e| panic!("{e}")) {
        let name = entry
            .unwrap_or_else(|e| panic!("{e}"))
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some((case, _)) = name.split_once('.')
            && name != "README.md"
        {
            found.insert(case.to_owned());
        }
    }
    let found: BTreeSet<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(
        found, listed,
        "a sample file without a row, or a row without one"
    );
}

#[test]
fn a_kimi_connection_retry_is_waiting_for_the_network() {
    let stdout = stdout("kimi-unreachable-defaultretries");
    let mut parser = Kimi.parser(None);
    let mut lines = stdout.lines();
    parser.stdout_line(lines.next().expect("a first line"));
    assert!(!parser.waiting_for_network());
    parser.stdout_line(lines.next().expect("a second line"));
    assert!(parser.waiting_for_network());
    // Stopped by medley while it retries: unreachable, and it says why.
    let result = parser.finish(None);
    assert_eq!(result.outcome, Some(AgentOutcome::Unreachable));
    assert!(
        result
            .error
            .is_some_and(|e| e.contains("Connection error."))
    );
}

#[test]
fn kimi_startup_problems_name_the_legacy_stub_and_an_old_node() {
    let path = std::path::Path::new("/usr/bin/kimi");
    for (case, says) in STARTUPS {
        let problem =
            kimi::startup_problem(path, true, &read(case, "stdout.txt"), "", Some("v22.22.0"));
        match (says, problem) {
            (None, None) => {}
            (Some(words), Some(problem)) => {
                for word in *words {
                    assert!(problem.contains(word), "{case}: {problem}");
                }
            }
            (says, problem) => panic!("{case}: {problem:?}, expected {says:?}"),
        }
    }
    let syntax = "file:///x/kimi.js:1\nSyntaxError: The requested module 'node:zlib' does not provide an export named 'zstdCompressSync'\n";
    let node = kimi::startup_problem(path, false, "", syntax, Some("v20.20.2\n"))
        .expect("an old node is a problem");
    assert!(node.contains("needs Node 22.19 or newer"), "{node}");
    assert!(node.contains("20.20.2"), "{node}");
    let other = kimi::startup_problem(path, false, "", "boom\n", Some("v22.22.0"))
        .expect("a failed --version is a problem");
    assert!(other.contains("boom"), "{other}");
}
