//! The pool of warm worktrees: real, registered, detached git worktrees under
//! `<cache>/medley/worktrees/<repo-id>/pool/<slot>`, leased one at a time and reset to a step's
//! base, so that what build tools leave in ignored files (`target/`, `node_modules/`, `.venv/`)
//! carries over from one step (and run) to the next.
//!
//! - **Leases** are file locks (`<slot>.lock`), so two medley processes never get the same
//!   slot, and a killed process's leases end with it. A process keeps the locks of the slots it
//!   has used until it exits and hands them out again itself: a lock released while another
//!   thread forks a child would otherwise look held for a moment (the child shares the open
//!   file until it execs), and the slot would be passed over.
//! - **Reset** is git's own: `checkout --detach --force` of the base (it writes only the files
//!   that differ, through filters and eol rules), `reset --hard` (index, merge state), then
//!   `clean -ffd` (untracked files that are not ignored, nested repositories included). The
//!   tracked and untracked-not-ignored content is then exactly a fresh `git worktree add`'s;
//!   ignored files stay. A reset that was interrupted is done again; one that fails discards
//!   the slot and makes a new one.
//! - **State** (`<slot>.json`): the base it was last reset to, when it was last leased (for
//!   trimming the least recently used), whether a failed step keeps it for a look, and what the
//!   runner records there (setup stamps, copied include files).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use git2::Oid;
use serde::{Deserialize, Serialize};

use super::{GitError, Repo, Result};
use reset::{attributes_changed, clear_operation_state};

/// The pool of one repository.
#[derive(Debug, Clone)]
pub struct Pool {
    dir: PathBuf,
    repo: Repo,
}

/// What a slot remembers between leases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlotState {
    /// The commit it was last reset to.
    #[serde(default)]
    pub base: Option<String>,
    /// A reset started and has not finished.
    #[serde(default)]
    pub resetting: bool,
    /// When it was last leased (seconds since the epoch).
    #[serde(default)]
    pub used: u64,
    /// A failed step keeps the slot for a look until the next run of its mission.
    #[serde(default)]
    pub kept: Option<Kept>,
    /// Free for the runner: e.g. the stamp of the last `setup` that passed here.
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
}

/// Who keeps a slot after a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub mission: String,
    pub run: String,
    pub step: String,
}

/// A slot leased to one step (or one agent of a step): its path, held until dropped.
#[derive(Debug)]
pub struct Lease {
    pub path: PathBuf,
    pub slot: String,
    /// Made for this lease (nothing carried over).
    pub made: bool,
    pub state: SlotState,
    /// The commit this process last saw the slot clean at, with nothing run in it since (see
    /// [`Lease::mark_clean`]).
    known_clean: Option<Oid>,
    state_path: PathBuf,
    guard: Guard,
}

/// A slot lock this process holds.
#[derive(Debug)]
struct Held {
    _file: File,
    /// A lease has it now.
    leased: bool,
    /// What the last lease marked it clean at.
    clean: Option<Oid>,
    /// Its state as this process last wrote or read it: while the lock is held no one else
    /// writes it.
    state: Option<SlotState>,
}

/// The slot locks this process holds, by lock file.
static HELD: std::sync::Mutex<BTreeMap<PathBuf, Held>> = std::sync::Mutex::new(BTreeMap::new());

/// Marks a slot free in this process when its lease ends (the file lock stays held), with
/// what the lease marked it clean at (a slot looked at but not handed out keeps its mark).
#[derive(Debug)]
struct Guard {
    lock: PathBuf,
    clean: Option<Oid>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = held.get_mut(&self.lock) {
            held.leased = false;
            held.clean = self.clean;
        }
    }
}

/// Remembers the state of a slot this process holds, as written or read.
fn remember(lock: &Path, state: &SlotState) {
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(held) = held.get_mut(lock) {
        held.state = Some(state.clone());
    }
}

/// A slot that is not leased, as [`Pool::slots`] lists it.
#[derive(Debug, Clone)]
pub struct FreeSlot {
    pub slot: String,
    pub path: PathBuf,
    pub state: SlotState,
}

