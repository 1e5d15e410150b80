//! Run ids people can type: `last`, `last~N`, and the shortest prefix that names one run.

use std::path::Path;

use super::HistoryError;
use crate::journal;

/// The fewest characters a shown prefix has (the first group of a UUID).
const MIN_PREFIX: usize = 8;

/// The run an argument names: `last` (the newest), `last~N` (N runs before it), a whole id or
/// the start of one.
pub fn resolve(git_dir: &Path, arg: &str) -> Result<String, HistoryError> {
    resolve_in(&journal::run_ids(&journal::runs_dir(git_dir)), arg)
}

/// [`resolve`] among `ids` (oldest first).
pub fn resolve_in(ids: &[String], arg: &str) -> Result<String, HistoryError> {
    let back = match arg.strip_prefix("last") {
        Some("") => Some(0),
        Some(rest) => rest.strip_prefix('~').and_then(|n| n.parse::<usize>().ok()),
        None => None,
    };
    if let Some(back) = back {
        if ids.is_empty() {
            return Err(HistoryError::NoRuns);
        }
        return ids
            .len()
            .checked_sub(back + 1)
            .map(|i| ids[i].clone())
            .ok_or_else(|| HistoryError::TooFarBack {
                arg: arg.to_owned(),
                count: ids.len(),
            });
    }
    let matching: Vec<&String> = ids.iter().filter(|id| id.starts_with(arg)).collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] if ids.is_empty() => Err(HistoryError::NoRuns),
        [] => Err(HistoryError::NoRun(arg.to_owned())),
        many => {
            let short = short_ids(ids);
            let named: Vec<String> = ids
                .iter()
                .zip(&short)
                .filter(|(id, _)| id.starts_with(arg))
                .map(|(_, s)| format!("`{s}`"))
                .collect();
            debug_assert_eq!(named.len(), many.len());
            Err(HistoryError::Ambiguous(arg.to_owned(), named.join(", ")))
        }
    }
}

/// The shortest prefix that names run `id` among this repository's runs.
pub fn short_id(git_dir: &Path, id: &str) -> String {
    let ids = journal::run_ids(&journal::runs_dir(git_dir));
    match ids.iter().position(|i| i == id) {
        Some(at) => short_ids(&ids).swap_remove(at),
        None => id.to_owned(),
    }
}

/// For each id, the shortest prefix (at least [`MIN_PREFIX`] characters, never ending in `-`)
/// that no other id starts with, as git abbreviates commits.
pub fn short_ids(ids: &[String]) -> Vec<String> {
    let common = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let mut sorted: Vec<&str> = ids.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    ids.iter()
        .map(|id| {
            let at = sorted.binary_search(&id.as_str()).unwrap_or(0);
            let shared = [at.checked_sub(1), Some(at + 1)]
                .into_iter()
                .flatten()
                .filter_map(|j| sorted.get(j))
                .map(|other| common(id, other))
                .max()
                .unwrap_or(0);
            let mut len = (shared + 1).max(MIN_PREFIX).min(id.len());
            while len < id.len() && id.as_bytes()[len - 1] == b'-' {
                len += 1;
            }
            id.get(..len).unwrap_or(id).to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        [
            "019ab1c2-0000-7000-8000-000000000001",
            "019ab1c2-3f00-7000-8000-000000000002",
            "019ab1c2-3f11-7000-8000-000000000003",
            "019ac000-0000-7000-8000-000000000004",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    #[test]
    fn shortest_unique_prefixes() {
        assert_eq!(
            short_ids(&ids()),
            ["019ab1c2-0", "019ab1c2-3f0", "019ab1c2-3f1", "019ac000"]
        );
        // Each one names its run.
        for (id, short) in ids().iter().zip(short_ids(&ids())) {
            assert_eq!(&resolve_in(&ids(), &short).unwrap(), id);
        }
        assert_eq!(short_ids(&ids()[..1]), ["019ab1c2"]);
    }

    #[test]
    fn last_and_back_from_it() {
        let ids = ids();
        assert_eq!(resolve_in(&ids, "last").unwrap(), ids[3]);
        assert_eq!(resolve_in(&ids, "last~0").unwrap(), ids[3]);
        assert_eq!(resolve_in(&ids, "last~1").unwrap(), ids[2]);
        assert_eq!(resolve_in(&ids, "last~3").unwrap(), ids[0]);
        assert!(matches!(
            resolve_in(&ids, "last~4"),
            Err(HistoryError::TooFarBack { count: 4, .. })
        ));
        assert!(matches!(resolve_in(&[], "last"), Err(HistoryError::NoRuns)));
        assert!(matches!(
            resolve_in(&ids, "last~x"),
            Err(HistoryError::NoRun(_))
        ));
    }

    #[test]
    fn an_ambiguous_prefix_names_the_candidates_by_their_short_ids() {
        let err = resolve_in(&ids(), "019ab1c2-3f").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`019ab1c2-3f` could be any of several runs"
        );
        let HistoryError::Ambiguous(_, which) = err else {
            panic!("ambiguous")
        };
        assert_eq!(which, "`019ab1c2-3f0`, `019ab1c2-3f1`");
    }
}
