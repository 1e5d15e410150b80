//! Durations in the mission's own notation (`90s`, `20m`, `1h30m`): parsed from `timeout`,
//! written back in plans and messages.
//!
//! Also reachable as `plan::duration_text`, the name `#[serde(with)]` and callers use.

use std::ops::Range;
use std::time::Duration;

use super::{ErrorKind, MissionError};

/// The problem with a duration written in a mission, if it has one: not a duration, or zero.
pub fn check(text: &str, span: Range<usize>) -> Option<MissionError> {
    match parse(text) {
        Some(d) if !d.is_zero() => None,
        Some(_) => Some(
            MissionError::new(ErrorKind::Duration, format!("duration `{text}` is zero"))
                .label(span, "zero is not allowed")
                .help("a step needs some time to run: write a duration above zero, e.g. `90s`, `20m` or `1h`"),
        ),
        None => Some(
            MissionError::new(ErrorKind::Duration, format!("invalid duration `{text}`"))
                .label(span, "not a duration")
                .help("write a whole number and a unit with no space, e.g. `90s`, `20m`, `1h` or `1h30m` (units: `ms`, `s`, `m`, `h`)"),
        ),
    }
}

pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// `1h30m`, `90s`, `250ms`: the largest units that divide exactly.
pub fn format(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Parses `<number><unit>` groups (units `ms`, `s`, `m`, `h`), e.g. `90s`, `1h30m`.
pub fn parse(text: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total = total.checked_add(n.checked_mul(unit_ms)?)?;
    }
    Some(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("20m"), Some(Duration::from_secs(1200)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        for bad in ["20 mins", "", "m", "10", "1.5h", "-1s", "10d"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(1500)), "1s500ms");
    }
}