impl Pool {
    /// The pool of `repo` under `worktrees` (`<cache>/medley/worktrees/<repo-id>`).
    pub fn new(repo: &Repo, worktrees: &Path) -> Pool {
        Pool {
            dir: worktrees.join("pool"),
            repo: repo.clone(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leases a free slot reset to `base`, or makes a new one. A slot already at `base` is
    /// preferred (nothing to write), then the most recently used. Slots kept by a failed step
    /// of another mission, or of this run, are skipped; those an earlier run of `mission` kept
    /// are released (this is its next run).
    pub fn lease(&self, base: Oid, mission: &str, run: &str) -> Result<Lease> {
        let mut free: Vec<Lease> = Vec::new();
        for slot in self.slot_names()? {
            let Some(mut lease) = self.try_lock(&slot)? else {
                continue;
            };
            if let Some(kept) = &lease.state.kept {
                if kept.mission != mission || kept.run == run {
                    continue;
                }
                lease.state.kept = None;
                lease.save()?;
            }
            if lease.path.is_dir() {
                free.push(lease);
            }
        }
        let wanted = base.to_string();
        free.sort_by_key(|l| {
            (
                l.state.base.as_deref() != Some(wanted.as_str()) || l.state.resetting,
                std::cmp::Reverse(l.state.used),
            )
        });
        let mut free = free.into_iter();
        if let Some(mut lease) = free.next() {
            drop(free);
            // Handed out: whatever runs in it ends its clean mark (the others keep theirs).
            lease.guard.clean = None;
            if self.reset(&mut lease, base).is_ok() {
                return self.touch(lease);
            }
            // Half-made or broken beyond a reset: made again under the same name.
            self.discard(&lease.path)?;
            self.make(&mut lease, base)?;
            return self.touch(lease);
        }
        // No free slot: a new one, under the first name no live lease holds.
        fs_err::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        for n in 0.. {
            let slot = format!("s{n}");
            if self.dir.join(&slot).is_dir() {
                continue;
            }
            let Some(mut lease) = self.try_lock(&slot)? else {
                continue;
            };
            if lease.path.exists() {
                // Made by another process between the check and the lock.
                continue;
            }
            self.make(&mut lease, base)?;
            return self.touch(lease);
        }
        unreachable!("an unbounded range ends only by returning")
    }

    /// Every slot that no live process leases.
    pub fn slots(&self) -> Result<Vec<FreeSlot>> {
        let mut out = Vec::new();
        for slot in self.slot_names()? {
            if let Some(lease) = self.try_lock(&slot)? {
                out.push(FreeSlot {
                    slot: lease.slot.clone(),
                    path: lease.path.clone(),
                    state: lease.state.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Removes the least recently used free slots beyond `keep` (kept ones count, and go last).
    /// Returns the removed slots' paths.
    pub fn trim(&self, keep: usize) -> Result<Vec<PathBuf>> {
        let mut locked: Vec<Lease> = Vec::new();
        for slot in self.slot_names()? {
            if let Some(lease) = self.try_lock(&slot)? {
                locked.push(lease);
            }
        }
        let total = self.slot_names()?.len();
        if total <= keep {
            return Ok(Vec::new());
        }
        locked.sort_by_key(|l| (l.state.kept.is_some(), l.state.used));
        let mut removed = Vec::new();
        for lease in locked.into_iter().take(total - keep) {
            self.remove_slot(&lease)?;
            removed.push(lease.path.clone());
        }
        Ok(removed)
    }

    /// Keeps the pool within bounds after a run that ran up to `max_parallel` steps at once:
    /// twice the largest `max_parallel` of the last ten runs, removing the least recently used
    /// free slots beyond that. Returns the removed slots' paths.
    pub fn bound(&self, max_parallel: usize) -> Result<Vec<PathBuf>> {
        let path = self.dir.join("recent.json");
        let mut recent: Vec<usize> = fs_err::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        recent.push(max_parallel.max(1));
        if recent.len() > 10 {
            recent.drain(..recent.len() - 10);
        }
        if let Ok(json) = serde_json::to_string(&recent) {
            let _ = fs_err::write(&path, json);
        }
        self.trim(2 * recent.iter().copied().max().unwrap_or(1))
    }

    /// Frees every slot a failed step kept (and no live process leases); returns who kept them.
    pub fn release_kept(&self) -> Result<Vec<Kept>> {
        let mut released = Vec::new();
        for slot in self.slot_names()? {
            if let Some(mut lease) = self.try_lock(&slot)?
                && let Some(kept) = lease.state.kept.take()
            {
                lease.save()?;
                released.push(kept);
            }
        }
        Ok(released)
    }

    /// Removes every slot no live process leases (`medley clean --pool`).
    pub fn clear(&self) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for slot in self.slot_names()? {
            if let Some(lease) = self.try_lock(&slot)? {
                self.remove_slot(&lease)?;
                removed.push(lease.path.clone());
            }
        }
        Ok(removed)
    }

    /// The bytes the pool's slots hold on disk.
    pub fn disk_usage(&self) -> u64 {
        let mut total = 0;
        let mut stack: Vec<PathBuf> = self
            .slot_names()
            .unwrap_or_default()
            .into_iter()
            .map(|slot| self.dir.join(slot))
            .collect();
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs_err::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.path().symlink_metadata() else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push(entry.path());
                } else {
                    total += meta.len();
                }
            }
        }
        total
    }

    /// Slot names: the pool's directories and lock files (a lock without a directory is a slot
    /// whose making was interrupted).
    fn slot_names(&self) -> Result<Vec<String>> {
        let mut names = std::collections::BTreeSet::new();
        let Ok(entries) = fs_err::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let slot = name
                .strip_suffix(".lock")
                .or_else(|| name.strip_suffix(".json"))
                .unwrap_or(&name);
            if slot.starts_with('s') && slot[1..].chars().all(|c| c.is_ascii_digit()) {
                names.insert(slot.to_owned());
            }
        }
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort_by_key(|n| n[1..].parse::<u64>().unwrap_or(u64::MAX));
        Ok(names)
    }

    /// Takes `slot`'s lock, or `None` when a lease (of this or another live process) holds it.
    fn try_lock(&self, slot: &str) -> Result<Option<Lease>> {
        let lock_path = self.dir.join(format!("{slot}.lock"));
        let (known_clean, known_state) = {
            let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
            match held.get_mut(&lock_path) {
                Some(Held { leased: true, .. }) => return Ok(None),
                Some(held) => {
                    held.leased = true;
                    // A mark holds for the next lease only.
                    (held.clean.take(), held.state.clone())
                }
                None => {
                    let file = fs_err::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(&lock_path)
                        .map_err(io(&lock_path))?
                        .into_parts()
                        .0;
                    match file.try_lock() {
                        Ok(()) => {}
                        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                        Err(std::fs::TryLockError::Error(source)) => {
                            return Err(GitError::Io {
                                path: lock_path,
                                source,
                            });
                        }
                    }
                    held.insert(
                        lock_path.clone(),
                        Held {
                            _file: file,
                            leased: true,
                            clean: None,
                            state: None,
                        },
                    );
                    (None, None)
                }
            }
        };
        let guard = Guard {
            lock: lock_path.clone(),
            clean: known_clean,
        };
        let state_path = self.dir.join(format!("{slot}.json"));
        let state = match known_state {
            Some(state) => state,
            None => {
                let state: SlotState = fs_err::read_to_string(&state_path)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                remember(&lock_path, &state);
                state
            }
        };
        Ok(Some(Lease {
            path: self.dir.join(slot),
            slot: slot.to_owned(),
            made: false,
            state,
            known_clean,
            state_path,
            guard,
        }))
    }

    fn make(&self, lease: &mut Lease, base: Oid) -> Result<()> {
        self.repo.add_worktree(&lease.path, base)?;
        lease.made = true;
        lease.state = SlotState {
            base: Some(base.to_string()),
            ..SlotState::default()
        };
        Ok(())
    }

    /// Resets a slot to `base` (see the module's documentation).
    fn reset(&self, lease: &mut Lease, base: Oid) -> Result<()> {
        // A slot already at `base` and clean (as a previous step that changed nothing leaves
        // it) is what a reset would make. Clean is known without a look when this process saw
        // it so, with nothing run in it since.
        if !lease.state.resetting
            && lease.state.base.as_deref() == Some(base.to_string().as_str())
            && (lease.known_clean == Some(base)
                || Repo::open_worktree(&lease.path).ok().is_some_and(|repo| {
                    repo.head()
                        .ok()
                        .and_then(|h| h.target())
                        .is_some_and(|head| head == base)
                        && super::clean_tree(&repo).is_some()
                }))
        {
            return Ok(());
        }
        lease.state.resetting = true;
        lease.save()?;
        let path = &lease.path;
        let base_text = base.to_string();
        // checkout rewrites only files whose content differs; a changed eol or filter rule
        // in a `.gitattributes` changes how unchanged files must be written, so then all are.
        let attributes_changed = attributes_changed(path, lease.state.base.as_deref(), base);
        // `--force` also resets the index to the base: staged changes go, and what was staged
        // but is not in the base becomes untracked, which `clean` removes.
        git_in(
            path,
            &["checkout", "--detach", "--force", "--quiet", &base_text],
        )?;
        if attributes_changed {
            // With no index, every file is written again, through the base's rules.
            let index = git_out(
                path,
                &["rev-parse", "--path-format=absolute", "--git-path", "index"],
            )?;
            let _ = fs_err::remove_file(index.trim());
            git_in(path, &["reset", "--hard", "--quiet"])?;
        }
        clear_operation_state(path);
        git_in(path, &["clean", "-ffdq"])?;
        lease.state.resetting = false;
        lease.state.base = Some(base.to_string());
        lease.save()
    }

    fn touch(&self, mut lease: Lease) -> Result<Lease> {
        lease.state.used = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        lease.save()?;
        Ok(lease)
    }

    fn discard(&self, path: &Path) -> Result<()> {
        self.repo.remove_worktree(path)?;
        if path.exists() {
            fs_err::remove_dir_all(path).map_err(io(path))?;
        }
        Ok(())
    }

    fn remove_slot(&self, lease: &Lease) -> Result<()> {
        self.discard(&lease.path)?;
        let _ = fs_err::remove_file(&lease.state_path);
        let lock_path = self.dir.join(format!("{}.lock", lease.slot));
        let _ = fs_err::remove_file(&lock_path);
        HELD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&lock_path);
        Ok(())
    }
}

impl Lease {
    /// Records that the slot is clean at `head` (its HEAD, with nothing changed, as a status
    /// just found it) and that nothing will run in it before the lease ends: the next lease of
    /// this process at `head` then needs no look.
    pub fn mark_clean(&mut self, head: Oid) {
        self.guard.clean = Some(head);
    }

    /// Writes the slot's state (call after changing [`Lease::state`]).
    pub fn save(&self) -> Result<()> {
        let json = serde_json::to_string(&self.state).map_err(|e| GitError::Io {
            path: self.state_path.clone(),
            source: std::io::Error::other(e),
        })?;
        // Written in place, under the slot's lock: a write-and-rename costs a flush of the data
        // on ext4 (auto_da_alloc), on every lease. A state torn by a kill reads as none, and a
        // slot with no state is reset in full.
        use std::io::Write as _;
        let mut file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.state_path)
            .map_err(io(&self.state_path))?;
        file.write_all(json.as_bytes())
            .and_then(|()| file.set_len(json.len() as u64))
            .map_err(io(&self.state_path))?;
        remember(&self.guard.lock, &self.state);
        Ok(())
    }

    /// Keeps the slot for a look after a failed step, until the next run of `kept.mission` (or
    /// `clean`); the lease ends.
    pub fn keep(mut self, kept: Kept) -> Result<()> {
        self.state.kept = Some(kept);
        self.save()
    }
}

fn git_in(worktree: &Path, args: &[&str]) -> Result<()> {
    super::run(worktree, args).map(|_| ())
}

fn git_out(worktree: &Path, args: &[&str]) -> Result<String> {
    super::run(worktree, args).map(|out| String::from_utf8_lossy(&out).into_owned())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> GitError + '_ {
    move |source| GitError::Io {
        path: path.to_owned(),
        source,
    }
}

mod reset;
#[cfg(test)]
mod tests;
