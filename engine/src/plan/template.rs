//! Templates: minijinja with strict undefined, in two flavours.
//!
//! Prompts are plain text. Templates rendered into a shell command (`run`, `gate`, `setup`)
//! shell-quote every value they print, so a variable can never inject shell syntax; a list
//! becomes separately quoted words with `| shell_args`, and `| safe` / `{% autoescape %}` are
//! refused there before anything runs.

use std::ops::Range;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior};

/// Where a template is rendered, which decides how values are written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// A prompt: values are written as they are.
    Text,
    /// A shell command: every value is shell-quoted.
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

    /// Renders the template kept under `name`.
    pub fn render(&self, name: &str, flavor: Flavor, context: &Value) -> Result<String, Error> {
        self.env(flavor).get_template(name)?.render(context)
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

fn environment(flavor: Flavor) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_debug(true);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are a valid syntax"),
    );
    env.add_filter("shell_args", shell_args);
    if flavor == Flavor::Shell {
        // `| escape` would otherwise HTML-escape and mark the value safe, skipping the quoting.
        env.set_auto_escape_callback(|_| AutoEscape::Custom("shell".into()));
        env.set_formatter(shell_formatter);
    }
    env
}

/// Writes a value into a shell command as one quoted word.
fn shell_formatter(out: &mut Output, _state: &mut State, value: &Value) -> Result<(), Error> {
    let text = if value.is_safe() {
        value.to_string()
    } else {
        match value.kind() {
            ValueKind::None => "''".to_owned(),
            ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "a list or table cannot be written into a shell command as one value: \
                     use `| shell_args` to pass a list's items as separate, quoted words",
                ));
            }
            _ => quote(&value.to_string())?,
        }
    };
    out.write_str(&text)
        .map_err(|_| Error::new(ErrorKind::WriteFailure, "cannot write template output"))
}

fn quote(word: &str) -> Result<String, Error> {
    shlex::try_quote(word).map(|q| q.into_owned()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            "a value holding a NUL byte cannot be passed to a shell command",
        )
    })
}

/// `| shell_args`: a list's items as separately quoted words (a string is one word).
fn shell_args(value: &Value) -> Result<Value, Error> {
    let words: Vec<String> = match value.kind() {
        ValueKind::Seq | ValueKind::Iterable => value
            .try_iter()?
            .map(|item| quote(&item.to_string()))
            .collect::<Result<_, _>>()?,
        ValueKind::Map => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "`shell_args` takes a list, not a table",
            ));
        }
        _ => vec![quote(&value.to_string())?],
    };
    Ok(Value::from_safe_string(words.join(" ")))
}

/// Spans of `safe` and `autoescape` used inside `{{ }}` or `{% %}` tags of a template.
pub fn unsafe_constructs(source: &str) -> Vec<(Range<usize>, &'static str)> {
    let mut found = Vec::new();
    let mut rest = 0;
    while let Some(open) = find_tag_open(&source[rest..]) {
        let start = rest + open + 2;
        let close = match source[start..].find(['}', '%']) {
            Some(_) => source[start..]
                .find("}}")
                .into_iter()
                .chain(source[start..].find("%}"))
                .min()
                .map_or(source.len(), |c| start + c),
            None => source.len(),
        };
        let tag = &source[start..close];
        for word in ["safe", "autoescape"] {
            let mut from = 0;
            while let Some(at) = tag[from..].find(word) {
                let begin = from + at;
                let end = begin + word.len();
                let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
                let before = tag[..begin].chars().next_back().is_some_and(ident);
                let after = tag[end..].chars().next().is_some_and(ident);
                if !before && !after {
                    found.push((start + begin..start + end, word));
                }
                from = end;
            }
        }
        rest = close.min(source.len());
        if rest >= source.len() {
            break;
        }
    }
    found
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

fn find_tag_open(s: &str) -> Option<usize> {
    let a = s.find("{{");
    let b = s.find("{%");
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
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
    fn sh_words(command: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "for w in {command}; do printf '%s\\n' \"$w\"; done"
            ))
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
        let rendered = t.render("a", Flavor::Shell, &ctx).unwrap();
        assert_eq!(sh_words(&rendered), vec![nasty, "3", "a b", "c;d", ""]);
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
    fn finds_safe_and_autoescape_in_tags_only() {
        let src = "echo safe {{ x|safe }} {% autoescape false %}{{ unsafe_x }}{% endautoescape %}";
        let found: Vec<_> = unsafe_constructs(src)
            .into_iter()
            .map(|(r, w)| (&src[r], w))
            .collect();
        assert_eq!(found, vec![("safe", "safe"), ("autoescape", "autoescape")]);
    }
}
