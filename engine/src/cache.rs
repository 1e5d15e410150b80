//! The step cache: a step whose key matches an earlier passed step reuses its result.
//!
//! The key hashes what decides a step's result: its rendered prompt or command, gate and setup,
//! its agent profiles and their CLIs' versions, the cache format, and the base tree narrowed
//! to the step's `inputs` (the whole tree by default). Results are pinned under
//! `refs/medley/cache/<key>` so `git gc` keeps them; `<git dir>/medley/cache/<key>.json`
//! remembers which run made each and on which base.
//!
//! A merge agent's accepted resolution is cached the same way, apart from step results
//! (`refs/medley/cache/merges/<key>`, `<git dir>/medley/cache/merges/<key>.json`): its key
//! hashes the conflict (the trees of the ancestor and both sides), the rendered merge prompt,
//! the merge's gate and setup, and its chain of agents as a step's key sees it.

use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, TreeWalkMode, TreeWalkResult};
use serde::{Deserialize, Serialize};

use crate::git::{Context as _, GitError, Repo};

/// Bumped when what goes into a key changes.
pub const FORMAT: u32 = 2;

/// A cached result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The run that made it.
    pub run: String,
    pub step: String,
    /// The step's base when it was made.
    pub base: String,
    /// Its result commit.
    pub commit: String,
    /// What it handed on as `steps.<id>.output`.
    #[serde(default)]
    pub output: String,
    /// What making it cost (`null` when unknown, as for a command).
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// For a step with `approve`: who approved this result (a rerun with this key does not ask
    /// again); `None` while no one has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// A cached resolution of a conflict: the merge commit a merge agent's accepted tree became.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    /// The run that made it.
    pub run: String,
    /// The step whose base it was (`_final`: the final merge).
    pub step: String,
    /// The merge commit (its parents are the two sides as they were in that run).
    pub commit: String,
    /// The agent whose resolution was accepted.
    pub agent: String,
    /// What the merge agents used on it (`null` when unknown).
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

/// What a key is made of.
pub struct KeyParts<'a> {
    /// The rendered prompt, or the rendered command.
    pub action: &'a str,
    pub gate: &'a str,
    pub setup: &'a str,
    /// The agent profiles (with their CLIs' versions), or `command`.
    pub runner: &'a str,
    /// The digest of the base tree narrowed to the step's inputs ([`narrowed_base`]).
    pub base: &'a str,
    /// The digest of the `.worktreeinclude` files the step can see (empty: none).
    pub includes: &'a str,
}

/// The cache key of a step.
pub fn key(parts: &KeyParts<'_>) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(format!("medley-cache-{FORMAT}").as_bytes());
    for part in [
        parts.action,
        parts.gate,
        parts.setup,
        parts.runner,
        parts.base,
        parts.includes,
    ] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_hex()[..40].to_owned()
}

fn cache_dir(git_dir: &Path) -> PathBuf {
    git_dir.join("medley").join("cache")
}

fn key_ref(key: &str) -> String {
    crate::git::refs::cache_entry(key)
}

/// Where resolutions are kept, beside (not among) step results.
const MERGES: &str = "merges";

/// The cached resolution of `key`, if its record and pinned commit are both there.
pub fn lookup_resolution(repo: &Repo, key: &str) -> Option<Resolution> {
    let dir = cache_dir(&repo.git_dir).join(MERGES);
    let text = fs_err::read_to_string(dir.join(format!("{key}.json"))).ok()?;
    let entry: Resolution = serde_json::from_str(&text).ok()?;
    let pinned = repo
        .find_ref(&crate::git::refs::cache_resolution(key))
        .ok()??;
    (pinned.to_string() == entry.commit).then_some(entry)
}

