//! Test support for medley's end-to-end tests: a hermetic environment for the real binary,
//! temporary git repositories, and one-string command output for snapshots.

// Test support: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// The workspace root (the repository this crate lives in).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace root")
        .to_path_buf()
}

/// A temporary directory and a clean environment to run `medley` in.
pub struct TestEnv {
    dir: TempDir,
    bin: PathBuf,
}

impl TestEnv {
    /// A new empty directory; `bin` is the medley binary under test.
    pub fn new(bin: impl Into<PathBuf>) -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("medley-test-")
            .tempdir()
            .expect("a temporary directory");
        fs_err::create_dir_all(dir.path().join("home")).expect("a home directory");
        fs_err::create_dir_all(dir.path().join("work")).expect("a work directory");
        TestEnv {
            dir,
            bin: bin.into(),
        }
    }

    /// The directory commands run in.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Writes a file under the work directory, creating parents.
    pub fn write(&self, path: &str, text: &str) -> PathBuf {
        let path = self.work().join(path);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).expect("parent directories");
        }
        fs_err::write(&path, text).expect("a written file");
        path
    }

    pub fn read(&self, path: &str) -> String {
        fs_err::read_to_string(self.work().join(path)).expect("a readable file")
    }

    /// `medley` with a cleared environment: only PATH, HOME and fixed terminal facts.
    pub fn medley(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        let mut path = std::ffi::OsString::from(self.dir.path().join("bin"));
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        cmd.current_dir(self.work())
            .env_clear()
            .env("PATH", path)
            .env("MEDLEY_FAKE_SCRIPT", self.script())
            // A user in a root container sets this for Claude Code's bypass mode (AGENTS.md 3).
            .env("IS_SANDBOX", "1")
            .env("MEDLEY_NETWORK_WAIT", "1s")
            .env("HOME", self.dir.path().join("home"))
            .env("TMPDIR", std::env::temp_dir())
            .env("COLUMNS", "100")
            .env("NO_COLOR", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("MEDLEY_STOP_GRACE", "300ms");
        cmd
    }

    /// Runs `medley ARGS...` and returns its output.
    pub fn run(&self, args: &[&str]) -> CommandOutput {
        let output = self
            .medley()
            .args(args)
            .output()
            .expect("the medley binary runs");
        CommandOutput::new(output, self.work())
    }
}

/// A command's exit status, stdout and stderr, with temporary paths replaced.
pub struct CommandOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn new(output: Output, work: PathBuf) -> CommandOutput {
        let clean = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes).replace(&work.display().to_string(), "$WORK")
        };
        CommandOutput {
            code: output.status.code().unwrap_or(-1),
            stdout: clean(&output.stdout),
            stderr: clean(&output.stderr),
        }
    }

    /// One string for a snapshot: the exit code, then stdout and stderr.
    pub fn snapshot(&self) -> String {
        let mut out = format!("exit: {}\n", self.code);
        if !self.stdout.is_empty() {
            out.push_str("----- stdout -----\n");
            out.push_str(&self.stdout);
            if !self.stdout.ends_with('\n') {
                out.push('\n');
            }
        }
        if !self.stderr.is_empty() {
            out.push_str("----- stderr -----\n");
            out.push_str(&self.stderr);
            if !self.stderr.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }
}

/// A fingerprint of everything a run must not change: HEAD, the index file and every file of
/// the working tree (outside `.git`), by content.
pub type Fingerprint = std::collections::BTreeMap<String, Vec<u8>>;

