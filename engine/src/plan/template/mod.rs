//! Templates: minijinja with strict undefined, in two flavours.
//!
//! Prompts are plain text. In a template rendered into a shell command (`run`, `gate`,
//! `setup`) no value is ever written as text: each becomes a reference to an environment
//! variable set for that process, written for the quoting context it sits in (see
//! [`super::shell`]), so a variable can never inject shell syntax. A list becomes separate
//! words with `| shell_args`. `| safe`, `{% autoescape %}`, `{% filter %}` and `{% set %}`
//! blocks, and contexts that cannot be made safe are refused before anything runs.

use std::ops::Range;
use std::sync::Arc;

use minijinja::machinery::{self, Token, ast};
use minijinja::value::{Enumerator, Object, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior};

use super::shell::{Context, Lexer, Refusal};

/// A shell command rendered from a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    /// What `sh -c` runs: values are references to `env`.
    pub command: String,
    /// The variables holding the values, to set for the process.
    pub env: Vec<(String, String)>,
    /// The command as a person reads it: the values written in, quoted for where they are.
    pub display: String,
}

impl ShellCommand {
    /// Everything that decides what the command does (for cache keys).
    pub fn key(&self) -> String {
        let mut key = self.command.clone();
        for (name, value) in &self.env {
            key.push('\0');
            key.push_str(name);
            key.push('=');
            key.push_str(value);
        }
        key
    }
}

/// Where a template is rendered, which decides how values are written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// A prompt: values are written as they are.
    Text,
    /// A shell command: every value is passed as an environment variable.
    Shell,
}

/// The parsed templates of a plan, by name, in their two environments.
pub struct Templates {
    text: Environment<'static>,
    shell: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Templates {
    pub fn new() -> Templates {
        Templates {
            text: environment(Flavor::Text),
            shell: environment(Flavor::Shell),
        }
    }

    fn env(&self, flavor: Flavor) -> &Environment<'static> {
        match flavor {
            Flavor::Text => &self.text,
            Flavor::Shell => &self.shell,
        }
    }

    /// Parses and keeps a template under `name`.
    pub fn add(&mut self, name: &str, flavor: Flavor, source: &str) -> Result<(), Error> {
        let env = match flavor {
            Flavor::Text => &mut self.text,
            Flavor::Shell => &mut self.shell,
        };
        env.add_template_owned(name.to_owned(), source.to_owned())
    }

    pub fn contains(&self, name: &str, flavor: Flavor) -> bool {
        self.env(flavor).get_template(name).is_ok()
    }

    /// Renders the template kept under `name`; a shell template renders as its display.
    pub fn render(&self, name: &str, flavor: Flavor, context: &Value) -> Result<String, Error> {
        match flavor {
            Flavor::Text => self.text.get_template(name)?.render(context),
            Flavor::Shell => Ok(self.render_shell(name, context)?.display),
        }
    }

    /// Renders the shell template kept under `name`.
    pub fn render_shell(&self, name: &str, context: &Value) -> Result<ShellCommand, Error> {
        let captured = self.shell.get_template(name)?.render_captured(context)?;
        let values = captured
            .state()
            .get_extension::<Values>()
            .map(|v| v.0.as_slice())
            .unwrap_or_default();
        assemble(captured.output(), values)
    }

    /// Evaluates an `if` expression to a boolean (Jinja truthiness).
    pub fn eval(&self, expression: &str, context: &Value) -> Result<bool, Error> {
        let expr = self.text.compile_expression(expression)?;
        Ok(expr.eval(context)?.is_true())
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

fn syntax() -> minijinja::syntax::SyntaxConfig {
    minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .expect("the default delimiters are a valid syntax")
}

fn environment(flavor: Flavor) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_debug(true);
    env.set_syntax(syntax());
    env.add_filter("shell_args", shell_args);
    if flavor == Flavor::Shell {
        // `| escape` would otherwise HTML-escape the value.
        env.set_auto_escape_callback(|_| AutoEscape::Custom("shell".into()));
        env.set_formatter(shell_formatter);
    }
    env
}

/// A value printed into a shell template: one word, or the words of `| shell_args`.
#[derive(Debug)]
enum Printed {
    Word(String),
    Words(Vec<String>),
}

/// The values printed so far in one render, in order.
#[derive(Debug, Default)]
struct Values(Vec<Printed>);

/// Marks where a value was printed: NUL (which literal text cannot hold), its index, NUL.
const MARK: char = '\0';

/// Records a value and writes a mark in its place; [`assemble`] replaces the mark.
fn shell_formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    let printed = if let Some(args) = value.downcast_object_ref::<ShellArgs>() {
        Printed::Words(args.0.clone())
    } else {
        match value.kind() {
            ValueKind::None => Printed::Word(String::new()),
            ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "a list or table cannot be written into a shell command as one value: \
                     use `| shell_args` to pass a list's items as separate words",
                ));
            }
            _ => Printed::Word(no_nul(value.to_string())?),
        }
    };
    let values = state.get_or_insert_extension(Values::default());
    let index = values.0.len();
    values.0.push(printed);
    write!(out, "{MARK}{index}{MARK}")
        .map_err(|_| Error::new(ErrorKind::WriteFailure, "cannot write template output"))
}

