//! Heredocs: the delimiter word read after `<<` ([`Delimiter`]), and a body's lines tracked in
//! every way the template can write them, to tell where the body ends ([`Heredoc`]).

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Heredoc {
    pub(super) delimiter: String,
    pub(super) strip_tabs: bool,
    pub(super) quoted: bool,
    /// The current line so far, in each way the template can have written it, while it may
    /// still be the delimiter.
    pub(super) lines: Vec<String>,
    /// Some way of writing the current line cannot be the delimiter any more.
    pub(super) other: bool,
    /// Only leading tabs so far (for `<<-`).
    pub(super) at_line_start: bool,
}

/// A heredoc delimiter being read after `<<`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Delimiter {
    pub(super) strip_tabs: bool,
    pub(super) word: String,
    pub(super) quoted: bool,
    pub(super) started: bool,
    /// Inside `'…'` or `"…"` of the delimiter word.
    pub(super) quote: Option<char>,
    pub(super) escaped: bool,
}

impl Heredoc {
    pub(super) fn push_line(&mut self, c: char) {
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
    pub(super) fn new(strip_tabs: bool) -> Delimiter {
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
pub(super) fn delimiter_char(d: &mut Delimiter, c: char) -> bool {
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