impl TestEnv {
    /// Runs `git ARGS...` in the work directory, hermetically; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        self.git_with(&[], args)
    }

    /// [`TestEnv::git`] with extra environment variables.
    pub fn git_with(&self, envs: &[(&str, &std::ffi::OsStr)], args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(self.work())
            .env_clear()
            .envs(envs.iter().copied())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A repository with `files` committed on `main`.
    pub fn repo(&self, files: &[(&str, &str)]) {
        self.git(&["init", "-q", "-b", "main"]);
        for (path, text) in files {
            self.write(path, text);
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", "initial"]);
    }

    /// HEAD, the index file, every ref that is not medley's (the stash among them) and every
    /// working-tree file, by content.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut print = Fingerprint::new();
        let git_dir = PathBuf::from(
            self.git(&["rev-parse", "--absolute-git-dir"])
                .trim()
                .to_owned(),
        );
        for name in ["HEAD", "index"] {
            if let Ok(bytes) = fs_err::read(git_dir.join(name)) {
                print.insert(format!(".git/{name}"), bytes);
            }
        }
        print.insert(
            "HEAD commit".to_owned(),
            self.git(&["rev-parse", "HEAD"]).into_bytes(),
        );
        let refs: String = self
            .git(&["for-each-ref", "--format=%(refname) %(objectname)"])
            .lines()
            .filter(|l| !l.starts_with("refs/medley/") && !l.starts_with("refs/heads/medley/"))
            .map(|l| format!("{l}\n"))
            .collect();
        print.insert("refs".to_owned(), refs.into_bytes());
        let work_git = self.work().join(".git");
        let mut stack = vec![self.work()];
        while let Some(dir) = stack.pop() {
            for entry in fs_err::read_dir(&dir).expect("a readable directory") {
                let path = entry.expect("an entry").path();
                if path == work_git {
                    continue;
                }
                let meta = fs_err::symlink_metadata(&path).expect("metadata");
                let name = path
                    .strip_prefix(self.work())
                    .unwrap()
                    .display()
                    .to_string();
                if meta.is_dir() {
                    stack.push(path);
                } else if meta.file_type().is_symlink() {
                    let target = fs_err::read_link(&path).expect("a link");
                    print.insert(name, target.as_os_str().as_encoded_bytes().to_vec());
                } else {
                    print.insert(name, fs_err::read(&path).unwrap_or_default());
                }
            }
        }
        print
    }

    /// The files of a commit-ish, with their contents.
    pub fn tree(&self, rev: &str) -> std::collections::BTreeMap<String, String> {
        self.git(&["ls-tree", "-r", "--name-only", rev])
            .lines()
            .map(|path| {
                (
                    path.to_owned(),
                    self.git(&["show", &format!("{rev}:{path}")]),
                )
            })
            .collect()
    }

    /// The result branches (`medley/...`).
    pub fn result_branches(&self) -> Vec<String> {
        self.git(&["branch", "--list", "medley/*", "--format=%(refname:short)"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The events of the only (or newest) run's journal.
    pub fn journal(&self) -> Vec<serde_json::Value> {
        let git_dir = self.git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]);
        let runs = PathBuf::from(git_dir.trim()).join("medley/runs");
        let mut ids: Vec<_> = fs_err::read_dir(&runs)
            .expect("a runs directory")
            .map(|e| e.unwrap().path())
            .collect();
        ids.sort();
        let text = fs_err::read_to_string(ids.last().expect("a run").join("events.jsonl"))
            .expect("a journal");
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The registered worktrees other than the repository itself and the pool's slots.
    pub fn worktrees_outside_pool(&self) -> Vec<String> {
        self.git(&["worktree", "list", "--porcelain"])
            .lines()
            .filter_map(|l| l.strip_prefix("worktree "))
            .skip(1)
            .filter(|p| !p.contains("/pool/s"))
            .map(str::to_owned)
            .collect()
    }

    /// The pool's worktree slots (`<cache>/medley/worktrees/<repo>/pool/s<n>`).
    pub fn pool_slots(&self) -> Vec<PathBuf> {
        let root = self.home().join(".cache/medley/worktrees");
        let mut slots = Vec::new();
        for repo in fs_err::read_dir(&root).into_iter().flatten().flatten() {
            for slot in fs_err::read_dir(repo.path().join("pool"))
                .into_iter()
                .flatten()
                .flatten()
            {
                if slot.path().is_dir() {
                    slots.push(slot.path());
                }
            }
        }
        slots.sort();
        slots
    }

    /// The home directory medley runs with (its cache holds the worktrees).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
}

impl TestEnv {
    /// Puts the fake agent CLI on PATH under `names` (e.g. `claude`, `codex`), steered by the
    /// script `lines` (see `fakes/agent.rs`). Returns the script's path.
    pub fn fakes(&self, fake: impl AsRef<Path>, names: &[&str], lines: &str) -> PathBuf {
        let fake = fake.as_ref();
        let bin = self.dir.path().join("bin");
        fs_err::create_dir_all(&bin).expect("a bin directory");
        for name in names {
            let link = bin.join(name);
            if !link.exists() {
                std::os::unix::fs::symlink(fake, &link).expect("a symlink to the fake");
            }
        }
        let script = self.script();
        fs_err::write(&script, lines).expect("a script");
        script
    }

    /// The fake agents' script (its calls are recorded beside it).
    pub fn script(&self) -> PathBuf {
        self.dir.path().join("fake.script")
    }

    /// The calls the fake agents received: cli, argv, cwd, prompt, stdin.
    pub fn fake_calls(&self) -> Vec<serde_json::Value> {
        fs_err::read_to_string(self.script().with_extension("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}