fn no_nul(word: String) -> Result<String, Error> {
    if word.contains('\0') {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "a value holding a NUL byte cannot be passed to a shell command",
        ));
    }
    Ok(word)
}

/// Turns a render's output (literal text and marks) into the command, its variables and its
/// display, deciding each value's quoting context from the literal text before it.
fn assemble(output: &str, values: &[Printed]) -> Result<ShellCommand, Error> {
    let mut lexer = Lexer::new();
    let mut command = String::with_capacity(output.len());
    let mut display = String::with_capacity(output.len());
    let mut env = Vec::new();
    let mut parts = output.split(MARK);
    let mut literal = parts.next().unwrap_or_default();
    loop {
        lexer.feed(literal);
        command.push_str(literal);
        display.push_str(literal);
        let Some(index) = parts.next() else { break };
        let printed = index
            .parse::<usize>()
            .ok()
            .and_then(|i| values.get(i))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    "a NUL byte in a shell command template",
                )
            })?;
        let context = lexer.value().map_err(refusal_error)?;
        match printed {
            Printed::Word(word) => {
                let name = format!("MEDLEY_V{}", env.len() + 1);
                command.push_str(&context.reference(&name));
                display.push_str(&context.display(word));
                env.push((name, word.clone()));
            }
            Printed::Words(words) => {
                if !matches!(context, Context::Bare | Context::Comment) {
                    return Err(refusal_error(shell_args_refusal()));
                }
                for (n, word) in words.iter().enumerate() {
                    let name = format!("MEDLEY_V{}", env.len() + 1);
                    if n > 0 {
                        command.push(' ');
                        display.push(' ');
                    }
                    command.push_str(&context.reference(&name));
                    display.push_str(&context.display(word));
                    env.push((name, word.clone()));
                }
            }
        }
        lexer.after_value();
        literal = parts.next().unwrap_or_default();
    }
    Ok(ShellCommand {
        command,
        env,
        display,
    })
}

fn refusal_error(refusal: Refusal) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{} (help: {})", refusal.message, refusal.help),
    )
}

fn shell_args_refusal() -> Refusal {
    Refusal {
        message: "`| shell_args` makes separate words, so it cannot stand inside quotes".to_owned(),
        help: "write it outside quotes, e.g. `rm -- {{ files | shell_args }}`".to_owned(),
    }
}

/// The words of `| shell_args`.
#[derive(Debug)]
struct ShellArgs(Vec<String>);

impl Object for ShellArgs {
    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result
    where
        Self: Sized + 'static,
    {
        let quoted: Vec<String> = self.0.iter().map(|w| Context::Bare.display(w)).collect();
        f.write_str(&quoted.join(" "))
    }
}

/// `| shell_args`: a list's items as separate words (a string is one word).
fn shell_args(value: &Value) -> Result<Value, Error> {
    let words: Vec<String> = match value.kind() {
        ValueKind::Seq | ValueKind::Iterable => value
            .try_iter()?
            .map(|item| no_nul(item.to_string()))
            .collect::<Result<_, _>>()?,
        ValueKind::Map => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "`shell_args` takes a list, not a table",
            ));
        }
        _ => vec![no_nul(value.to_string())?],
    };
    Ok(Value::from_object(ShellArgs(words)))
}

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

