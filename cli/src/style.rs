//! Styles for terminal output: plain unless colour is on.

/// Bold text when `color` is on.
pub fn bold(text: &str, color: bool) -> String {
    if color {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// Dimmed text when `color` is on.
pub fn dim(text: &str, color: bool) -> String {
    if color {
        format!("\x1b[2m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// Green text when `color` is on.
pub fn green(text: &str, color: bool) -> String {
    if color {
        format!("\x1b[32m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// Red text when `color` is on.
pub fn red(text: &str, color: bool) -> String {
    if color {
        format!("\x1b[31m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// Yellow text when `color` is on.
pub fn yellow(text: &str, color: bool) -> String {
    if color {
        format!("\x1b[33m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// A duration for humans: `850ms`, `4.2s`, `3m05s` (as the run report says them).
pub fn human_duration(d: std::time::Duration) -> String {
    medley_engine::report::text::duration(Some(d.as_millis() as u64))
}
