//! Merging in memory: the results of a step's needs into its base (or the leaves into the
//! run's result), and a cached result replayed onto a new base.

use std::collections::BTreeSet;

use git2::Oid;

use super::{Context as _, Repo, Result, commit_tree};

/// The result of merging needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    Merged(Oid),
    Conflict {
        files: Vec<String>,
        steps: Vec<String>,
        /// The two sides that collided, for a merge agent to resolve.
        sides: Box<Sides>,
    },
}

/// The two sides of a conflict, and what is left to merge once it is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sides {
    /// The merge base of the two sides (the run's base when they share none).
    pub ancestor: Oid,
    /// What the results merged so far make.
    pub ours: Oid,
    /// The result that collided with them.
    pub theirs: Oid,
    /// The steps merged so far that changed a conflicting file (`ours`), and the step of
    /// `theirs`.
    pub ours_steps: Vec<String>,
    pub theirs_step: String,
    /// The results merged once this conflict is resolved (`theirs` included), and those left.
    pub merged: Vec<(String, Oid)>,
    pub rest: Vec<(String, Oid)>,
}

impl Repo {
    /// Merges the result commits of several steps in memory. One commit is returned as is; a
    /// commit another one already contains is skipped. A conflict names the files and the
    /// steps whose changes collide.
    pub fn merge(&self, base: Oid, results: &[(String, Oid)]) -> Result<MergeOutcome> {
        let repo = self.open()?;
        // A result whose tree is the base's changed nothing: it adds nothing to the merge (so
        // a hundred no-op leaves cost a hundred tree lookups, not a hundred merges).
        let tree_of = |oid: Oid| {
            repo.find_commit(oid)
                .map(|c| c.tree_id())
                .context(|| format!("read commit {oid}"))
        };
        let base_tree = tree_of(base)?;
        let mut changed = Vec::with_capacity(results.len());
        for result in results {
            if tree_of(result.1)? != base_tree {
                changed.push(result.clone());
            }
        }
        let results: &[(String, Oid)] = if changed.is_empty() {
            // Nothing changed: any of them (the first) is the merge, as one result always was.
            &results[..results.len().min(1)]
        } else {
            &changed
        };
        let Some(((_, first), rest)) = results.split_first() else {
            return Ok(MergeOutcome::Merged(base));
        };
        self.merge_onto(base, &results[..1], *first, rest)
    }

    /// Goes on merging `rest` into `acc`, the merge of the results `merged` (e.g. a conflict's
    /// resolution).
    pub fn merge_onto(
        &self,
        base: Oid,
        merged: &[(String, Oid)],
        acc: Oid,
        rest: &[(String, Oid)],
    ) -> Result<MergeOutcome> {
        let repo = self.open()?;
        let mut acc = acc;
        let mut merged: Vec<&(String, Oid)> = merged.iter().collect();
        for (n, next) in rest.iter().enumerate() {
            let (_, theirs) = next;
            if acc == *theirs {
                continue;
            }
            let ancestor = repo.merge_base(acc, *theirs).unwrap_or(base);
            if ancestor == *theirs {
                merged.push(next);
                continue;
            }
            if ancestor == acc {
                acc = *theirs;
                merged.push(next);
                continue;
            }
            let tree_of = |oid: Oid| super::tree_of(&repo, oid);
            let mut index = repo
                .merge_trees(
                    &tree_of(ancestor)?,
                    &tree_of(acc)?,
                    &tree_of(*theirs)?,
                    None,
                )
                .context(|| "merge".to_owned())?;
            if index.has_conflicts() {
                let files: Vec<String> = index
                    .conflicts()
                    .context(|| "read conflicts".to_owned())?
                    .filter_map(|c| {
                        let c = c.ok()?;
                        let entry = c.our.or(c.their).or(c.ancestor)?;
                        Some(String::from_utf8_lossy(&entry.path).into_owned())
                    })
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                // The steps merged so far that changed one of these files, and this one.
                let mut steps = Vec::new();
                for (step, oid) in merged.iter().map(|m| (&m.0, m.1)) {
                    let changed = self.changed_files(base, oid)?;
                    if changed.iter().any(|f| files.contains(f)) {
                        steps.push(step.clone());
                    }
                }
                let sides = Sides {
                    ancestor,
                    ours: acc,
                    theirs: *theirs,
                    ours_steps: steps.clone(),
                    theirs_step: next.0.clone(),
                    merged: merged
                        .iter()
                        .map(|m| (*m).clone())
                        .chain([next.clone()])
                        .collect(),
                    rest: rest[n + 1..].to_vec(),
                };
                steps.push(next.0.clone());
                return Ok(MergeOutcome::Conflict {
                    files,
                    steps,
                    sides: Box::new(sides),
                });
            }
            let tree = index
                .write_tree_to(&repo)
                .context(|| "write merged tree".to_owned())?;
            acc = commit_tree(&repo, tree, &[acc, *theirs], "medley: merge of needs")?;
            merged.push(next);
        }
        Ok(MergeOutcome::Merged(acc))
    }

    /// A cached result made on `old_base`, put on top of `new_base`: its tree as it is when the
    /// bases' trees are the same, else merged in memory (old base, new base, result). `None`
    /// on a conflict. The returned flag says whether a merge was needed.
    pub fn replay(
        &self,
        old_base: Oid,
        new_base: Oid,
        result: Oid,
        message: &str,
    ) -> Result<Option<(Oid, bool)>> {
        let repo = self.open()?;
        let tree_of = |oid: Oid| super::tree_of(&repo, oid);
        let (old, new, done) = (tree_of(old_base)?, tree_of(new_base)?, tree_of(result)?);
        let (tree, merged) = if old.id() == new.id() {
            (done.id(), false)
        } else {
            let mut index = repo
                .merge_trees(&old, &new, &done, None)
                .context(|| "replay a cached result".to_owned())?;
            if index.has_conflicts() {
                return Ok(None);
            }
            let tree = index
                .write_tree_to(&repo)
                .context(|| "write the replayed tree".to_owned())?;
            (tree, true)
        };
        Ok(Some((
            commit_tree(&repo, tree, &[new_base], message)?,
            merged,
        )))
    }
}
