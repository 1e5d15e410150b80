//! Rendering a shell template: each printed value is recorded and marked in the output, then
//! [`assemble`] lexes the literal text around the marks and writes each value as a reference
//! to an environment variable, quoted for where it stands (`| shell_args` makes several words).

use std::sync::Arc;

use minijinja::value::{Object, Value, ValueKind};
use minijinja::{Error, ErrorKind, Output, State};

use crate::plan::shell::{Context, Lexer, Refusal};

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

/// A value printed into a shell template: one word, or the words of `| shell_args`.
#[derive(Debug)]
pub(super) enum Printed {
    Word(String),
    Words(Vec<String>),
}

/// The values printed so far in one render, in order.
#[derive(Debug, Default)]
pub(super) struct Values(pub(super) Vec<Printed>);

/// Marks where a value was printed: NUL (which literal text cannot hold), its index, NUL.
const MARK: char = '\0';

/// Records a value and writes a mark in its place; [`assemble`] replaces the mark.
pub(super) fn shell_formatter(
    out: &mut Output,
    state: &mut State,
    value: &Value,
) -> Result<(), Error> {
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
pub(super) fn assemble(output: &str, values: &[Printed]) -> Result<ShellCommand, Error> {
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

pub(super) fn shell_args_refusal() -> Refusal {
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
pub(super) fn shell_args(value: &Value) -> Result<Value, Error> {
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