/// Remembers an accepted resolution under `key`.
pub fn store_resolution(repo: &Repo, key: &str, entry: &Resolution) -> Result<(), GitError> {
    let commit = Oid::from_str(&entry.commit).context(|| format!("parse {}", entry.commit))?;
    let name = crate::git::refs::cache_resolution(key);
    repo.set_ref(&name, commit, "medley: cached resolution")?;
    write_record(&cache_dir(&repo.git_dir).join(MERGES), key, entry)
}

/// Writes `<dir>/<key>.json`.
fn write_record(dir: &Path, key: &str, entry: &impl Serialize) -> Result<(), GitError> {
    let io = |source| GitError::Io {
        path: dir.to_owned(),
        source,
    };
    fs_err::create_dir_all(dir).map_err(io)?;
    let json = serde_json::to_string(entry).map_err(|e| io(std::io::Error::other(e)))?;
    fs_err::write(dir.join(format!("{key}.json")), json).map_err(io)
}

/// The digest of a commit's tree narrowed to the paths matching `inputs` (globs): the tree id
/// itself when there are none.
pub fn narrowed_base(
    repo: &Repo,
    base: Oid,
    inputs: Option<&[String]>,
) -> Result<String, GitError> {
    let git = repo.open()?;
    let tree = git
        .find_commit(base)
        .and_then(|c| c.tree())
        .context(|| format!("read commit {base}"))?;
    let Some(inputs) = inputs else {
        return Ok(tree.id().to_string());
    };
    let globs = input_globs(inputs).map_err(|e| GitError::Cli {
        args: format!("inputs = {inputs:?}"),
        stderr: e.to_string(),
    })?;
    let mut hasher = blake3::Hasher::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(ObjectType::Blob) {
            let path = format!("{dir}{}", entry.name().unwrap_or(""));
            if globs.is_match(&path) {
                hasher.update(path.as_bytes());
                hasher.update(&[0]);
                hasher.update(entry.id().as_bytes());
                hasher.update(&entry.filemode().to_le_bytes());
            }
        }
        TreeWalkResult::Ok
    })
    .context(|| "walk the base tree".to_owned())?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// A step's `inputs` globs, matched against paths relative to the repository (`*` does not
/// cross `/`; `**` does).
pub fn input_globs(inputs: &[String]) -> Result<globset::GlobSet, globset::Error> {
    let mut globs = globset::GlobSetBuilder::new();
    for input in inputs {
        globs.add(
            globset::GlobBuilder::new(input)
                .literal_separator(true)
                .build()?,
        );
    }
    globs.build()
}

/// The cached result of `key`, if its record and pinned commit are both there.
pub fn lookup(repo: &Repo, key: &str) -> Option<Entry> {
    let text = fs_err::read_to_string(cache_dir(&repo.git_dir).join(format!("{key}.json"))).ok()?;
    let entry: Entry = serde_json::from_str(&text).ok()?;
    let pinned = repo.find_ref(&key_ref(key)).ok()??;
    (pinned.to_string() == entry.commit).then_some(entry)
}

/// Remembers a passed step's result under `key`.
pub fn store(repo: &Repo, key: &str, entry: &Entry) -> Result<(), GitError> {
    let commit = Oid::from_str(&entry.commit).context(|| format!("parse {}", entry.commit))?;
    repo.set_ref(&key_ref(key), commit, "medley: cached result")?;
    write_record(&cache_dir(&repo.git_dir), key, entry)
}

/// The keys of the cached results run `run`'s step `step` made.
fn keys_of(repo: &Repo, run: &str, step: &str) -> Vec<(String, Entry)> {
    let dir = cache_dir(&repo.git_dir);
    let mut found = Vec::new();
    for file in fs_err::read_dir(&dir).into_iter().flatten().flatten() {
        let path = file.path();
        let Some(key) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let Some(entry) = fs_err::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Entry>(&t).ok())
        else {
            continue;
        };
        if entry.run == run && entry.step == step {
            found.push((key.to_owned(), entry));
        }
    }
    found
}

