#!/usr/bin/env python3
"""No-op steps against make, interleaved (issue 13): 100 independent `true` steps at
max_parallel 2 with `--no-cache` on a warm pool, and `make -j2` of the same 100 jobs, one run of
each in turn, ROUNDS times (default 15). On a small VM both move with the machine's state (a
filesystem busy after big deletions slows medley's file creation more than make), so turns
taken in alternation compare them under the same conditions.

    python3 bench/noop_vs_make.py [MEDLEY]     (builds medley in release first unless given)
"""
import os, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pool  # noqa: E402


def main():
    if len(sys.argv) > 1:
        medley = sys.argv[1]
    else:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "medley-cli"], cwd=pool.ROOT,
                       check=True)
        medley = os.path.join(pool.ROOT, "target", "release", "medley")
    env = dict(os.environ, HOME=tempfile.mkdtemp(prefix="medley-bench-home-"))
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM",
                 "GIT_CONFIG_NOSYSTEM"):
        env.pop(name, None)
    n = 100
    repo = pool.repo_with(10, pool.noop_mission(n))
    pool.run(medley, repo, env)  # warms the pool
    make_dir = tempfile.mkdtemp(prefix="medley-bench-make-")
    with open(os.path.join(make_dir, "Makefile"), "w") as f:
        jobs = " ".join(f"s{i}" for i in range(n))
        f.write(f"all: {jobs}\n.PHONY: all {jobs}\n")
        for i in range(n):
            f.write(f"s{i}:\n\t@true\n")
    medley_ms, make_ms = [], []
    for _ in range(int(os.environ.get("ROUNDS", "15"))):
        medley_ms.append(pool.run(medley, repo, env, "--no-cache")[0] * 1000)
        start = time.perf_counter()
        subprocess.run(["make", "-s", "-j2"], cwd=make_dir, check=True)
        make_ms.append((time.perf_counter() - start) * 1000)
    m, k = statistics.median(medley_ms), statistics.median(make_ms)
    print(f"no-op: {n} `true` steps, max_parallel 2, {len(medley_ms)} rounds in turn")
    print(f"  medley, warm pool: {m:6.0f} ms median")
    print(f"  make -j2:          {k:6.0f} ms median")
    print(f"  ratio:             {m / k:6.1f}x  (target <= 2x)")


if __name__ == "__main__":
    main()