/// `steps.my-step` written where `steps["my-step"]` was meant: spans and the ids meant.
/// (Jinja reads `steps.my-step` as `steps.my - step`.)
pub fn dashed_step_refs(source: &str, ids: &[String]) -> Vec<(Range<usize>, String)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = source[from..].find("steps.") {
        let start = from + at;
        let name_start = start + "steps.".len();
        let name_len = source[name_start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(source.len() - name_start);
        let name = &source[name_start..name_start + name_len];
        let before_ok = !source[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if before_ok && name.contains('-') {
            // The longest known id that the dashed name starts with.
            let meant = ids
                .iter()
                .filter(|id| id.contains('-') && name.starts_with(id.as_str()))
                .filter(|id| {
                    let rest = &name[id.len()..];
                    rest.is_empty() || rest.starts_with('-')
                })
                .max_by_key(|id| id.len());
            if let Some(id) = meant {
                found.push((start..name_start + id.len(), id.clone()));
            }
        }
        from = name_start;
    }
    found
}

/// The names a template sees at the top level, for "did you mean".
pub const CONTEXT_NAMES: &[&str] = &[
    "vars", "mission", "run", "matrix", "attempt", "steps", "file",
];

/// The fields of `steps.<id>`.
pub const STEP_FIELDS: &[&str] = &[
    "outcome", "cached", "output", "diff", "files", "commit", "cost_usd",
];

/// The fields of `failure` in a retry prompt.
pub const FAILURE_FIELDS: &[&str] = &["kind", "command", "exit_code", "output"];

/// The ids templates may write after `steps.`, and the concrete steps (plan indices) each
/// stands for: a step or matrix child stands for itself, a matrix step for all its children.
#[derive(Debug, Default)]
pub struct StepKeys {
    pub keys: indexmap::IndexMap<String, Vec<usize>>,
}

/// The `steps` context of one template: only the steps upstream of its step are there.
#[derive(Debug)]
pub struct StepsContext {
    pub keys: Arc<StepKeys>,
    /// The concrete steps this template may see, by plan index.
    pub visible: Arc<fixedbitset::FixedBitSet>,
    /// Each key's value (a step's result, a matrix step's summary)...
    pub values: Arc<std::collections::HashMap<String, Value>>,
    /// ...or this one for keys not in `values` (placeholders before the run).
    pub default: Option<Value>,
}

impl StepsContext {
    fn sees(&self, key: &str) -> bool {
        self.keys
            .keys
            .get(key)
            .is_some_and(|steps| steps.iter().all(|&i| self.visible.contains(i)))
    }
}

impl Object for StepsContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        if !self.sees(key) {
            return None;
        }
        self.values
            .get(key)
            .cloned()
            .or_else(|| self.default.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_enumerator(|this| {
            Box::new(
                this.keys
                    .keys
                    .keys()
                    .filter(|k| this.sees(k))
                    .map(|k| Value::from(k.as_str()))
                    .collect::<Vec<_>>()
                    .into_iter(),
            )
        })
    }
}

use minijinja::value::ObjectExt as _;

/// What a step's result looks like to templates before the run (for `validate`).
pub fn placeholder_step() -> Value {
    map([
        ("outcome", Value::from("passed")),
        ("cached", Value::from(false)),
        ("output", Value::from("")),
        ("diff", Value::from("")),
        ("files", Value::from(Vec::<Value>::new())),
        (
            "commit",
            Value::from("0000000000000000000000000000000000000000"),
        ),
        ("cost_usd", Value::from(())),
    ])
}

/// A failure as `retry_prompt` sees it before the run (for `validate`).
pub fn placeholder_failure() -> Value {
    map([
        ("kind", Value::from("gate")),
        ("command", Value::from("true")),
        ("exit_code", Value::from(1)),
        ("output", Value::from("")),
    ])
}

/// The `file(path)` function of a context: reads `path` with `read` (from the step's base
/// commit at run time).
pub fn file_function(
    read: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
) -> Value {
    Value::from_function(move |path: &str| {
        read(path).map_err(|why| Error::new(ErrorKind::InvalidOperation, why))
    })
}

/// The context of one template: a map of the names in [`CONTEXT_NAMES`] (and `failure`).
pub fn context(pairs: Vec<(&'static str, Value)>) -> Value {
    map(pairs)
}

/// A template map from string keys.
pub fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::from(
        pairs
            .into_iter()
            .collect::<std::collections::BTreeMap<&str, Value>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
