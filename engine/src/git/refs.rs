//! Every ref name medley uses, in one place. A run keeps its base and its steps' results under
//! `refs/medley/<run>/`, the cache its entries under `refs/medley/cache/`, and a passed run its
//! result branch `medley/<mission>/<run>` (so no branch may be named `medley` itself).

/// The root of every hidden ref medley keeps.
pub const ROOT: &str = "refs/medley";

/// The branch that would block every result branch (`refs/heads/medley`).
pub const BRANCH_ROOT: &str = "refs/heads/medley";

/// The prefix of a run's hidden refs: `refs/medley/<run>/`.
pub fn run_prefix(run: &str) -> String {
    format!("{ROOT}/{run}/")
}

/// The run's base commit: `refs/medley/<run>/base`.
pub fn run_base(run: &str) -> String {
    format!("{ROOT}/{run}/base")
}

/// The ref that keeps a step's result: `refs/medley/<run>/steps/<step>` (a matrix child's dots
/// become `/`).
pub fn step_result(run: &str, step: &str) -> String {
    format!("{ROOT}/{run}/steps/{}", step.replace('.', "/"))
}

/// The merged result of a run whose mission has `approve`, while it waits for a person:
/// `refs/medley/<run>/final`.
pub fn final_result(run: &str) -> String {
    format!("{ROOT}/{run}/final")
}

/// What `medley approve` and `medley reject` call a mission's final result (no step id can
/// start with `@`).
pub const FINAL_RESULT: &str = "@result";

/// The ref that keeps the resolution of a conflict between a step's needs (`_final`: the
/// leaves'): `refs/medley/<run>/merges/<step>`.
pub fn merge_result(run: &str, step: &str) -> String {
    format!("{ROOT}/{run}/merges/{}", step.replace('.', "/"))
}

/// A cache entry's ref: `refs/medley/cache/<key>`.
pub fn cache_entry(key: &str) -> String {
    format!("{ROOT}/cache/{key}")
}

/// A cached merge resolution's ref: `refs/medley/cache/merges/<key>` (under
/// [`CACHE_PREFIX`], so emptying the cache removes it too).
pub fn cache_resolution(key: &str) -> String {
    format!("{ROOT}/cache/merges/{key}")
}

/// The prefix of every cache entry's ref.
pub const CACHE_PREFIX: &str = "refs/medley/cache/";

/// A passed run's result branch, as a branch name: `medley/<mission>/<run>`.
pub fn result_branch(mission: &str, run: &str) -> String {
    format!("medley/{mission}/{run}")
}

/// The prefix of every result branch's full ref.
pub const RESULT_BRANCHES: &str = "refs/heads/medley/";

/// The run a result branch's full ref names (`refs/heads/medley/<mission>/<run>`).
pub fn result_branch_run(full: &str) -> Option<&str> {
    let rest = full.strip_prefix(RESULT_BRANCHES)?;
    let (_mission, run) = rest.split_once('/')?;
    (!run.is_empty() && !run.contains('/')).then_some(run)
}

/// The full ref of a branch: `refs/heads/<branch>`.
pub fn branch(name: &str) -> String {
    format!("refs/heads/{name}")
}

/// The files under the git dir that hold a run's refs and their logs, and its result branch's
/// (where a medley killed mid-update leaves `*.lock` files).
pub fn run_ref_dirs(run: &str) -> [String; 2] {
    [format!("{ROOT}/{run}"), format!("logs/{ROOT}/{run}")]
}

/// Where the lock files of a run's result branch would be, relative to the git dir.
pub fn result_branch_locks(mission: &str, run: &str) -> [String; 2] {
    let branch = branch(&result_branch(mission, run));
    [format!("{branch}.lock"), format!("logs/{branch}.lock")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(run_base("r1"), "refs/medley/r1/base");
        assert_eq!(step_result("r1", "fix.a"), "refs/medley/r1/steps/fix/a");
        assert_eq!(cache_entry("k"), "refs/medley/cache/k");
        assert!(cache_entry("k").starts_with(CACHE_PREFIX));
        assert!(cache_resolution("k").starts_with(CACHE_PREFIX));
        assert_eq!(branch(&result_branch("m", "r1")), "refs/heads/medley/m/r1");
        assert!(branch(&result_branch("m", "r1")).starts_with(BRANCH_ROOT));
        assert_eq!(
            result_branch_run(&branch(&result_branch("m", "r1"))),
            Some("r1")
        );
        assert_eq!(result_branch_run("refs/heads/medley/m"), None);
        assert_eq!(
            result_branch_locks("m", "r1"),
            [
                "refs/heads/medley/m/r1.lock".to_owned(),
                "logs/refs/heads/medley/m/r1.lock".to_owned()
            ]
        );
    }
}
