//! The injection corpus: payloads that would run something if the shell read them as syntax,
//! placed in every quoting context a template can put them, and random commands, each run
//! through real `sh` and `bash`; plus how text templates and lists render.

use minijinja::ErrorKind;
use minijinja::value::Value;

use super::{Flavor, ShellCommand, Templates, file_function, map, shell_problems};

fn templates() -> Templates {
    Templates::new()
}

/// What `sh` sees: each rendered word printed on its own line.
fn sh_words(command: &ShellCommand) -> Vec<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for w in {}; do printf '%s\\n' \"$w\"; done",
            command.command
        ))
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn shell_values_reach_the_shell_as_single_words() {
    let mut t = templates();
    t.add("a", Flavor::Shell, "{{ x }} {{ n }} {{ xs | shell_args }}")
        .unwrap();
    let nasty = "$(touch pwned); echo 'hi' \"q\" `id` ; * && \\";
    let ctx = map([
        ("x", Value::from(nasty)),
        ("n", Value::from(3)),
        ("xs", Value::from(vec!["a b", "c;d", ""])),
    ]);
    let rendered = t.render_shell("a", &ctx).unwrap();
    assert_eq!(sh_words(&rendered), vec![nasty, "3", "a b", "c;d", ""]);
    assert_eq!(
        rendered.display,
        format!("{} 3 'a b' 'c;d' ''", shlex::try_quote(nasty).unwrap())
    );
}

/// Values that would run something, or lose bytes, if the shell read them as syntax.
const PAYLOADS: &[&str] = &[
    "$(touch pwned)",
    "`touch pwned`",
    "'; touch pwned; '",
    "\"; touch pwned; \"",
    "'\"$(touch pwned)\"'",
    "\"'`touch pwned`'\"",
    "\\",
    "\\\\",
    "\\\"; touch pwned; #",
    "a\nb",
    "\n",
    "\ntouch pwned\n",
    "EOF\ntouch pwned\nEOF",
    "EOF",
    "$HOME ${HOME} $0 $@ $*",
    "*",
    "~",
    "-n",
    ";touch pwned",
    "&& touch pwned",
    "|| touch pwned",
    "| touch pwned",
    "& touch pwned &",
    "> pwned",
    "< /dev/null",
    "}",
    ")",
    ")) $(( 1 + 1 ))",
    "$((1+1))",
    " leading and trailing ",
    "\ttab",
    "ünïcödé ✓",
    "",
    "%s %d",
    "!",
    "#",
    "# comment",
    "${x:-$(touch pwned)}",
    "a[$(touch pwned)]",
    "$'\\x41'",
];

/// A template placing `x` in one context, the program that writes what arrives in `out`,
/// and what `out` should hold for value `v`.
struct Case {
    template: &'static str,
    expect: fn(&str) -> String,
}

fn exact(v: &str) -> String {
    v.to_owned()
}
fn line(v: &str) -> String {
    format!("{v}\n")
}
fn angled(v: &str) -> String {
    format!("<{v}>")
}
fn double_quoted(v: &str) -> String {
    format!("\"{v}\"")
}
fn nothing(_: &str) -> String {
    String::new()
}
fn twice(v: &str) -> String {
    format!("{v}{v}")
}

