//! What the JSONL-stream adapters share: a stdout line read as one JSON event, an event's
//! summaries turned into [`Output`]s, the session id it carries, and the shapes that several
//! CLIs print alike: Anthropic-style `message.content` blocks and `tool_result`s (claude, qwen,
//! cursor), `usage` token counts, and a `result` event's session and `permission_denials`.

use serde_json::Value;

use super::summary::tool_summary;
use super::{AgentResult, Output, OutputKind, one_line};

/// One summary line of an event: its kind and its text.
pub(super) type Line = (OutputKind, String);

/// One stdout line as a JSON object; `None` for anything else (a log line, junk, an array).
pub(super) fn event(line: &str) -> Option<Value> {
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

/// The event's `type`, `unknown` without one.
pub(super) fn event_type(event: &Value) -> &str {
    event["type"].as_str().unwrap_or("unknown")
}

/// The event's `session_id`, also kept in `seen` when the event has one.
pub(super) fn session_id(event: &Value, seen: &mut Option<String>) -> Option<String> {
    let id = event["session_id"].as_str().map(str::to_owned);
    if id.is_some() {
        seen.clone_from(&id);
    }
    id
}

/// The outputs of one stream line: each summary with the line's JSON (moved into the last
/// one, cloned for the others).
pub(super) fn outputs(lines: Vec<Line>, raw: Value, session_id: Option<String>) -> Vec<Output> {
    let mut raw = Some(raw);
    let count = lines.len();
    lines
        .into_iter()
        .enumerate()
        .map(|(n, (kind, summary))| Output {
            kind,
            summary,
            raw: if n + 1 == count {
                raw.take().unwrap_or_default()
            } else {
                raw.clone().unwrap_or_default()
            },
            session_id: session_id.clone(),
        })
        .collect()
}

/// [`outputs`], or the event's type as one `Other` line when it has no summary.
pub(super) fn outputs_or_type(
    mut lines: Vec<Line>,
    raw: Value,
    session_id: Option<String>,
) -> Vec<Output> {
    if lines.is_empty() {
        lines.push((OutputKind::Other, event_type(&raw).to_owned()));
    }
    outputs(lines, raw, session_id)
}

/// The content blocks of an `assistant` or `user` event (`message.content`).
pub(super) fn blocks(event: &Value) -> &[Value] {
    event["message"]["content"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A content's text: a string, or the `text` of its parts joined by `separator`.
pub(super) fn content_text(content: &Value, separator: &str) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect::<Vec<_>>()
            .join(separator),
        _ => String::new(),
    }
}

/// The line of an assistant content block: its text (of the kind `text_kind` gives it), a
/// `tool_use` as its tool and target (paths relative to `cwd`), or else the block's type.
pub(super) fn block_line(
    block: &Value,
    cwd: Option<&str>,
    text_kind: impl FnOnce(&str) -> OutputKind,
) -> Line {
    match block["type"].as_str().unwrap_or("") {
        "text" => {
            let text = block["text"].as_str().unwrap_or("");
            (text_kind(text), one_line(text, 100))
        }
        "tool_use" => (
            OutputKind::Tool,
            tool_summary(
                block["name"].as_str().unwrap_or("tool"),
                &block["input"],
                cwd,
            ),
        ),
        other => (OutputKind::Other, other.to_owned()),
    }
}

/// The lines of a `user` event's `tool_result` blocks: an `Error` for each that failed
/// (`is_error`), else `Other`.
pub(super) fn tool_results(event: &Value) -> impl Iterator<Item = Line> + '_ {
    blocks(event)
        .iter()
        .filter(|block| block["type"] == "tool_result")
        .map(|block| {
            let text = one_line(&content_text(&block["content"], " "), 100);
            if block["is_error"] == true {
                (OutputKind::Error, text)
            } else {
                (OutputKind::Other, text)
            }
        })
}

/// Input and output tokens of a `usage` (or `stats`) object, as the CLI counts them.
pub(super) fn tokens(usage: &Value) -> (Option<u64>, Option<u64>) {
    (
        usage["input_tokens"].as_u64(),
        usage["output_tokens"].as_u64(),
    )
}

/// What a claude-style terminal `result` event says of the session: its `session_id`, and a
/// denial when its `permission_denials` are not empty.
pub(super) fn result_session(event: &Value, result: &mut AgentResult) {
    if let Some(session) = event["session_id"].as_str() {
        result.session_id = Some(session.to_owned());
    }
    if event["permission_denials"]
        .as_array()
        .is_some_and(|denials| !denials.is_empty())
    {
        result.denial = true;
    }
}
