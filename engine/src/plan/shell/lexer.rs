//! The `sh` lexer's state machine: literal text read a character at a time, tracking quotes,
//! `$(…)`, backticks, `${…}`, `$((…))`, comments, `case`/`let`/`[[`, and heredocs. What it
//! says where a value stands is in `shell/mod.rs` ([`Lexer::value`], [`Lexer::merge`]).

use super::Refusal;
use super::heredoc::{Delimiter, Heredoc, delimiter_char};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Frame {
    /// Commands: the top level, `$(…)` or `` `…` ``.
    Command {
        kind: CommandKind,
        /// Open `(` not yet closed in this frame.
        parens: u32,
    },
    Double,
    Single,
    /// `$'…'`.
    AnsiC,
    /// `${…}`, with its open braces.
    Param(u32),
    /// `$((…))`, with its open parentheses.
    Arith(u32),
    /// A heredoc body.
    Heredoc(Heredoc),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommandKind {
    Top,
    Subst,
    Backtick,
}

/// A command that evaluates its words as arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArithCommand {
    /// `let`.
    Let,
    /// `[[ … ]]`.
    Test,
}

impl ArithCommand {
    /// The command as written.
    pub(super) fn name(self) -> &'static str {
        match self {
            ArithCommand::Let => "let",
            ArithCommand::Test => "[[",
        }
    }
}

/// The lexer's state between pieces of literal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexer {
    pub(super) stack: Vec<Frame>,
    /// The last character was an unescaped `\` (its escape is pending).
    pub(super) escape: bool,
    /// The last character was an unescaped `$`.
    pub(super) dollar: bool,
    /// The last two characters were `$(`: a third `(` makes it `$((`.
    pub(super) subst_open: bool,
    /// The last character was `<` (bare), or `<<` (`heredoc_op`).
    pub(super) less: u8,
    /// At the start of a word (a `#` here starts a comment).
    pub(super) word_start: bool,
    /// One way the template can go is at the start of a word, another is not.
    pub(super) maybe_word_start: bool,
    /// The current unquoted word, to spot `case` (whose `)` would end a `$(…)`), `let` and `[[`.
    pub(super) word: String,
    /// The next word is a command's name.
    pub(super) command_position: bool,
    /// Inside a command that evaluates its words as arithmetic (`let`, `[[ … ]]`).
    pub(super) arith_command: Option<ArithCommand>,
    /// The last character was an unquoted `(` of a command: another makes `((`.
    pub(super) paren: bool,
    /// Inside a `#` comment.
    pub(super) comment: bool,
    /// Reading a heredoc delimiter.
    pub(super) delimiter: Option<Delimiter>,
    /// Heredocs whose bodies start at the next newline.
    pub(super) pending: Vec<Heredoc>,
    /// Once set, the lexer can no longer tell where it is: every later value is refused.
    pub(super) lost: Option<Refusal>,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new()
    }
}

impl Lexer {
    pub fn new() -> Lexer {
        Lexer {
            stack: vec![Frame::Command {
                kind: CommandKind::Top,
                parens: 0,
            }],
            escape: false,
            dollar: false,
            subst_open: false,
            less: 0,
            word_start: true,
            maybe_word_start: false,
            word: String::new(),
            command_position: true,
            arith_command: None,
            paren: false,
            comment: false,
            delimiter: None,
            pending: Vec::new(),
            lost: None,
        }
    }

    pub(super) fn top(&self) -> &Frame {
        self.stack
            .last()
            .expect("the top-level frame is never popped")
    }

    pub(super) fn in_backtick(&self) -> bool {
        self.stack.iter().any(|f| {
            matches!(
                f,
                Frame::Command {
                    kind: CommandKind::Backtick,
                    ..
                }
            )
        })
    }

    fn in_subst(&self) -> bool {
        self.stack.iter().any(|f| {
            matches!(
                f,
                Frame::Command {
                    kind: CommandKind::Subst | CommandKind::Backtick,
                    ..
                }
            )
        })
    }

    fn lose(&mut self, reason: &str, help: &str) {
        if self.lost.is_none() {
            self.lost = Some(Refusal::new(
                format!("medley cannot tell how a value here is quoted: {reason}"),
                help,
            ));
        }
    }

    /// Reads literal text.
    pub fn feed(&mut self, text: &str) {
        for c in text.chars() {
            if self.lost.is_some() {
                return;
            }
            self.char(c);
        }
    }

