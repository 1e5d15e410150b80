//! The one-line summaries the live view shows: text shortened to one line ([`one_line`]), a tool
//! call as its name and target ([`tool_summary`]), and the "done" line of a finished turn.

use std::path::Path;

/// Shortens text to one line of at most `max` characters (whitespace runs become one space;
/// a cut ends with `…`). Reads only as much of `text` as it keeps.
pub fn one_line(text: &str, max: usize) -> String {
    fn cut(mut kept: String) -> String {
        kept.pop();
        kept.push('…');
        kept
    }
    let mut kept = String::with_capacity(max.min(text.len()) + 2);
    let mut count = 0;
    for word in text.split_whitespace() {
        if count > 0 {
            if count == max {
                return cut(kept);
            }
            kept.push(' ');
            count += 1;
        }
        let chars = if word.is_ascii() {
            word.len()
        } else {
            word.chars().count()
        };
        if count + chars <= max {
            kept.push_str(word);
            count += chars;
            continue;
        }
        for c in word.chars() {
            if count == max {
                return cut(kept);
            }
            kept.push(c);
            count += 1;
        }
    }
    kept
}

/// The summary of a finished turn: its tokens (0 where the CLI gave none).
pub(super) fn done(input: Option<u64>, output: Option<u64>) -> String {
    format!(
        "done: {} in / {} out tokens",
        input.unwrap_or(0),
        output.unwrap_or(0)
    )
}

/// A tool call in one line: its name and its target, from its input (`Write hello.txt`,
/// `Bash: echo hi > x`). Paths are shown relative to `cwd` when under it.
pub(super) fn tool_summary(name: &str, input: &serde_json::Value, cwd: Option<&str>) -> String {
    let text = |key: &&str| input.get(*key).and_then(serde_json::Value::as_str);
    let paths = [
        "file_path",
        "path",
        "filePath",
        "absolute_path",
        "notebook_path",
        "dir_path",
    ];
    let targets = ["pattern", "globPattern", "query", "url", "description"];
    let line = if let Some(command) = ["command", "cmd"].iter().find_map(text) {
        format!("{name}: {command}")
    } else if let Some(path) = paths.iter().find_map(text) {
        format!("{name} {}", short_path(path, cwd))
    } else if let Some(target) = targets.iter().find_map(text) {
        format!("{name} {target}")
    } else {
        name.to_owned()
    };
    one_line(&line, 100)
}

/// A path relative to `cwd` when under it, else an absolute path's file name.
fn short_path<'a>(path: &'a str, cwd: Option<&str>) -> &'a str {
    let relative = cwd.and_then(|cwd| path.strip_prefix(cwd.trim_end_matches('/')));
    if let Some(relative) = relative.and_then(|rest| rest.strip_prefix('/')) {
        return relative;
    }
    if path.starts_with('/') {
        Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(path)
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn shortens_to_one_line() {
        assert_eq!(one_line("  a \n b\t c ", 10), "a b c");
        assert_eq!(one_line("abcdef", 6), "abcdef");
        assert_eq!(one_line("abcdefg", 6), "abcde…");
        assert_eq!(one_line("abc defg", 6), "abc d…");
        assert_eq!(one_line("abcdef gh", 6), "abcde…");
    }
}