/// Records, with the cached results run `run`'s step `step` made, that `by` approved them.
pub fn approve(repo: &Repo, run: &str, step: &str, by: &str) -> Result<(), GitError> {
    for (key, mut entry) in keys_of(repo, run, step) {
        entry.approved_by = Some(by.to_owned());
        store(repo, &key, &entry)?;
    }
    Ok(())
}

/// Forgets the cached results run `run`'s step `step` made (a person rejected them: a rerun
/// does the work again).
pub fn forget(repo: &Repo, run: &str, step: &str) {
    for (key, _) in keys_of(repo, run, step) {
        let _ = fs_err::remove_file(cache_dir(&repo.git_dir).join(format!("{key}.json")));
    }
}

/// Empties the cache, resolutions too; returns how many results (and resolutions) it held.
pub fn clear(repo: &Repo) -> Result<usize, GitError> {
    let count = repo.delete_refs(crate::git::refs::CACHE_PREFIX)?;
    let dir = cache_dir(&repo.git_dir);
    if dir.exists() {
        fs_err::remove_dir_all(&dir).map_err(|source| GitError::Io { path: dir, source })?;
    }
    Ok(count)
}

/// A template that renders something that changes every run (the run id, a commit id) makes
/// a new key every run: the names that do.
pub fn volatile_names(source: &str) -> Vec<&'static str> {
    ["run.id", "run.base", ".commit"]
        .into_iter()
        .filter(|name| source.contains(name))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A resolution is kept apart from step results: found by its key, not approved or
    /// forgotten with a step's results, and gone when the cache is emptied.
    #[test]
    fn resolutions_are_kept_beside_results_and_cleared_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| crate::git::test_git(dir.path(), args);
        git(&["init", "-q"]);
        fs_err::write(dir.path().join("a.txt"), "a\n").unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "c"]);
        let head = git(&["rev-parse", "HEAD"]).trim().to_owned();
        let repo = Repo::discover(dir.path()).unwrap();
        let resolution = Resolution {
            run: "r1".into(),
            step: "join".into(),
            commit: head.clone(),
            agent: "claude".into(),
            cost_usd: Some(0.25),
        };
        assert_eq!(lookup_resolution(&repo, "k1"), None);
        store_resolution(&repo, "k1", &resolution).unwrap();
        assert_eq!(lookup_resolution(&repo, "k1"), Some(resolution.clone()));
        // A step result under the same key is another entry.
        assert_eq!(lookup(&repo, "k1"), None);
        let entry = Entry {
            run: "r1".into(),
            step: "join".into(),
            base: head.clone(),
            commit: head,
            output: String::new(),
            cost_usd: None,
            approved_by: None,
        };
        store(&repo, "k2", &entry).unwrap();
        forget(&repo, "r1", "join");
        assert_eq!(lookup(&repo, "k2"), None);
        assert_eq!(lookup_resolution(&repo, "k1"), Some(resolution));
        assert_eq!(clear(&repo).unwrap(), 2);
        assert_eq!(lookup_resolution(&repo, "k1"), None);
    }

    #[test]
    fn keys_change_with_every_part() {
        let parts = KeyParts {
            action: "a",
            gate: "g",
            setup: "",
            runner: "command",
            base: "t",
            includes: "",
        };
        let base = key(&parts);
        assert_eq!(key(&parts), base);
        assert_ne!(
            key(&KeyParts {
                action: "b",
                ..parts
            }),
            base
        );
        assert_ne!(key(&KeyParts { gate: "", ..parts }), base);
        assert_ne!(key(&KeyParts { base: "u", ..parts }), base);
        assert_ne!(
            key(&KeyParts {
                includes: "i",
                ..parts
            }),
            base
        );
        // Parts are length-prefixed: moving text between them changes the key.
        assert_ne!(
            key(&KeyParts {
                action: "ag",
                gate: "",
                ..parts
            }),
            base
        );
    }
}
