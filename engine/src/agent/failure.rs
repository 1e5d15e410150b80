//! Telling failures apart: the tail of a CLI's stderr kept for its error text ([`Tail`]), and
//! the words and status codes that name an auth error, a usage limit or an unreachable model
//! service (AGENTS.md section 10). Each adapter decides with its CLI's own texts; these are the
//! tests they share.

use std::collections::VecDeque;

use super::AgentOutcome;

/// The last 20 non-blank lines of a stream (each cut at 1,000 bytes), for error texts.
#[derive(Debug, Default)]
pub(super) struct Tail(VecDeque<String>);

impl Tail {
    /// Keeps `line` (without its trailing whitespace) unless it is blank.
    pub(super) fn push(&mut self, line: &str) {
        let mut line = line.trim_end();
        if line.trim().is_empty() {
            return;
        }
        if line.len() > 1000 {
            let mut end = 1000;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line = &line[..end];
        }
        if self.0.len() == 20 {
            self.0.pop_front();
        }
        self.0.push_back(line.to_owned());
    }

    /// The kept lines, oldest first.
    pub(super) fn lines(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The error text of an attempt that ended without a terminal event: how it ended, then
    /// the kept lines.
    pub(super) fn exit_error(&self, exit_code: Option<i32>) -> String {
        let how = match exit_code {
            Some(code) => format!("exited with code {code} without a result"),
            None => "was killed without a result".to_owned(),
        };
        if self.0.is_empty() {
            how
        } else {
            let lines: Vec<&str> = self.lines().collect();
            format!("{how}:\n{}", lines.join("\n"))
        }
    }
}

/// Whether `text` holds the number `code` on its own (`401`, not a part of `:4010` or of
/// `49.401Z`).
pub(super) fn has_code(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// Whether `text` holds HTTP 401 or 403.
pub(super) fn has_auth_code(text: &str) -> bool {
    has_code(text, "401") || has_code(text, "403")
}

/// Whether an error text names a usage, rate or quota limit (AGENTS.md section 10).
pub(super) fn names_usage_limit(text: &str) -> bool {
    let lower = text.to_lowercase();
    [
        "usage limit",
        "rate limit",
        "rate_limit",
        "quota",
        "resource_exhausted",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
        || has_code(text, "429")
}

/// Classifies the failure text of a CLI whose error texts are not known (cursor).
pub(super) fn guess_failure(text: &str) -> AgentOutcome {
    let lower = text.to_lowercase();
    let auth = [
        "unauthorized",
        "not logged in",
        "authenticat",
        "api key",
        "api_key",
        "login",
    ];
    let network = [
        "econnrefused",
        "enotfound",
        "fetch failed",
        "connection error",
        "connection refused",
        "network",
    ];
    if has_auth_code(text) || auth.iter().any(|n| lower.contains(n)) {
        AgentOutcome::AuthError
    } else if names_usage_limit(text) {
        AgentOutcome::UsageLimit
    } else if network.iter().any(|n| lower.contains(n)) {
        AgentOutcome::Unreachable
    } else {
        AgentOutcome::AgentError
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_whole_numbers() {
        assert!(has_code("unexpected status 401 Unauthorized", "401"));
        assert!(has_code("\"code\":429,", "429"));
        assert!(!has_code("url: http://127.0.0.1:42901/v1", "429"));
        assert!(!has_code("at 06:11:49.401Z", "401"));
        assert!(names_usage_limit("You've hit your usage limit"));
        assert!(!names_usage_limit("port 14290"));
    }
}
