//! Building a CLI's arguments: medley's flags first, the profile's `args` after them so they
//! win. Most CLIs start headless the same way (`-p <prompt> --output-format stream-json`).

use super::Invocation;

/// An argv being built.
pub(super) struct Argv(Vec<String>);

impl Argv {
    pub(super) fn new(args: &[&str]) -> Argv {
        Argv(Vec::new()).args(args)
    }

    /// `-p <prompt> --output-format stream-json`, then `flags`: the print mode of claude,
    /// gemini, cursor, kimi and qwen.
    pub(super) fn print_mode(prompt: &str, flags: &[&str]) -> Argv {
        Argv::new(&["-p", prompt, "--output-format", "stream-json"]).args(flags)
    }

    pub(super) fn arg(mut self, arg: impl Into<String>) -> Argv {
        self.0.push(arg.into());
        self
    }

    pub(super) fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Argv {
        self.0
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// `flag value`, when there is a value.
    pub(super) fn flag(self, flag: &str, value: Option<&str>) -> Argv {
        match value {
            Some(value) => self.arg(flag).arg(value),
            None => self,
        }
    }

    /// `--resume <session>`, else `--session-id <new session>`: for CLIs that take a
    /// pre-assigned session id.
    pub(super) fn resume_or_assign(self, invocation: &Invocation<'_>) -> Argv {
        match invocation.resume {
            Some(session) => self.flag("--resume", Some(session)),
            None => self.flag("--session-id", invocation.new_session),
        }
    }

    pub(super) fn build(self) -> Vec<String> {
        self.0
    }
}

/// A fresh invocation of "do it" in `/tmp/wt`, for the adapters' argv tests.
#[cfg(test)]
pub(super) fn test_invocation<'a>(
    new_session: Option<&'a str>,
    extra_args: &'a [String],
) -> Invocation<'a> {
    Invocation {
        prompt: "do it",
        worktree: std::path::Path::new("/tmp/wt"),
        model: None,
        resume: None,
        new_session,
        extra_args,
    }
}