const CASES: &[Case] = &[
    Case {
        template: "printf '%s' {{ x }} > out",
        expect: exact,
    },
    Case {
        template: "printf '%s' a{{ x }}b > out",
        expect: |v| format!("a{v}b"),
    },
    Case {
        template: "printf '%s' \"{{ x }}\" > out",
        expect: exact,
    },
    Case {
        template: "printf '%s' \"<{{ x }}>\" > out",
        expect: angled,
    },
    Case {
        template: "h=hi; printf '%s' \"$h{{ x }}\" > out",
        expect: |v| format!("hi{v}"),
    },
    Case {
        template: "printf '%s' '{{ x }}' > out",
        expect: exact,
    },
    Case {
        template: "printf '%s' '<{{ x }}>' > out",
        expect: angled,
    },
    Case {
        template: "printf '%s' '\"{{ x }}\"' > out",
        expect: double_quoted,
    },
    Case {
        template: "printf '%s' \"'\"{{ x }}\"'\" | sed \"s/^'//; s/'$//\" > /dev/null; printf '%s' {{ x }} > out",
        expect: exact,
    },
    Case {
        template: "cat > out <<EOF\n{{ x }}\nEOF\n",
        expect: line,
    },
    Case {
        template: "cat > out <<EOF\n<{{ x }}>\nEOF\n",
        expect: |v| format!("<{v}>\n"),
    },
    Case {
        template: "cat > out <<-EOF\n\t{{ x }}\n\tEOF\n",
        expect: line,
    },
    Case {
        template: "cat > out <<EOF\n{% for v in [x, x] %}{{ v }}\n{% endfor %}EOF\n",
        expect: |v| format!("{v}\n{v}\n"),
    },
    Case {
        template: "cat > out <<EOF\n{% if x %}y{% endif %}{{ x }}\nEOF\n",
        expect: |v| {
            if v.is_empty() {
                "\n".to_owned()
            } else {
                format!("y{v}\n")
            }
        },
    },
    Case {
        template: "cat > out <<EOF\n{% if x %}EOF{% else %}E{% endif %}{{ x }}\nEOF\n",
        expect: |v| {
            if v.is_empty() {
                "E\n".to_owned()
            } else {
                format!("EOF{v}\n")
            }
        },
    },
    Case {
        template: "cat <<A > /dev/null; cat > out <<B\nfirst\nA\n{{ x }}\nB\n",
        expect: line,
    },
    Case {
        template: ": $(printf '%s' {{ x }} > out)",
        expect: exact,
    },
    Case {
        template: ": $(printf '%s' \"{{ x }}\" > out)",
        expect: exact,
    },
    Case {
        template: ": \"$(printf '%s' \"{{ x }}\" > out)\"",
        expect: exact,
    },
    Case {
        template: ": \"$(printf '%s' '{{ x }}' > out)\"",
        expect: exact,
    },
    Case {
        template: ": \"$( (printf '%s' {{ x }}) > out)\"",
        expect: exact,
    },
    Case {
        template: ": \"$(cat > out <<EOF\n{{ x }}\nEOF\n)\"",
        expect: line,
    },
    Case {
        template: ": `printf '%s' {{ x }} > out`",
        expect: exact,
    },
    Case {
        template: ": `printf '%s' \"{{ x }}\" > out`",
        expect: exact,
    },
    Case {
        template: ": `printf '%s' '{{ x }}' > out`",
        expect: exact,
    },
    Case {
        template: "v={{ x }}; printf '%s' \"$v\" > out",
        expect: exact,
    },
    Case {
        template: "v=\"{{ x }}\" sh -c 'printf \"%s\" \"$v\"' > out",
        expect: exact,
    },
    Case {
        template: "case {{ x }} in *) printf '%s' {{ x }} > out;; esac",
        expect: exact,
    },
    Case {
        template: "for w in {{ x }}; do printf '%s' \"$w\" > out; done",
        expect: exact,
    },
    Case {
        template: "if test -n \"{{ x }}\" || true; then printf '%s' {{ x }} > out; fi",
        expect: exact,
    },
    Case {
        template: "{ printf '%s' {{ x }}; } > out",
        expect: exact,
    },
    Case {
        template: "(printf '%s' {{ x }}) > out",
        expect: exact,
    },
    Case {
        template: "printf '%s' {{ x }}{{ x }} > out",
        expect: twice,
    },
    Case {
        template: "printf '%s' \"{{ x }}\"'{{ x }}' > out",
        expect: twice,
    },
    Case {
        template: "true # {{ x }}\n: > out",
        expect: nothing,
    },
    Case {
        template: "true # it's {{ x }}\n: > out",
        expect: nothing,
    },
    Case {
        template: "{% if x %}printf '%s' \"{{ x }}\"{% else %}printf '%s' \"{{ x }}\"{% endif %} > out",
        expect: exact,
    },
    Case {
        template: "{% for v in [x, x] %}printf '%s' '{{ v }}' >> out; {% endfor %}",
        expect: twice,
    },
    Case {
        template: "printf '%s' \"{% if x %}{{ x }}{% endif %}\" > out",
        expect: exact,
    },
    Case {
        template: "printf '%s' {{ x | shell_args }} > out",
        expect: exact,
    },
    Case {
        template: "printf '%s' {{ [x] | shell_args }} > out",
        expect: exact,
    },
    Case {
        template: "printf '%s' \"{{ x ~ '' }}\" > out",
        expect: exact,
    },
];

fn shells() -> Vec<&'static str> {
    ["sh", "bash"]
        .into_iter()
        .filter(|sh| {
            std::process::Command::new(sh)
                .args(["-c", "true"])
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect()
}

#[test]
fn no_payload_runs_in_any_context_and_each_arrives_byte_exact() {
    let shells = shells();
    assert!(shells.contains(&"sh"));
    let mut t = templates();
    for (n, case) in CASES.iter().enumerate() {
        let problems = shell_problems(case.template);
        assert!(problems.is_empty(), "{}: {problems:?}", case.template);
        t.add(&format!("c{n}"), Flavor::Shell, case.template)
            .unwrap();
    }
    // Four at a time: each case and payload is a process per shell.
    let t = &t;
    let shells = &shells;
    std::thread::scope(|scope| {
        for lane in 0..4 {
            scope.spawn(move || {
                for (n, case) in CASES.iter().enumerate().skip(lane).step_by(4) {
                    for payload in PAYLOADS {
                        run_case(t, n, case, payload, shells);
                    }
                }
            });
        }
    });
}

fn run_case(t: &Templates, n: usize, case: &Case, payload: &str, shells: &[&str]) {
    let ctx = map([("x", Value::from(payload))]);
    let rendered = t.render_shell(&format!("c{n}"), &ctx).unwrap();
    for sh in shells {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(sh)
            .arg("-c")
            .arg(&rendered.command)
            .envs(rendered.env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        let what = format!("{sh}: {:?} with {payload:?}", case.template);
        assert!(
            !dir.path().join("pwned").exists(),
            "ran the payload: {what}"
        );
        assert!(status.success(), "failed: {what}: {}", rendered.command);
        let out = fs_err::read(dir.path().join("out")).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&out),
            (case.expect)(payload),
            "{what}: {}",
            rendered.command
        );
    }
}

