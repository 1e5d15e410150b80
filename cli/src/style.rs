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

/// A duration for humans: `850ms`, `4.2s`, `3m05s`.
pub fn human_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}
