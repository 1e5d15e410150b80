#!/usr/bin/env python3
"""A real Rust project (issue 13): a small crate with real crates.io dependencies (fetched now,
at benchmark time), and a mission of two parallel one-line edits plus a join, each gated by
`cargo test`, with `cargo test` as the mission's gate. Against the same three edits and four
`cargo test` runs done by hand in one checkout, in the same run:

- first run: medley on a cold pool against by hand in a cold checkout;
- second run, after an edit of the user's: medley (warm pool) against by hand (warm checkout).

Target: second run <= 1.5x by hand.

    python3 bench/real_project.py            (builds medley in release first)
"""
import os, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CARGO_TOML = """[package]
name = "sample"
version = "0.1.0"
edition = "2021"

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"
regex = "1"
anyhow = "1"
thiserror = "2"
itoa = "1"
memchr = "2"
smallvec = "1"
once_cell = "1"
unicode-width = "0.2"
bitflags = "2"
hex = "0.4"
"""

LIB = """use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Item {
    pub name: String,
    pub count: u32,
}

pub fn greeting() -> &'static str {
    "hello"
}

pub fn farewell() -> &'static str {
    "bye"
}

pub fn parse(text: &str) -> anyhow::Result<Item> {
    Ok(serde_json::from_str(text)?)
}

pub fn words(text: &str) -> usize {
    regex::Regex::new(r"\\w+").unwrap().find_iter(text).count()
}

pub fn number(n: u64) -> String {
    itoa::Buffer::new().format(n).to_owned()
}

pub fn width(text: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(text)
}

pub fn encode(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

pub fn first_space(text: &str) -> Option<usize> {
    memchr::memchr(b' ', text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_parses() {
        let item = parse(r#"{"name":"a","count":2}"#).unwrap();
        assert_eq!(item, Item { name: "a".into(), count: 2 });
    }

    #[test]
    fn it_counts() {
        assert_eq!(words("a b c"), 3);
        assert_eq!(number(42), "42");
        assert_eq!(width("abc"), 3);
        assert_eq!(encode(b"hi"), "6869");
        assert_eq!(first_space("a b"), Some(1));
        assert!(!greeting().is_empty() && !farewell().is_empty());
    }
}
"""

MISSION = """gate = "cargo test --quiet"

[steps.greet]
run = "sed -i 's/\\"hello\\"/\\"hello there\\"/' src/lib.rs"
gate = "cargo test --quiet"
cache = false

[steps.part]
run = "sed -i 's/\\"bye\\"/\\"goodbye\\"/' src/lib.rs"
gate = "cargo test --quiet"
cache = false

[steps.join]
needs = ["greet", "part"]
run = "sed -i 's/pub count: u32/pub count: u64/' src/lib.rs"
gate = "cargo test --quiet"
cache = false
"""

EDITS = [
    ("\"hello\"", "\"hello there\""),
    ("\"bye\"", "\"goodbye\""),
    ("pub count: u32", "pub count: u64"),
]


def sh(cmd, cwd, env):
    subprocess.run(cmd, cwd=cwd, check=True, shell=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_crate(path, env):
    os.makedirs(os.path.join(path, "src"))
    with open(os.path.join(path, "Cargo.toml"), "w") as f:
        f.write(CARGO_TOML)
    with open(os.path.join(path, "src", "lib.rs"), "w") as f:
        f.write(LIB)
    with open(os.path.join(path, ".gitignore"), "w") as f:
        f.write("target/\n")
    sh("cargo generate-lockfile -q", path, env)


def user_edit(path):
    lib = os.path.join(path, "src", "lib.rs")
    with open(lib) as f:
        text = f.read()
    with open(lib, "w") as f:
        f.write(text.replace("pub fn words", "/// Counts words.\npub fn words"))


def by_hand(path, env):
    """The three edits and four `cargo test` runs in one checkout; the edits are undone after."""
    lib = os.path.join(path, "src", "lib.rs")
    with open(lib) as f:
        original = f.read()
    start = time.perf_counter()
    text = original
    for old, new in EDITS:
        text = text.replace(old, new)
        with open(lib, "w") as f:
            f.write(text)
        sh("cargo test --quiet", path, env)
    sh("cargo test --quiet", path, env)
    wall = time.perf_counter() - start
    with open(lib, "w") as f:
        f.write(original)
    return wall


def medley_run(medley, repo, env):
    start = time.perf_counter()
    out = subprocess.run([medley, "run", "m", "--output", "plain"], cwd=repo, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"medley failed:\n{out.stderr[-3000:]}")
    return wall


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "medley-cli"], cwd=ROOT, check=True)
    medley = os.path.join(ROOT, "target", "release", "medley")
    work = tempfile.mkdtemp(prefix="medley-bench-real-")
    home = os.path.join(work, "home")
    os.makedirs(home)
    env = dict(os.environ)
    env.pop("CARGO_TARGET_DIR", None)
    env.pop("XDG_CACHE_HOME", None)
    env["CARGO_TERM_COLOR"] = "never"
    # medley's own cache (the pool) in a private place; cargo keeps the user's registry.
    medley_env = dict(env, XDG_CACHE_HOME=os.path.join(home, "cache"))

    repo = os.path.join(work, "repo")
    make_crate(repo, env)
    os.makedirs(os.path.join(repo, "missions"))
    with open(os.path.join(repo, "missions", "m.toml"), "w") as f:
        f.write(MISSION)
    sh("git init -q -b main && git add -A && git -c user.name=b -c user.email=b@b commit -qm crate",
       repo, env)
    # The crates are fetched once, before anything is timed.
    sh("cargo fetch -q", repo, env)

    hand = os.path.join(work, "hand")
    shutil.copytree(repo, hand, ignore=shutil.ignore_patterns("target"))

    first_medley = medley_run(medley, repo, medley_env)
    first_hand = by_hand(hand, env)
    user_edit(repo)
    user_edit(hand)
    second_medley = medley_run(medley, repo, medley_env)
    second_hand = by_hand(hand, env)

    print("a crate with 12 crates.io dependencies; 2 parallel edits + a join, each gated by "
          "`cargo test`, and `cargo test` as the mission gate")
    print(f"  first run:  medley {first_medley:6.1f} s   by hand {first_hand:6.1f} s   "
          f"{first_medley / first_hand:4.1f}x")
    print(f"  second run: medley {second_medley:6.1f} s   by hand {second_hand:6.1f} s   "
          f"{second_medley / second_hand:4.1f}x  (target <= 1.5x)")
    pool = os.path.join(home, "cache", "medley", "worktrees")
    total = 0
    for dirpath, _, names in os.walk(pool):
        for name in names:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    print(f"  pool size on disk: {total / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