    fn char(&mut self, c: char) {
        if c == '\0' {
            self.lose(
                "a NUL byte in a shell command",
                "remove the NUL byte: `sh` cannot read it",
            );
            return;
        }
        if let Some(delimiter) = &mut self.delimiter {
            if delimiter_char(delimiter, c) {
                return;
            }
            let d = self.delimiter.take().expect("checked above");
            if !d.started {
                self.lose(
                    "where this heredoc ends is unclear",
                    "write the heredoc's delimiter as a plain word, e.g. `<<EOF`",
                );
                return;
            }
            self.pending.push(Heredoc {
                delimiter: d.word,
                strip_tabs: d.strip_tabs,
                quoted: d.quoted,
                lines: vec![String::new()],
                other: false,
                at_line_start: true,
            });
            // `c` ends the delimiter word and is read as usual.
        }
        let escape = std::mem::take(&mut self.escape);
        let dollar = std::mem::take(&mut self.dollar);
        let subst_open = std::mem::take(&mut self.subst_open);
        let less = std::mem::take(&mut self.less);
        if escape && self.in_backtick() {
            self.lose(
                "a `\\` inside backticks",
                "write `$(…)` instead of backticks: its quoting is plain",
            );
            return;
        }
        match self.top().clone() {
            Frame::Command { kind, parens } => {
                self.command_char(c, kind, parens, escape, dollar, subst_open, less)
            }
            Frame::Double => self.double_char(c, escape, dollar),
            Frame::Single => {
                if c == '`' && self.in_backtick() {
                    self.lose(
                        "a backtick inside quotes inside backticks",
                        "write `$(…)` instead of backticks",
                    );
                } else if c == '\'' {
                    self.stack.pop();
                }
            }
            Frame::AnsiC => {
                // Shells differ on `\'` here (dash before 0.5.12 has no `$'…'`).
                if c == '\\' {
                    self.lose(
                        "a `\\` inside `$'…'`",
                        "write the text in `'…'` or `\"…\"` instead",
                    );
                } else if c == '\'' {
                    self.stack.pop();
                }
            }
            Frame::Param(depth) => self.nested_char(c, '{', '}', depth, Frame::Param),
            Frame::Arith(depth) => self.nested_char(c, '(', ')', depth, Frame::Arith),
            Frame::Heredoc(_) => self.heredoc_char(c, escape, dollar),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn command_char(
        &mut self,
        c: char,
        kind: CommandKind,
        parens: u32,
        escape: bool,
        dollar: bool,
        subst_open: bool,
        less: u8,
    ) {
        if self.comment {
            if c == '`' && self.in_backtick() {
                self.lose(
                    "a backtick inside a comment inside backticks",
                    "write `$(…)` instead of backticks",
                );
            }
            if c == '\n' {
                self.comment = false;
                self.word_start = true;
                self.newline();
            }
            return;
        }
        if escape {
            // `\c`: a literal character (a line continuation for a newline).
            self.word.push(c);
            self.word_start = false;
            return;
        }
        if subst_open && c == '(' {
            // `$((`: arithmetic, not a command.
            self.stack.pop();
            self.stack.push(Frame::Arith(2));
            return;
        }
        if less == 2 {
            match c {
                // `<<<`: a here-string; an ordinary word follows.
                '<' => return,
                '-' => {
                    self.delimiter = Some(Delimiter::new(true));
                    return;
                }
                _ => {
                    let mut d = Delimiter::new(false);
                    if delimiter_char(&mut d, c) {
                        self.delimiter = Some(d);
                    } else {
                        self.lose(
                            "where this heredoc ends is unclear",
                            "write the heredoc's delimiter as a plain word, e.g. `<<EOF`",
                        );
                    }
                    return;
                }
            }
        }
        if dollar {
            match c {
                '(' => {
                    self.open_subst();
                    return;
                }
                '{' => {
                    self.stack.push(Frame::Param(1));
                    return;
                }
                '\'' => {
                    self.stack.push(Frame::AnsiC);
                    return;
                }
                _ => {}
            }
        }
        let maybe_word_start = std::mem::take(&mut self.maybe_word_start);
        let paren = std::mem::take(&mut self.paren);
        if paren && c == '(' {
            // `((`: an arithmetic command (bash, ksh), not two subshells.
            self.set_parens(parens.saturating_sub(1));
            self.stack.push(Frame::Arith(2));
            return;
        }
        let meta = matches!(
            c,
            ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>'
        );
        if meta {
            self.end_word();
        }
        match c {
            '#' if maybe_word_start => {
                self.lose(
                    "cannot tell whether this `#` starts a comment",
                    "put a space before the `#`, outside `{% if %}` and `{% for %}`",
                );
                return;
            }
            '#' if self.word_start => {
                self.comment = true;
                return;
            }
            '\\' => self.escape = true,
            '$' => self.dollar = true,
            '\'' => self.stack.push(Frame::Single),
            '"' => self.stack.push(Frame::Double),
            '`' => {
                if kind == CommandKind::Backtick {
                    self.stack.pop();
                } else {
                    self.open_backtick();
                    return;
                }
            }
            '(' => {
                self.set_parens(parens + 1);
                self.paren = true;
            }
            ')' => {
                if parens > 0 {
                    self.set_parens(parens - 1);
                } else if kind == CommandKind::Subst {
                    self.stack.pop();
                    self.word_start = false;
                    return;
                }
                // A `)` at the top level ends a `case` pattern.
            }
            '<' => self.less = less + 1,
            '\n' => self.newline(),
            _ => {}
        }
        if matches!(c, ';' | '&' | '|' | '\n' | '(' | ')') {
            self.command_position = true;
            self.arith_command = None;
        }
        if meta {
            self.word_start = true;
        } else {
            self.word_start = false;
            if !matches!(c, '\'' | '"' | '`' | '\\' | '$') {
                self.word.push(c);
            }
        }
    }

    fn open_subst(&mut self) {
        self.open_command(CommandKind::Subst);
        self.subst_open = true;
    }

    fn open_backtick(&mut self) {
        self.open_command(CommandKind::Backtick);
    }

    /// A nested command (`$(…)` or `` `…` ``) starts: a command's name comes next.
    fn open_command(&mut self, kind: CommandKind) {
        self.stack.push(Frame::Command { kind, parens: 0 });
        self.word_start = true;
        self.command_position = true;
        self.word.clear();
    }

    fn set_parens(&mut self, n: u32) {
        if let Some(Frame::Command { parens, .. }) = self.stack.last_mut() {
            *parens = n;
        }
    }

    fn end_word(&mut self) {
        let word = std::mem::take(&mut self.word);
        if self.command_position && !word.is_empty() {
            self.command_position = false;
            match word.as_str() {
                "let" => self.arith_command = Some(ArithCommand::Let),
                "[[" => self.arith_command = Some(ArithCommand::Test),
                // Reserved words before a command's name.
                "if" | "then" | "else" | "elif" | "do" | "while" | "until" | "!" | "{" | "time" => {
                    self.command_position = true
                }
                _ => {}
            }
        } else if word == "]]" && self.arith_command == Some(ArithCommand::Test) {
            self.arith_command = None;
        }
        if (word == "case" || word == "esac") && self.in_subst() {
            self.lose(
                "a `case` inside `$(…)`",
                "move the `case` out of the command substitution, or write its patterns as `(pattern)`",
            );
        }
    }

    /// A newline outside quotes: pending heredoc bodies start.
    fn newline(&mut self) {
        if !self.pending.is_empty() {
            let first = self.pending.remove(0);
            self.stack.push(Frame::Heredoc(first));
        }
    }

    fn double_char(&mut self, c: char, escape: bool, dollar: bool) {
        if escape {
            return;
        }
        if self.expansion(c, dollar) {
            return;
        }
        match c {
            '"' => {
                self.stack.pop();
            }
            '\\' => self.escape = true,
            '$' => self.dollar = true,
            _ => {}
        }
    }

    /// `$(`, `${` and `` ` `` inside double quotes or a heredoc body.
    fn expansion(&mut self, c: char, dollar: bool) -> bool {
        if dollar && c == '(' {
            self.open_subst();
            return true;
        }
        if dollar && c == '{' {
            self.stack.push(Frame::Param(1));
            return true;
        }
        if c == '`' {
            if self.in_backtick() {
                self.lose(
                    "a backtick inside quotes inside backticks",
                    "write `$(…)` instead of backticks",
                );
                return true;
            }
            self.open_backtick();
            return true;
        }
        false
    }

    fn nested_char(
        &mut self,
        c: char,
        open: char,
        close: char,
        depth: u32,
        frame: fn(u32) -> Frame,
    ) {
        if matches!(c, '\'' | '"' | '`' | '\\') {
            self.lose(
                "quotes inside `${…}` or `$((…))`",
                "set a shell variable first and use it here",
            );
            return;
        }
        let depth = if c == open {
            depth + 1
        } else if c == close {
            depth - 1
        } else {
            depth
        };
        self.stack.pop();
        if depth > 0 {
            self.stack.push(frame(depth));
        }
    }

    fn heredoc_char(&mut self, c: char, escape: bool, dollar: bool) {
        let Some(Frame::Heredoc(mut doc)) = self.stack.pop() else {
            return;
        };
        if c == '\n' {
            let ends = doc.lines.contains(&doc.delimiter);
            let goes_on = doc.other || doc.lines.iter().any(|l| *l != doc.delimiter);
            if ends && goes_on {
                self.lose(
                    "where this heredoc ends is unclear",
                    "write the heredoc's end line outside `{% if %}` and `{% for %}`",
                );
                return;
            }
            if ends {
                self.newline();
                return;
            }
            doc.lines = vec![String::new()];
            doc.other = false;
            doc.at_line_start = true;
            self.stack.push(Frame::Heredoc(doc));
            return;
        }
        if !(doc.strip_tabs && doc.at_line_start && c == '\t') {
            doc.at_line_start = false;
            doc.push_line(c);
        }
        let quoted = doc.quoted;
        self.stack.push(Frame::Heredoc(doc));
        if quoted || escape || self.expansion(c, dollar) {
            return;
        }
        match c {
            '\\' => self.escape = true,
            '$' => self.dollar = true,
            _ => {}
        }
    }
}
