//! Test support for medley's end-to-end tests: a hermetic environment for the real binary,
//! temporary git repositories, and one-string command output for snapshots.

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
        cmd.current_dir(self.work())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("TMPDIR", std::env::temp_dir())
            .env("COLUMNS", "100")
            .env("NO_COLOR", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1");
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
