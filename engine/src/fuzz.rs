//! Property-based fuzzing of `load` + `compile`: whatever the mission text, they return a plan
//! or errors (whose report renders), and never panic.
//!
//! Bounded for CI (proptest's default of 256 cases per property, a few seconds); a long run:
//! `PROPTEST_CASES=100000 cargo test -p medley-engine --release fuzz`.

use std::path::Path;

use proptest::prelude::{Just, ProptestConfig, Strategy, any, prop_oneof, proptest};
use proptest::sample::select;

use crate::mission::Mission;
use crate::plan::{PlanOptions, compile};

/// Parses and compiles `source`, rendering any diagnostic, as `validate` does.
fn check(source: String, sets: Vec<(String, String)>) {
    let mission = match Mission::parse(Path::new("fuzz.toml"), source) {
        Ok(mission) => mission,
        Err(errors) => {
            render(&errors);
            return;
        }
    };
    if let Err(error) = compile(
        &mission,
        &PlanOptions {
            sets,
            ..PlanOptions::default()
        },
    ) {
        match error {
            crate::plan::compile::CompileError::Mission(errors) => render(errors.as_ref()),
            other => {
                let _ = other.to_string();
            }
        }
    }
}

fn render(diagnostic: &dyn miette::Diagnostic) {
    let mut out = String::new();
    let _ = miette::NarratableReportHandler::new().render_report(&mut out, diagnostic);
}

/// Real missions to mutate.
const SEEDS: &[&str] = &[
    include_str!("../../missions/hello.toml"),
    include_str!("../../missions/refactor.toml"),
    include_str!("../../missions/review.toml"),
    include_str!("../../tests/corpus/valid/chain.toml"),
    include_str!("../../tests/corpus/valid/matrix-two-axes.toml"),
    include_str!("../../tests/corpus/valid/profiles.toml"),
];

const KEYS: &[&str] = &[
    "name",
    "description",
    "max_parallel",
    "max_steps",
    "gate",
    "setup",
    "budget_usd",
    "prompt",
    "run",
    "needs",
    "if",
    "matrix",
    "agent",
    "attempts",
    "timeout",
    "inputs",
    "cache",
    "strategy",
    "retry_prompt",
    "runtime",
    "model",
    "args",
    "env",
    "price",
    "program",
    "input_per_mtok",
    "output_per_mtok",
    "x",
    "a-b",
];

const VALUES: &[&str] = &[
    "\"\"",
    "\"a\"",
    "0",
    "1",
    "-1",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "-0.0",
    "nan",
    "inf",
    "true",
    "false",
    "[]",
    "[\"a\", \"b\"]",
    "[1, [2]]",
    "{}",
    "{ a = [1, 2], b = [\"x\", \"y\"] }",
    "{ a = [] }",
    "{ a = 1 }",
    "\"{{ vars.x }}\"",
    "\"{{ steps.a.output }}\"",
    "\"{{ steps['a-b'].diff | shell_args }}\"",
    "\"{% if %}\"",
    "\"{{\"",
    "\"}}\"",
    "\"{% for x in y %}\"",
    "\"{{ x | safe }}\"",
    "\"0s\"",
    "\"1h30m\"",
    "\"99999999999999999999h\"",
    "\"18446744073709551615ms\"",
    "\"claude\"",
    "\"codex\"",
    "[\"claude\", \"codex\"]",
    "\"echo \\\"{{ matrix.x }}\\\"\"",
    "\"cat <<'E'\\n{{ vars.x }}\\nE\"",
    "\"$(( {{ vars.x }} ))\"",
    "\"\\u0000\"",
    "\"a\\nb\"",
    "'''x'''",
    "\"\"\"\nmulti\n\"\"\"",
    "1979-05-27T07:32:00Z",
];

const TABLES: &[&str] = &[
    "",
    "[vars]",
    "[defaults]",
    "[agents.claude]",
    "[agents.mine]",
    "[agents.mine.price]",
    "[steps.a]",
    "[steps.a-b]",
    "[steps.b]",
    "[steps.\"c d\"]",
    "[[steps]]",
    "[steps.a.matrix]",
];

/// TOML of roughly the mission's shape: known tables, keys and awkward values.
fn shaped() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (
            select(TABLES),
            proptest::collection::vec((select(KEYS), select(VALUES)), 0..6),
        ),
        0..6,
    )
    .prop_map(|tables| {
        let mut out = String::new();
        for (table, pairs) in tables {
            out.push_str(table);
            out.push('\n');
            for (key, value) in pairs {
                out.push_str(&format!("{key} = {value}\n"));
            }
        }
        out
    })
}

