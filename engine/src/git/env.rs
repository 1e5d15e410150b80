//! git's repository-local environment variables: what must never reach medley's own git or the
//! processes it starts in worktrees.
//!
//! git sets `GIT_INDEX_FILE` inside commit hooks and `GIT_DIR` in others, and users export them
//! in scripts. Inherited by `git worktree add`, the first made git write medley's files into
//! the user's index; inherited by a step, either points the step's git at the user's
//! repository. medley finds the repository from its working directory, as git does with none
//! of these set, and removes them from every process it starts.

/// `git rev-parse --local-env-vars` (git 2.47), plus `GIT_NAMESPACE` and the quarantine path
/// git sets in receive hooks. A test checks this list covers the installed git's.
pub const LOCAL_ENV_VARS: &[&str] = &[
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_QUARANTINE_PATH",
    "GIT_INTERNAL_SUPER_PREFIX",
];

/// Removes git's repository-local variables from a command's environment.
pub fn scrub(command: &mut std::process::Command) -> &mut std::process::Command {
    for name in LOCAL_ENV_VARS {
        command.env_remove(name);
    }
    command
}

/// [`scrub`] for a tokio command.
pub fn scrub_async(command: &mut tokio::process::Command) -> &mut tokio::process::Command {
    for name in LOCAL_ENV_VARS {
        command.env_remove(name);
    }
    command
}

/// The variables among [`LOCAL_ENV_VARS`] that are set in medley's own environment that locate
/// a repository (`GIT_DIR`, `GIT_WORK_TREE`, ...): the CLI warns that they are ignored.
pub fn locating_vars_set() -> Vec<&'static str> {
    [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_COMMON_DIR",
    ]
    .into_iter()
    .filter(|name| std::env::var_os(name).is_some())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_every_variable_the_installed_git_calls_local() {
        let out = std::process::Command::new("git")
            .args(["rev-parse", "--local-env-vars"])
            .output()
            .expect("git runs");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for name in text.split_whitespace() {
            assert!(
                LOCAL_ENV_VARS.contains(&name),
                "git calls `{name}` repository-local; add it to LOCAL_ENV_VARS"
            );
        }
    }
}
