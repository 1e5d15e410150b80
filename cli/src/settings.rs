//! Settings medley reads from the environment, read once at startup and passed on: nothing
//! deeper in the CLI or the engine reads the environment for them.

use std::time::Duration;

use medley_engine::plan::duration_text;
use medley_engine::process::Grace;

/// What the environment sets.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The stages of a staged stop: `MEDLEY_STOP_GRACE` (e.g. `200ms`) sets both.
    pub grace: Grace,
    /// How long an agent may wait for the network before its attempt ends as `unreachable`:
    /// `MEDLEY_NETWORK_WAIT` (e.g. `2s`; default 60s).
    pub network_wait: Duration,
}

impl Settings {
    /// Reads the settings from this process's environment.
    pub fn from_env() -> Settings {
        Settings::from(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `var`.
    pub fn from(var: impl Fn(&str) -> Option<String>) -> Settings {
        let duration = |name| var(name).and_then(|v| duration_text::parse(&v));
        Settings {
            grace: duration("MEDLEY_STOP_GRACE").map_or_else(Grace::default, |d| Grace {
                interrupt: d,
                terminate: d,
            }),
            network_wait: duration("MEDLEY_NETWORK_WAIT").unwrap_or(Duration::from_secs(60)),
        }
    }
}

/// The value of a variable a mission names (its `secrets`), read when a command needs it to
/// mask what it prints.
pub fn mission_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_from_the_environment() {
        let set = Settings::from(|name| match name {
            "MEDLEY_STOP_GRACE" => Some("200ms".to_owned()),
            "MEDLEY_NETWORK_WAIT" => Some("2s".to_owned()),
            _ => None,
        });
        assert_eq!(set.grace.interrupt, Duration::from_millis(200));
        assert_eq!(set.grace.terminate, Duration::from_millis(200));
        assert_eq!(set.network_wait, Duration::from_secs(2));
        let unset = Settings::from(|_| None);
        assert_eq!(unset.grace, Grace::default());
        assert_eq!(unset.network_wait, Duration::from_secs(60));
    }
}
