//! Small text helpers every report format shares: escaping, and the words for durations,
//! tokens and costs.

use crate::event::Tokens;
use crate::history::RunInfo;

use super::model::StepReport;

/// `text` safe inside HTML or XML, as text or in a quoted attribute: the five special
/// characters become entities, and control characters (which XML 1.0 forbids and a page would
/// not show) become their visible Control Pictures (`␛` for ESC).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    escape_into(&mut out, text);
    out
}

/// `text` safe as the content of an element (not an attribute): only `&`, `<` and `>` are
/// replaced (and control characters, as [`escape`] does), which keeps big blocks small.
pub fn escape_text_into(out: &mut String, text: &str) {
    escape_chars(out, text, false);
}

/// [`escape_text_into`], as a new string.
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    escape_text_into(&mut out, text);
    out
}

/// [`escape`], appending to `out`.
pub fn escape_into(out: &mut String, text: &str) {
    escape_chars(out, text, true);
}

/// The one escaper: the markup characters (quotes too, for attributes, with `quotes`) become
/// entities, control characters their visible Control Pictures.
fn escape_chars(out: &mut String, text: &str, quotes: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quotes => out.push_str("&quot;"),
            '\'' if quotes => out.push_str("&#39;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {
                out.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{FFFD}'))
            }
            '\u{7f}' => out.push('\u{2421}'),
            // Not characters to XML: replaced as a decoder would.
            '\u{FFFE}' | '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// `850ms`, `4.2s`, `3m05s` (as the CLI says them); `-` when not known.
pub fn duration(ms: Option<u64>) -> String {
    ms.map_or("-".to_owned(), |ms| {
        if ms < 1000 {
            format!("{ms}ms")
        } else if ms < 60_000 {
            format!("{:.1}s", ms as f64 / 1000.0)
        } else {
            format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
        }
    })
}

/// A step's tokens (`in/out`), `unknown` for an agent whose CLI reported none, empty for a
/// command step.
pub fn step_tokens(step: &StepReport) -> String {
    match (&step.info.agent, step.info.tokens) {
        (_, Some(t)) => format!("{}/{}", t.input, t.output),
        (Some(_), None) => "unknown".to_owned(),
        (None, None) => String::new(),
    }
}

/// A step's cost: `$0.0123`, `unknown` for an agent step whose cost is not known, empty for a
/// command step.
pub fn step_cost(step: &StepReport) -> String {
    match (&step.info.agent, step.info.cost_usd) {
        (_, Some(c)) => format!("${c:.4}"),
        (Some(_), None) if step.info.outcome.is_some() => "unknown".to_owned(),
        _ => String::new(),
    }
}

/// The run's tokens: `400 in / 80 out`, with the steps whose tokens are not known; `none`
/// for a run with no agent step.
pub fn run_tokens(run: &RunInfo) -> String {
    let Tokens { input, output } = run.tokens;
    if input + output == 0
        && run.uncounted_steps == 0
        && run.steps.values().all(|s| s.agent.is_none())
    {
        return "none (no agent ran)".to_owned();
    }
    let known = format!("{input} in / {output} out");
    match run.uncounted_steps {
        0 => known,
        n => format!("{known} (unknown for {})", plural(n, "step")),
    }
}

/// The run's known cost, with the steps whose cost is not known.
pub fn run_cost(run: &RunInfo) -> String {
    if run.cost_usd.is_none()
        && run.unpriced_steps == 0
        && run.steps.values().all(|s| s.agent.is_none())
    {
        return "none (no agent ran)".to_owned();
    }
    let known = run
        .cost_usd
        .map_or("$0.0000".to_owned(), |c| format!("${c:.4}"));
    match run.unpriced_steps {
        0 => known,
        n => format!("{known} known; unpriced: {}", plural(n, "step")),
    }
}

/// `1 step`, `3 steps`.
pub fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// At most `max` characters of `text`, with `…` when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_and_no_control_characters() {
        let nasty = "</script><img src=x onerror=\"alert('x')\">&amp;\x1b[31m\x00";
        let safe = escape(nasty);
        assert!(!safe.contains('<') && !safe.contains('>') && !safe.contains('"'));
        assert!(!safe.contains('\'') && !safe.contains('\x1b') && !safe.contains('\0'));
        assert!(safe.contains("&amp;amp;") && safe.contains("␛[31m") && safe.contains('␀'));
    }
}
