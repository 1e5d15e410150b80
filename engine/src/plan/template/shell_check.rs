//! What a shell template may not do, found before anything runs: `| safe`, `{% autoescape %}`,
//! capturing blocks, and values in quoting contexts that cannot be made safe ([`shell_problems`]).

use std::ops::Range;

use minijinja::machinery::{self, Token, ast};

use super::shell_render::shell_args_refusal;
use super::syntax;
use crate::plan::shell::{Context, Lexer, Refusal};

/// Something a shell template may not do, at a byte range of its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub range: Range<usize>,
    pub message: String,
    pub help: String,
}

/// What a shell command template may not do, decided from minijinja's tokens and syntax tree:
/// `| safe`, `{% autoescape %}`, capturing blocks, and values in quoting contexts that cannot
/// be made safe. A template that does not parse has none (its syntax error is reported).
pub fn shell_problems(source: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut previous = None;
    for token in machinery::tokenize(source, false, syntax()) {
        let Ok((token, span)) = token else { break };
        if matches!(token, Token::Ident("safe")) && !matches!(previous, Some(Token::Dot)) {
            problems.push(Problem {
                range: range(span),
                message: "`| safe` is not allowed in a shell command template".to_owned(),
                help: SAFE_HELP.to_owned(),
            });
        }
        previous = Some(token);
    }
    if let Ok(tree) = machinery::parse(source, "<template>", syntax()) {
        let mut lexer = Lexer::new();
        walk(std::slice::from_ref(&tree), &mut lexer, &mut problems);
    }
    problems.sort_by_key(|p| (p.range.start, p.range.end));
    problems.dedup();
    problems
}

const SAFE_HELP: &str = "values in `run`, `gate` and `setup` reach the shell as variables, never as syntax, so step outputs and diffs cannot inject commands; to pass a list as separate words, write `| shell_args`";

fn range(span: machinery::Span) -> Range<usize> {
    span.start_offset as usize..span.end_offset as usize
}

