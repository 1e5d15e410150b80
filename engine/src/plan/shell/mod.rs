//! Where a value sits in a shell command: a small `sh` lexer over a template's literal text.
//!
//! A value is never written into a command as text. It is passed to the process as an
//! environment variable (`MEDLEY_V1`, ...), and the command refers to it in the way the quoting
//! context it sits in needs: `"$V"` bare, `${V}` inside double quotes or an unquoted heredoc,
//! `'"$V"'` inside single quotes (closing and reopening them). The shell expands a variable
//! once and never reads its value as syntax, so no value can run. Contexts where that does not
//! hold (a quoted heredoc, `$((…))`, `${…}`, right after `\` or `$`) or that this lexer cannot
//! follow are refused.
//!
//! `mod.rs` holds what templates use: a value's [`Context`], how the command refers to it, and
//! what the [`Lexer`] says at a value; `lexer.rs` reads the literal text, `heredoc.rs` heredocs.

mod heredoc;
mod lexer;

use lexer::Frame;
pub use lexer::Lexer;

/// The quoting context of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// An unquoted word.
    Bare,
    /// Inside `"…"`.
    Double,
    /// Inside `'…'`.
    Single,
    /// The body of an unquoted heredoc (`<<EOF`).
    Heredoc,
    /// A `#` comment.
    Comment,
}

impl Context {
    /// How the command refers to variable `name` here.
    pub fn reference(self, name: &str) -> String {
        match self {
            Context::Bare | Context::Comment => format!("\"${name}\""),
            Context::Double | Context::Heredoc => format!("${{{name}}}"),
            Context::Single => format!("'\"${name}\"'"),
        }
    }

    /// How a value reads to a person here (what the command would be with the value written
    /// in, quoted for this context).
    pub fn display(self, value: &str) -> String {
        match self {
            Context::Bare => shlex::try_quote(value)
                .map(|q| q.into_owned())
                .unwrap_or_else(|_| value.replace('\0', "")),
            Context::Comment => value.replace('\n', "\\n"),
            Context::Double => escape(value, &['\\', '"', '$', '`']),
            Context::Heredoc => escape(value, &['\\', '$', '`']),
            Context::Single => value.replace('\'', "'\\''"),
        }
    }
}

fn escape(value: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Why a value cannot go where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub help: String,
}

impl Refusal {
    fn new(message: impl Into<String>, help: impl Into<String>) -> Refusal {
        Refusal {
            message: message.into(),
            help: help.into(),
        }
    }
}

const ARGUMENT_HELP: &str = "pass the value as a plain argument (`cmd {{ value }}`) or inside double quotes (`\"{{ value }}\"`), where medley can hand it over safely";

impl Lexer {
    /// A value stands here: its context, or why it cannot.
    pub fn value(&self) -> Result<Context, Refusal> {
        if let Some(lost) = &self.lost {
            return Err(lost.clone());
        }
        if self.delimiter.is_some() || self.less == 2 {
            return Err(Refusal::new(
                "a value cannot be a heredoc's delimiter",
                "write the delimiter literally, e.g. `<<EOF`",
            ));
        }
        if self.escape {
            return Err(Refusal::new(
                "a value right after `\\` cannot be passed safely",
                "remove the `\\`: medley passes the value as it is",
            ));
        }
        if self.dollar {
            return Err(Refusal::new(
                "a value right after `$` cannot be passed safely",
                "remove the `$`: to use a variable whose name is a value, set it first",
            ));
        }
        let context = match self.top() {
            Frame::Command { .. } if self.comment => Context::Comment,
            Frame::Command { .. } => Context::Bare,
            Frame::Double => Context::Double,
            Frame::Single => Context::Single,
            Frame::AnsiC => {
                return Err(Refusal::new(
                    "a value inside `$'…'` cannot be passed safely",
                    ARGUMENT_HELP,
                ));
            }
            Frame::Param(_) => {
                return Err(Refusal::new(
                    "a value inside `${…}` cannot be passed safely",
                    ARGUMENT_HELP,
                ));
            }
            Frame::Arith(_) => {
                return Err(Refusal::new(
                    "a value inside `$((…))` or `((…))` would be evaluated as arithmetic",
                    "pass the value as an argument, or check it is a number before computing with it",
                ));
            }
            Frame::Heredoc(doc) if doc.quoted => {
                return Err(Refusal::new(
                    "a value inside a quoted heredoc is not expanded by the shell",
                    "write the delimiter unquoted (`<<EOF`, not `<<'EOF'`) so medley can pass the value as a variable",
                ));
            }
            Frame::Heredoc(_) => Context::Heredoc,
        };
        if let Some(command) = self.arith_command {
            return Err(Refusal::new(
                format!(
                    "a value inside `{}` would be evaluated as arithmetic (bash runs `$(…)` found there)",
                    command.name()
                ),
                "compare with `[ … ]` (`test`), which never evaluates its operands, or check the value is a number first",
            ));
        }
        if context == Context::Bare && self.in_backtick() && self.stack.contains(&Frame::Double) {
            return Err(Refusal::new(
                "a value inside backticks inside double quotes cannot be passed safely",
                "write `$(…)` instead of backticks",
            ));
        }
        Ok(context)
    }

    /// Steps over a value (which keeps the context it was in).
    pub fn after_value(&mut self) {
        self.word_start = false;
        self.paren = false;
        self.word.push('\0');
        self.subst_open = false;
        self.less = 0;
        if let Some(Frame::Heredoc(doc)) = self.stack.last_mut() {
            doc.at_line_start = false;
            doc.push_line('\0');
        }
    }

    /// One state for two ways the template can go (`{% if %}` branches, a loop run or not),
    /// or `None` when they leave the command in different quoting.
    pub fn merge(mut self, other: &Lexer) -> Option<Lexer> {
        if self.shape() != other.shape() {
            return None;
        }
        if self.lost.is_none() {
            self.lost = other.lost.clone();
        }
        if self.word != other.word {
            self.word = "\0".to_owned();
        }
        if self.word_start != other.word_start {
            self.word_start = false;
            self.maybe_word_start = true;
        }
        self.maybe_word_start |= other.maybe_word_start;
        // Either way may have begun a command, or one that evaluates arithmetic.
        self.command_position |= other.command_position;
        self.arith_command = self.arith_command.or(other.arith_command);
        for (a, b) in self.stack.iter_mut().zip(&other.stack) {
            if let (Frame::Heredoc(a), Frame::Heredoc(b)) = (a, b) {
                for line in &b.lines {
                    if !a.lines.contains(line) {
                        a.lines.push(line.clone());
                    }
                }
                a.other |= b.other;
                a.at_line_start &= b.at_line_start;
            }
        }
        Some(self)
    }

    /// The state without what [`Lexer::merge`] can join.
    fn shape(&self) -> Lexer {
        let mut shape = self.clone();
        shape.word.clear();
        shape.command_position = false;
        shape.arith_command = None;
        shape.word_start = false;
        shape.maybe_word_start = false;
        shape.lost = None;
        for frame in &mut shape.stack {
            if let Frame::Heredoc(doc) = frame {
                doc.lines.clear();
                doc.other = false;
                doc.at_line_start = false;
            }
        }
        shape
    }
}
