#!/usr/bin/env python3
"""End-to-end benchmark of `medley run`: 200 command steps running `true` (a fan-out and a
chain), each gated by `true`, in a repository of 10 files and one of 10,000 files. Per step, from
the journal's timestamps: scheduling (a chain step's need finished -> it is ready), worktree
creation (ready -> started), command + commit (started -> committed), gate, finish (result ref,
worktree removal), and the whole. The same 200 `true` commands under `make -j2` on the same DAG,
in the same run, give the ratio.

    python3 bench/run.py            (builds medley in release first)
"""
import json, os, statistics, subprocess, sys, tempfile, time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 200


def sh(cmd, cwd, env=None):
    subprocess.run(cmd, cwd=cwd, check=True, shell=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def mission(parallel):
    # root; 100 steps fanning out from it; a chain of 99 after the first of them.
    lines = [f'max_parallel = {parallel}', '', '[steps.s0]', 'run = "true"', 'gate = "true"']
    for i in range(1, 101):
        lines += ['', f'[steps.s{i}]', 'needs = ["s0"]', 'run = "true"', 'gate = "true"']
    for i in range(101, STEPS):
        need = 1 if i == 101 else i - 1
        lines += ['', f'[steps.s{i}]', f'needs = ["s{need}"]', 'run = "true"', 'gate = "true"']
    return "\n".join(lines) + "\n"


def needs_of():
    needs = {0: []}
    for i in range(1, 101):
        needs[i] = [0]
    for i in range(101, STEPS):
        needs[i] = [1 if i == 101 else i - 1]
    return needs


def makefile():
    needs = needs_of()
    rules = ["all: " + " ".join(f"s{i}" for i in range(STEPS)), ".PHONY: all " + " ".join(f"s{i}" for i in range(STEPS))]
    for i in range(STEPS):
        rules.append(f"s{i}: " + " ".join(f"s{n}" for n in needs[i]) + "\n\t@true\n\t@true")
    return "\n".join(rules) + "\n"


def ts(event):
    return datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()


def bench(files, parallel, medley, env):
    repo = tempfile.mkdtemp(prefix=f"medley-bench-{files}-{parallel}-")
    sh("git init -q -b main", repo)
    for i in range(files):
        d = os.path.join(repo, f"d{i % 100:02}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i}.txt"), "w") as f:
            f.write(f"file {i}\n")
    os.makedirs(os.path.join(repo, "missions"))
    with open(os.path.join(repo, "missions", "bench.toml"), "w") as f:
        f.write(mission(parallel))
    sh("git add -A && git -c user.name=b -c user.email=b@b commit -qm files", repo)

    start = time.perf_counter()
    out = subprocess.run([medley, "run", "bench", "--output", "json"], cwd=repo, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"medley failed: {out.stderr[-2000:]}")
    events = [json.loads(l) for l in out.stdout.splitlines()]
    by_step = {}
    for e in events:
        if "step" in e and e["step"]:
            by_step.setdefault(e["step"], {}).setdefault(e["type"], ts(e))
    phases = {k: [] for k in ["scheduling", "worktree", "command+commit", "gate", "finish", "step total"]}
    needs = needs_of()
    for i in range(STEPS):
        s = by_step[f"s{i}"]
        phases["worktree"].append(s["step_started"] - s["step_ready"])
        phases["command+commit"].append(s["step_committed"] - s["step_started"])
        phases["gate"].append(s["gate_finished"] - s["gate_started"])
        phases["finish"].append(s["step_finished"] - s["gate_finished"])
        phases["step total"].append(s["step_finished"] - s["step_ready"])
        if i > 101:  # a chain step: nothing else competes for its slot once the fan-out is done
            prev = by_step[f"s{needs[i][0]}"]["step_finished"]
            if prev > max(by_step[f"s{j}"]["step_finished"] for j in range(1, 101)):
                phases["scheduling"].append(s["step_ready"] - prev)

    mk = os.path.join(repo, "bench.mk")
    with open(mk, "w") as f:
        f.write(makefile())
    start = time.perf_counter()
    sh(f"make -s -j{parallel} -f {mk} all", repo)
    make_wall = time.perf_counter() - start

    # What the two `sh -c true` of a step (command and gate) cost by themselves.
    start = time.perf_counter()
    for _ in range(100):
        subprocess.run(["sh", "-c", "true"], check=True)
    spawn = (time.perf_counter() - start) / 100

    print(f"\n## {files} files, {STEPS} steps, max_parallel {parallel}")
    for name, values in phases.items():
        if values:
            print(f"  {name:<15} mean {statistics.mean(values)*1000:8.2f} ms   median {statistics.median(values)*1000:8.2f} ms")
    print(f"  medley wall     {wall:.2f} s  ({wall / STEPS * 1000:.2f} ms per step)")
    print(f"  make -j{parallel} wall   {make_wall:.3f} s  ({make_wall / STEPS * 1000:.2f} ms per step)")
    print(f"  ratio           {wall / make_wall:.1f}x")
    print(f"  sh -c true      {spawn*1000:.2f} ms each (a step runs two: command and gate)")
    own = (statistics.mean(phases["command+commit"]) + statistics.mean(phases["gate"])
           + statistics.mean(phases["finish"]) - 2 * spawn
           + (statistics.mean(phases["scheduling"]) if phases["scheduling"] else 0))
    print(f"  medley's own overhead: scheduling + command and gate beyond their `sh -c true` + finish "
          f"(commit, journal, refs, worktree removal), without the checkout: {own*1000:.2f} ms per step")
    subprocess.run(["rm", "-rf", repo])


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "medley-cli"], cwd=ROOT, check=True)
    medley = os.path.join(ROOT, "target", "release", "medley")
    home = tempfile.mkdtemp(prefix="medley-bench-home-")
    env = dict(os.environ, HOME=home, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    env.pop("XDG_CACHE_HOME", None)
    sizes = [int(a) for a in sys.argv[1:]] or [10, 10_000]
    for files in sizes:
        for parallel in [1, 2] if files <= 1000 else [2]:
            bench(files, parallel, medley, env)
    subprocess.run(["rm", "-rf", home])


if __name__ == "__main__":
    main()
