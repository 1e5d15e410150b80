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
