//! Where a value sits in a shell command: a small `sh` lexer over a template's literal text.
//!
//! A value is never written into a command as text. It is passed to the process as an
//! environment variable (`MEDLEY_V1`, ...), and the command refers to it in the way the quoting
//! context it sits in needs: `"$V"` bare, `${V}` inside double quotes or an unquoted heredoc,
//! `'"$V"'` inside single quotes (closing and reopening them). The shell expands a variable
//! once and never reads its value as syntax, so no value can run. Contexts where that does not
//! hold (a quoted heredoc, `$((…))`, `${…}`, right after `\` or `$`) or that this lexer cannot
//! follow are refused.

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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
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
enum CommandKind {
    Top,
    Subst,
    Backtick,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Heredoc {
    delimiter: String,
    strip_tabs: bool,
    quoted: bool,
    /// The current line so far, in each way the template can have written it, while it may
    /// still be the delimiter.
    lines: Vec<String>,
    /// Some way of writing the current line cannot be the delimiter any more.
    other: bool,
    /// Only leading tabs so far (for `<<-`).
    at_line_start: bool,
}

/// A heredoc delimiter being read after `<<`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delimiter {
    strip_tabs: bool,
    word: String,
    quoted: bool,
    started: bool,
    /// Inside `'…'` or `"…"` of the delimiter word.
    quote: Option<char>,
    escaped: bool,
}

/// The lexer's state between pieces of literal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexer {
    stack: Vec<Frame>,
    /// The last character was an unescaped `\` (its escape is pending).
    escape: bool,
    /// The last character was an unescaped `$`.
    dollar: bool,
    /// The last two characters were `$(`: a third `(` makes it `$((`.
    subst_open: bool,
    /// The last character was `<` (bare), or `<<` (`heredoc_op`).
    less: u8,
    /// At the start of a word (a `#` here starts a comment).
    word_start: bool,
    /// One way the template can go is at the start of a word, another is not.
    maybe_word_start: bool,
    /// The current unquoted word, to spot `case` (whose `)` would end a `$(…)`), `let` and `[[`.
    word: String,
    /// The next word is a command's name.
    command_position: bool,
    /// Inside a command that evaluates its words as arithmetic (`let`, `[[ … ]]`).
    arith_command: Option<&'static str>,
    /// The last character was an unquoted `(` of a command: another makes `((`.
    paren: bool,
    /// Inside a `#` comment.
    comment: bool,
    /// Reading a heredoc delimiter.
    delimiter: Option<Delimiter>,
    /// Heredocs whose bodies start at the next newline.
    pending: Vec<Heredoc>,
    /// Once set, the lexer can no longer tell where it is: every later value is refused.
    lost: Option<Refusal>,
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

    fn top(&self) -> &Frame {
        self.stack
            .last()
            .expect("the top-level frame is never popped")
    }

    fn in_backtick(&self) -> bool {
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
        self.stack.push(Frame::Command {
            kind: CommandKind::Subst,
            parens: 0,
        });
        self.subst_open = true;
        self.word_start = true;
        self.command_position = true;
        self.word.clear();
    }

    fn open_backtick(&mut self) {
        self.stack.push(Frame::Command {
            kind: CommandKind::Backtick,
            parens: 0,
        });
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
                "let" => self.arith_command = Some("let"),
                "[[" => self.arith_command = Some("[["),
                // Reserved words before a command's name.
                "if" | "then" | "else" | "elif" | "do" | "while" | "until" | "!" | "{" | "time" => {
                    self.command_position = true
                }
                _ => {}
            }
        } else if word == "]]" && self.arith_command == Some("[[") {
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
                    "a value inside `{command}` would be evaluated as arithmetic (bash runs `$(…)` found there)"
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

impl Heredoc {
    fn push_line(&mut self, c: char) {
        let delimiter = &self.delimiter;
        let mut other = self.other;
        self.lines.retain_mut(|line| {
            line.push(c);
            let keep = delimiter.starts_with(line.as_str());
            other |= !keep;
            keep
        });
        self.other = other;
    }
}

impl Delimiter {
    fn new(strip_tabs: bool) -> Delimiter {
        Delimiter {
            strip_tabs,
            word: String::new(),
            quoted: false,
            started: false,
            quote: None,
            escaped: false,
        }
    }
}

/// Reads `c` into a heredoc delimiter; false when `c` ends it.
fn delimiter_char(d: &mut Delimiter, c: char) -> bool {
    if d.escaped {
        d.escaped = false;
        d.word.push(c);
        return true;
    }
    if let Some(q) = d.quote {
        if c == q {
            d.quote = None;
        } else {
            d.word.push(c);
        }
        return true;
    }
    match c {
        ' ' | '\t' if !d.started => true,
        ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>' => false,
        '\'' | '"' => {
            d.started = true;
            d.quoted = true;
            d.quote = Some(c);
            true
        }
        '\\' => {
            d.started = true;
            d.quoted = true;
            d.escaped = true;
            true
        }
        _ => {
            d.started = true;
            d.word.push(c);
            true
        }
    }
}
