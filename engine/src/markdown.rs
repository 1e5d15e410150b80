//! Markdown that medley writes (the report's summary, a merge agent's prompt): fences that
//! hold any text.

/// A code fence longer than any run of backticks in `text` (at least three), so that the text
/// cannot close it.
pub(crate) fn fence(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat(longest.max(2) + 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fence_outruns_the_backticks_inside() {
        assert_eq!(super::fence("plain"), "```");
        assert_eq!(super::fence("a ```` b ` c"), "`````");
    }
}
