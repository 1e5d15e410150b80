#!/usr/bin/env python3
"""Warm worktrees (issue 13), three figures:

1. No-op steps: 100 independent `true` steps at max_parallel 2, run with `--no-cache` on a warm
   pool, against `make -j2` of the same 100 jobs in the same run (target: <= 2x). The same with
   `--fresh-worktrees` for comparison.
2. Cached rerun: the same 100 steps, everything cached: wall time of `medley run`
   (target: <= 100 ms).
3. Big repository: 10,000 files, a chain of 20 steps each changing one file; per step, ready ->
   process spawned (`step_ready` -> `step_started`), pooled against fresh (target: pooled <= 10 %
   of fresh).

And the pool's size on disk after them.

    python3 bench/pool.py            (builds medley in release first)
"""
import json, os, statistics, subprocess, sys, tempfile, time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd, cwd, env=None):
    subprocess.run(cmd, cwd=cwd, check=True, shell=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ts(event):
    return datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()


def repo_with(files, mission):
    repo = tempfile.mkdtemp(prefix="medley-bench-pool-")
    sh("git init -q -b main", repo)
    for i in range(files):
        d = os.path.join(repo, f"d{i % 100:02}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i}.txt"), "w") as f:
            f.write(f"file {i}\n")
    os.makedirs(os.path.join(repo, "missions"))
    with open(os.path.join(repo, "missions", "bench.toml"), "w") as f:
        f.write(mission)
    sh("git add -A && git -c user.name=b -c user.email=b@b commit -qm files", repo)
    return repo


def run(medley, repo, env, *args):
    start = time.perf_counter()
    out = subprocess.run([medley, "run", "bench", "--output", "json", *args], cwd=repo, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"medley failed: {out.stderr[-2000:]}")
    return wall, [json.loads(l) for l in out.stdout.splitlines()]


def noop_mission(n):
    lines = ["max_parallel = 2"]
    for i in range(n):
        lines += ["", f"[steps.s{i}]", 'run = "true"']
    return "\n".join(lines) + "\n"


def make_wall(n, tries=5):
    d = tempfile.mkdtemp(prefix="medley-bench-make-")
    with open(os.path.join(d, "Makefile"), "w") as f:
        f.write("all: " + " ".join(f"s{i}" for i in range(n)) + "\n")
        f.write(".PHONY: all " + " ".join(f"s{i}" for i in range(n)) + "\n")
        for i in range(n):
            f.write(f"s{i}:\n\t@true\n")
    walls = []
    for _ in range(tries):
        start = time.perf_counter()
        subprocess.run(["make", "-s", "-j2"], cwd=d, check=True)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def chain_mission(n):
    lines = ["max_parallel = 1"]
    for i in range(n):
        lines += ["", f"[steps.c{i}]", f'run = "echo {i} >> d00/f0.txt"', "cache = false"]
        if i:
            lines.append(f'needs = ["c{i - 1}"]')
    return "\n".join(lines) + "\n"


def ready_to_started(events):
    ready, started = {}, {}
    for e in events:
        if e["type"] == "step_ready":
            ready[e["step"]] = ts(e)
        elif e["type"] == "step_started" and e["step"] not in started:
            started[e["step"]] = ts(e)
    return [(started[s] - ready[s]) * 1000 for s in started]


def du(path):
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "medley-cli"], cwd=ROOT, check=True)
    medley = os.path.join(ROOT, "target", "release", "medley")
    home = tempfile.mkdtemp(prefix="medley-bench-home-")
    # A user's environment: a HOME of its own (no config in it), and none of git's variables
    # that name other config files (with them, medley asks git about every snapshot).
    env = dict(os.environ, HOME=home)
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM",
                 "GIT_CONFIG_NOSYSTEM"):
        env.pop(name, None)

    n = 100
    repo = repo_with(10, noop_mission(n))
    run(medley, repo, env)  # warms the pool and fills the cache
    pooled = statistics.median(run(medley, repo, env, "--no-cache")[0] for _ in range(3))
    fresh = statistics.median(
        run(medley, repo, env, "--no-cache", "--fresh-worktrees")[0] for _ in range(3))
    make = make_wall(n)
    cached = statistics.median(run(medley, repo, env)[0] for _ in range(5))
    print(f"no-op: {n} `true` steps, max_parallel 2")
    print(f"  medley, warm pool:        {pooled * 1000:7.0f} ms  ({pooled / n * 1000:.1f} ms/step)")
    print(f"  medley, fresh worktrees:  {fresh * 1000:7.0f} ms  ({fresh / n * 1000:.1f} ms/step)")
    print(f"  make -j2:                 {make * 1000:7.0f} ms")
    print(f"  ratio pooled / make:      {pooled / make:7.1f}x  (target <= 2x)")
    print(f"cached rerun of {n} steps:  {cached * 1000:7.0f} ms  (target <= 100 ms)")

    big = repo_with(10_000, chain_mission(20))
    run(medley, big, env)  # warms the pool
    pooled_starts = ready_to_started(run(medley, big, env)[1])
    fresh_starts = ready_to_started(run(medley, big, env, "--fresh-worktrees")[1])
    p, f = statistics.mean(pooled_starts), statistics.mean(fresh_starts)
    print("big repository: 10,000 files, a chain of 20 steps; ready -> process spawned")
    print(f"  pooled: {p:7.1f} ms mean (max {max(pooled_starts):.1f})")
    print(f"  fresh:  {f:7.1f} ms mean (max {max(fresh_starts):.1f})")
    print(f"  pooled / fresh: {p / f * 100:5.1f} %  (target <= 10 %)")

    pools = os.path.join(home, ".cache", "medley", "worktrees")
    print(f"pool size on disk after these: {du(pools) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