/// A real mission with a piece cut out, replaced or repeated.
fn mutated() -> impl Strategy<Value = String> {
    (
        select(SEEDS),
        any::<proptest::sample::Index>(),
        any::<proptest::sample::Index>(),
        prop_oneof![
            Just(String::new()),
            select(VALUES).prop_map(str::to_owned),
            select(KEYS).prop_map(|k| format!("\n{k} = ")),
            select(TABLES).prop_map(|t| format!("\n{t}\n")),
            select(
                &[
                    "{{", "}}", "{%", "%}", "\"", "'", "[", "]", "\n", "\\", "\u{0}", "é"
                ][..]
            )
            .prop_map(str::to_owned),
            ".{0,12}",
        ],
        0usize..3,
    )
        .prop_map(|(seed, a, b, insert, repeat)| {
            let chars: Vec<char> = seed.chars().collect();
            let (mut a, mut b) = (a.index(chars.len() + 1), b.index(chars.len() + 1));
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            let b = b.min(a + 40);
            let mut out: String = chars[..a].iter().collect();
            for _ in 0..repeat {
                out.extend(&chars[a..b]);
            }
            out.push_str(&insert);
            out.extend(&chars[b..]);
            out
        })
}

/// Deeply nested arrays, tables, templates and expressions.
fn deep() -> impl Strategy<Value = String> {
    (0usize..4, 1usize..3000).prop_map(|(kind, depth)| match kind {
        0 => format!("[vars]\nx = {}{}\n", "[".repeat(depth), "]".repeat(depth)),
        1 => format!(
            "[vars]\nx = {}1{}\n",
            "{ a = ".repeat(depth.min(500)),
            " }".repeat(depth.min(500))
        ),
        2 => format!(
            "[steps.a]\nrun = \"echo {{{{ {}vars.x{} }}}}\"\n[vars]\nx = 1\n",
            "(".repeat(depth),
            ")".repeat(depth)
        ),
        _ => format!(
            "[steps.a]\nrun = \"{}echo{}\"\n",
            "{% if true %}".repeat(depth.min(1000)),
            "{% endif %}".repeat(depth.min(1000))
        ),
    })
}

/// Large values: long strings, many steps, wide matrices, long needs chains.
fn huge() -> impl Strategy<Value = String> {
    (0usize..4, 1usize..1200).prop_map(|(kind, n)| huge_one(kind, n))
}

fn huge_one(kind: usize, n: usize) -> String {
    match kind {
        0 => format!("[steps.a]\nrun = \"echo {}\"\n", "x".repeat(n * 50)),
        1 => (0..n)
            .map(|i| format!("[steps.s{i}]\nrun = \"true\"\n"))
            .collect(),
        2 => format!(
            "[steps.m]\nmatrix = {{ a = [{}], b = [{}] }}\nrun = \"echo {{{{ matrix.a }}}}\"\n",
            (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(","),
            (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        ),
        _ => (0..n.min(60))
            .map(|i| match i {
                0 => "[steps.s0]\nrun = \"true\"\n".to_owned(),
                _ => format!(
                    "[steps.s{i}]\nneeds = [\"s{}\"]\nrun = \"echo {{{{ steps.s{}.output }}}}\"\n",
                    i - 1,
                    i - 1
                ),
            })
            .collect(),
    }
}

fn sets() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(
        (
            select(&["x", "name", "module", "nope", ""][..]).prop_map(str::to_owned),
            select(VALUES).prop_map(str::to_owned),
        ),
        0..2,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check(String::from_utf8_lossy(&bytes).into_owned(), Vec::new());
    }

    #[test]
    fn random_mission_shaped_toml_never_panics(source in shaped(), sets in sets()) {
        check(source, sets);
    }

    #[test]
    fn mutated_missions_never_panic(source in mutated(), sets in sets()) {
        check(source, sets);
    }

    #[test]
    fn deep_nesting_never_panics(source in deep()) {
        check(source, Vec::new());
    }
}

proptest! {
    // Each case builds a large mission: fewer of them, unless PROPTEST_CASES asks.
    #![proptest_config(ProptestConfig { cases: cases_or(32), ..ProptestConfig::default() })]

    #[test]
    fn huge_values_never_panic(source in huge()) {
        check(source, Vec::new());
    }
}

fn cases_or(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}