fn walk(stmts: &[ast::Stmt<'_>], lexer: &mut Lexer, problems: &mut Vec<Problem>) {
    for stmt in stmts {
        match stmt {
            ast::Stmt::Template(t) => walk(&t.children, lexer, problems),
            ast::Stmt::EmitRaw(raw) => {
                if let Some(at) = raw.raw.find('\0') {
                    let start = raw.span().start_offset as usize + at;
                    problems.push(Problem {
                        range: start..start + 1,
                        message: "a NUL byte in a shell command".to_owned(),
                        help: "remove the NUL byte (`\\u0000`): `sh` cannot read it".to_owned(),
                    });
                }
                lexer.feed(raw.raw);
            }
            ast::Stmt::EmitExpr(emit) => {
                let args = matches!(&emit.expr, ast::Expr::Filter(f) if f.name == "shell_args");
                match lexer.value() {
                    Err(refusal) => problems.push(problem(emit.span(), refusal)),
                    Ok(context) if args && !matches!(context, Context::Bare | Context::Comment) => {
                        problems.push(problem(emit.span(), shell_args_refusal()));
                    }
                    Ok(_) => {}
                }
                lexer.after_value();
            }
            ast::Stmt::IfCond(cond) => {
                let mut yes = lexer.clone();
                walk(&cond.true_body, &mut yes, problems);
                let mut no = lexer.clone();
                walk(&cond.false_body, &mut no, problems);
                match yes.merge(&no) {
                    Some(merged) => *lexer = merged,
                    None => {
                        problems.push(branch_problem(cond.span(), "`{% if %}`"));
                        return;
                    }
                }
            }
            ast::Stmt::ForLoop(for_loop) => {
                let start = lexer.clone();
                let mut once = lexer.clone();
                walk(&for_loop.body, &mut once, problems);
                let mut otherwise = lexer.clone();
                walk(&for_loop.else_body, &mut otherwise, problems);
                match start.merge(&once).and_then(|s| s.merge(&otherwise)) {
                    Some(merged) => *lexer = merged,
                    None => {
                        problems.push(branch_problem(for_loop.span(), "`{% for %}`"));
                        return;
                    }
                }
            }
            ast::Stmt::WithBlock(with) => walk(&with.body, lexer, problems),
            ast::Stmt::Set(_) | ast::Stmt::Do(_) => {}
            ast::Stmt::AutoEscape(block) => problems.push(Problem {
                range: range(block.span()),
                message: "`{% autoescape %}` is not allowed in a shell command template".to_owned(),
                help: SAFE_HELP.to_owned(),
            }),
            ast::Stmt::SetBlock(block) => problems.push(block_problem(block.span(), "set")),
            ast::Stmt::FilterBlock(block) => problems.push(block_problem(block.span(), "filter")),
            #[allow(unreachable_patterns)]
            _ => problems.push(Problem {
                range: 0..0,
                message: "this template statement is not allowed in a shell command template"
                    .to_owned(),
                help: "use `{{ … }}`, `{% if %}`, `{% for %}`, `{% with %}` and `{% set x = … %}`"
                    .to_owned(),
            }),
        }
    }
}

fn problem(span: machinery::Span, refusal: Refusal) -> Problem {
    Problem {
        range: range(span),
        message: refusal.message,
        help: refusal.help,
    }
}

fn branch_problem(span: machinery::Span, what: &str) -> Problem {
    Problem {
        range: range(span),
        message: format!("the ways through this {what} leave the command in different quoting"),
        help: "open and close quotes, `$(…)` and heredocs on the same side of the block, so medley can tell where each value stands".to_owned(),
    }
}

fn block_problem(span: machinery::Span, what: &str) -> Problem {
    Problem {
        range: range(span),
        message: format!("a `{{% {what} %}}` block is not allowed in a shell command template"),
        help: "its output would reach the shell as text; compute the value in an expression instead (`{{ x | upper }}`, `{% set x = … %}`)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use minijinja::value::Value;

    use super::shell_problems;
    use crate::plan::template::{Flavor, Templates, map};

    fn templates() -> Templates {
        Templates::new()
    }

    #[test]
    fn contexts_that_cannot_be_made_safe_are_refused_with_a_span() {
        let refused = [
            ("cat <<'EOF'\n{{ x }}\nEOF\n", "{{ x }}", "quoted heredoc"),
            ("cat <<\"EOF\"\n{{ x }}\nEOF\n", "{{ x }}", "quoted heredoc"),
            ("cat <<\\EOF\n{{ x }}\nEOF\n", "{{ x }}", "quoted heredoc"),
            (
                "cat <<-'EOF'\n\t{{ x }}\n\tEOF\n",
                "{{ x }}",
                "quoted heredoc",
            ),
            ("cat <<{{ x }}\nEOF\n", "{{ x }}", "delimiter"),
            (
                "cat <<EOF\n{{ x }}\n{% if x %}EOF\n{% endif %}echo {{ x }}\nEOF\n",
                "{% if x %}EOF\n{% endif %}",
                "different quoting",
            ),
            ("echo $(( {{ x }} + 1 ))", "{{ x }}", "$((…))"),
            ("(( {{ x }} > 1 ))", "{{ x }}", "((…))"),
            ("if (( {{ x }} )); then :; fi", "{{ x }}", "((…))"),
            ("[[ {{ x }} -eq 1 ]]", "{{ x }}", "`[[`"),
            ("if [[ \"{{ x }}\" == a ]]; then :; fi", "{{ x }}", "`[[`"),
            ("let y={{ x }}", "{{ x }}", "`let`"),
            ("a; let \"y={{ x }}\"", "{{ x }}", "`let`"),
            ("echo ${HOME:-{{ x }}}", "{{ x }}", "${…}"),
            ("echo \"${HOME:-{{ x }}}\"", "{{ x }}", "${…}"),
            ("echo ${{ x }}", "{{ x }}", "after `$`"),
            ("echo \\{{ x }}", "{{ x }}", "after `\\`"),
            ("echo \"\\{{ x }}\"", "{{ x }}", "after `\\`"),
            ("echo $'{{ x }}'", "{{ x }}", "$'…'"),
            (
                "echo \"`echo {{ x }}`\"",
                "{{ x }}",
                "backticks inside double quotes",
            ),
            ("echo `echo \\`echo {{ x }}\\``", "{{ x }}", "backticks"),
            (
                "echo \"{{ xs | shell_args }}\"",
                "{{ xs | shell_args }}",
                "shell_args",
            ),
            (
                "echo '{{ xs | shell_args }}'",
                "{{ xs | shell_args }}",
                "shell_args",
            ),
            (
                "echo {% if x %}\"{% endif %}{{ x }}",
                "{% if x %}\"{% endif %}",
                "different quoting",
            ),
            (
                "echo {% for v in x %}'{% endfor %}",
                "{% for v in x %}'{% endfor %}",
                "different quoting",
            ),
            (
                "echo $(case a in a) echo;; esac) {{ x }}",
                "{{ x }}",
                "case",
            ),
            (
                "echo {% filter upper %}{{ x }}{% endfilter %}",
                "{% filter upper %}{{ x }}{% endfilter %}",
                "filter",
            ),
            (
                "echo {% set y %}{{ x }}{% endset %}{{ y }}",
                "{% set y %}{{ x }}{% endset %}",
                "set",
            ),
        ];
        for (template, at, what) in refused {
            let problems = shell_problems(template);
            let start = template.find(at).unwrap();
            assert!(
                problems.iter().any(|p| p.range.start >= start
                    && p.range.end <= start + at.len()
                    && !p.range.is_empty()
                    && format!("{} {}", p.message, p.help).contains(what)),
                "{template:?} should be refused at {at:?} for {what:?}: {problems:?}"
            );
            // The render refuses it too (the run-time check does not rely on validate).
            let mut t = templates();
            if t.add("a", Flavor::Shell, template).is_ok() {
                let ctx = map([
                    ("x", Value::from("$(touch pwned)")),
                    ("xs", Value::from(vec!["a"])),
                ]);
                let dynamic_checks = !matches!(what, "different quoting" | "filter" | "set");
                if dynamic_checks {
                    assert!(t.render_shell("a", &ctx).is_err(), "{template:?}");
                }
            }
        }
    }

    #[test]
    fn safe_and_autoescape_are_found_from_the_parsed_template() {
        let found = |src: &str| -> Vec<String> {
            shell_problems(src)
                .into_iter()
                .map(|p| src[p.range].to_owned())
                .collect()
        };
        let src = "echo safe {{ x|safe }} {% autoescape false %}{{ unsafe_x }}{% endautoescape %}";
        assert_eq!(
            found(src),
            vec![
                "safe".to_owned(),
                "autoescape false %}{{ unsafe_x }}{% endautoescape".to_owned()
            ]
        );
        // A `}}` inside a string literal does not end the tag.
        let src = "echo {{ ('}}' ~ 'x; touch pwned') | safe }}";
        assert_eq!(found(src), vec!["safe".to_owned()]);
        let src = "echo {{ \"%}\" ~ x | safe }}";
        assert_eq!(found(src), vec!["safe".to_owned()]);
        let src = "echo {{ '{{' }}{{ x | safe }}";
        assert_eq!(found(src), vec!["safe".to_owned()]);
        let src = "echo {{ x\n |\n safe }}";
        assert_eq!(found(src), vec!["safe".to_owned()]);
        let src = "echo {% if true %}{{ x | safe }}{% endif %}";
        assert_eq!(found(src), vec!["safe".to_owned()]);
        // A field or a string named `safe` is data, not the filter.
        assert!(found("echo {{ vars.safe }} {{ 'safe' }} safe").is_empty());
    }
}