#[test]
fn the_display_is_the_same_command_with_the_values_written_in() {
    let mut t = templates();
    let template =
        "printf '%s' {{ x }} \"{{ x }}\" '{{ x }}' > out; cat >> out <<EOF\n{{ x }}\nEOF\n";
    t.add("a", Flavor::Shell, template).unwrap();
    for payload in PAYLOADS.iter().filter(|p| !p.contains("EOF")) {
        let ctx = map([("x", Value::from(*payload))]);
        let rendered = t.render_shell("a", &ctx).unwrap();
        let run = |command: &str, env: &[(String, String)]| {
            let dir = tempfile::tempdir().unwrap();
            std::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir(dir.path())
                .status()
                .unwrap();
            assert!(!dir.path().join("pwned").exists());
            fs_err::read(dir.path().join("out")).unwrap_or_default()
        };
        assert_eq!(
            run(&rendered.display, &[]),
            run(&rendered.command, &rendered.env),
            "{payload:?}: {}",
            rendered.display
        );
    }
}

#[test]
fn text_values_are_plain_and_undefined_is_an_error() {
    let mut t = templates();
    t.add("a", Flavor::Text, "Read {{ x }} {{ file('a.txt') }}")
        .unwrap();
    let ctx = map([
        ("x", Value::from("$HOME 'q'")),
        ("file", file_function(|p| Ok(format!("<{p}>")))),
    ]);
    assert_eq!(
        t.render("a", Flavor::Text, &ctx).unwrap(),
        "Read $HOME 'q' <a.txt>"
    );
    t.add("b", Flavor::Text, "{{ y }}").unwrap();
    let err = t.render("b", Flavor::Text, &ctx).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UndefinedError);
}

#[test]
fn a_list_in_a_shell_command_needs_shell_args() {
    let mut t = templates();
    t.add("a", Flavor::Shell, "echo {{ xs }}").unwrap();
    let ctx = map([("xs", Value::from(vec!["a"]))]);
    let err = t.render("a", Flavor::Shell, &ctx).unwrap_err();
    assert!(err.to_string().contains("shell_args"), "{err}");
}

#[test]
fn a_value_marked_safe_is_still_passed_as_a_variable() {
    let mut t = templates();
    t.add("a", Flavor::Shell, "echo {{ x | safe }}").unwrap();
    let ctx = map([("x", Value::from("$(touch pwned)"))]);
    let rendered = t.render_shell("a", &ctx).unwrap();
    assert_eq!(rendered.command, "echo \"$MEDLEY_V1\"");
}

/// Pieces of shell and template text that random commands are made of.
const PIECES: &[&str] = &[
    "echo ",
    " ",
    "\n",
    "\"",
    "'",
    "$(",
    ")",
    "(",
    "`",
    "\\",
    "$",
    "{",
    "}",
    ";",
    "&&",
    "|",
    "#",
    "<<EOF\n",
    "\nEOF\n",
    "<<'Q'\n",
    "\nQ\n",
    "<<-T\n",
    "\n\tT\n",
    "$((",
    "${",
    "((",
    "[[ ",
    " ]]",
    "let ",
    "case x in ",
    " esac",
    "a=",
    "x",
    "$x",
    "{{ x }}",
    "{{ x }}",
    "{{ xs | shell_args }}",
    "{% if x %}",
    "{% else %}",
    "{% endif %}",
    "{% for v in xs %}{{ v }}{% endfor %}",
    "$'",
    "\\\"",
    "\\'",
    "<",
    ">/dev/null",
    "!",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(96),
        max_global_rejects: 1_000_000,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Whatever command a template makes, if medley accepts it, no value runs in `sh` or
    /// `bash`.
    #[test]
    fn no_value_runs_in_any_accepted_command(
        pieces in proptest::collection::vec(proptest::sample::select(PIECES), 1..24)
    ) {
        let source: String = pieces.concat();
        let mut t = templates();
        proptest::prop_assume!(t.add("a", Flavor::Shell, &source).is_ok());
        proptest::prop_assume!(shell_problems(&source).is_empty());
        let payload = "$(touch pwned)`touch pwned`'\"\ntouch pwned;#";
        let ctx = map([
            ("x", Value::from(payload)),
            ("xs", Value::from(vec![payload, "a"])),
        ]);
        let Ok(rendered) = t.render_shell("a", &ctx) else {
            return Ok(());
        };
        for sh in shells() {
            let dir = tempfile::tempdir().unwrap();
            std::process::Command::new(sh)
                .arg("-c")
                .arg(&rendered.command)
                .envs(rendered.env.iter().map(|(k, v)| (k, v)))
                .current_dir(dir.path())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            proptest::prop_assert!(
                !dir.path().join("pwned").exists(),
                "{sh} ran a value: {source:?} -> {:?}",
                rendered.command
            );
        }
    }
}
